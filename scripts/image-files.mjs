#!/usr/bin/env node
// Copies what the container image runs from a built work tree to OUT (the Dockerfile's
// build stage): the root package.json and, of every workspace but the tests, its
// package.json, bin/, public/ and compiled dist/ without tests, declarations, source maps
// and build info. node_modules comes separately, from a production-only install.
//   node scripts/image-files.mjs OUT
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

const SKIPPED_WORKSPACES = new Set(["test"]);
const NOT_RUN = /(\.test\.js|\.d\.ts|\.map|\.tsbuildinfo)$/;

/** The workspaces that run (not the tests), as in the root package.json. */
export function runnableWorkspaces() {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  return pkg.workspaces.filter((ws) => !SKIPPED_WORKSPACES.has(ws));
}

/**
 * Copies what workspace `ws` runs to `dest`: its package.json, bin/, public/ and
 * dist/ without tests, declarations, source maps and build info. Also used by
 * scripts/pack.mjs for the npm package.
 */
export function copyRunnable(ws, dest) {
  const dist = join(root, ws, "dist");
  if (!existsSync(dist)) throw new Error(`${ws}/dist is missing: build first (npm run build)`);
  cpSync(join(root, ws, "package.json"), join(dest, "package.json"));
  for (const dir of ["bin", "public"]) {
    if (existsSync(join(root, ws, dir))) cpSync(join(root, ws, dir), join(dest, dir), { recursive: true });
  }
  cpSync(dist, join(dest, "dist"), { recursive: true, filter: (src) => !NOT_RUN.test(basename(src)) });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node scripts/image-files.mjs OUT");
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  cpSync(join(root, "package.json"), join(out, "package.json"));
  let copied = 0;
  for (const ws of runnableWorkspaces()) {
    try {
      copyRunnable(ws, join(out, ws));
    } catch (err) {
      console.error(`image-files: ${err.message}`);
      process.exit(1);
    }
    copied++;
  }
  console.log(`image-files: ${copied} workspaces copied to ${out}`);
}
