#!/usr/bin/env node
// Copies what the container image runs from a built work tree to OUT (the Dockerfile's
// build stage): the root package.json and, of every workspace but the tests, its
// package.json, bin/, public/ and compiled dist/ without tests, declarations, source maps
// and build info. node_modules comes separately, from a production-only install.
//   node scripts/image-files.mjs OUT
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error("usage: node scripts/image-files.mjs OUT");
  process.exit(2);
}

const SKIPPED_WORKSPACES = new Set(["test"]);
const NOT_RUN = /(\.test\.js|\.d\.ts|\.map|\.tsbuildinfo)$/;

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
mkdirSync(out, { recursive: true });
cpSync(join(root, "package.json"), join(out, "package.json"));
let copied = 0;
for (const ws of pkg.workspaces) {
  if (SKIPPED_WORKSPACES.has(ws)) continue;
  const dist = join(root, ws, "dist");
  if (!existsSync(dist)) {
    console.error(`image-files: ${ws}/dist is missing: build first`);
    process.exit(1);
  }
  cpSync(join(root, ws, "package.json"), join(out, ws, "package.json"));
  for (const dir of ["bin", "public"]) {
    if (existsSync(join(root, ws, dir))) cpSync(join(root, ws, dir), join(out, ws, dir), { recursive: true });
  }
  cpSync(dist, join(out, ws, "dist"), { recursive: true, filter: (src) => !NOT_RUN.test(basename(src)) });
  copied++;
}
console.log(`image-files: ${copied} workspaces copied to ${out}`);
