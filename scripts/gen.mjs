#!/usr/bin/env node
// Generates TypeScript for proto/pdtp/v1 into packages/pdtp/src/gen with ts-proto.
// Output is byte-identical on every run for the pinned compiler and plugin.
//   node scripts/gen.mjs           regenerate
//   node scripts/gen.mjs --check   regenerate into a temp folder; exit 1 if the committed files differ
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, cpSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const PROTOC_VERSION = "libprotoc 3.21.12"; // Debian 12's protobuf-compiler
const root = fileURLToPath(new URL("..", import.meta.url));
const target = join(root, "packages/pdtp/src/gen");
const check = process.argv.includes("--check");

let version;
try {
  version = execFileSync("protoc", ["--version"], { encoding: "utf8" }).trim();
} catch {
  console.error("gen: protoc not found; install it with: apt-get install -y protobuf-compiler");
  process.exit(2);
}
if (version !== PROTOC_VERSION) {
  console.error(`gen: protoc is "${version}", generated code is pinned to "${PROTOC_VERSION}"`);
  process.exit(2);
}

const protos = readdirSync(join(root, "proto/pdtp/v1"))
  .filter((f) => f.endsWith(".proto"))
  .sort()
  .map((f) => `pdtp/v1/${f}`);
const out = mkdtempSync(join(tmpdir(), "pdtp-gen-"));
const opts = [
  "outputServices=grpc-js",
  "esModuleInterop=true",
  "env=node",
  "forceLong=number",
  "useOptionals=none",
  "oneof=unions-value",
  "importSuffix=.js",
  "annotateFilesWithVersion=false",
  "useExactTypes=false",
  "exportCommonSymbols=false",
].join(",");
execFileSync(
  "protoc",
  [
    `--plugin=protoc-gen-ts_proto=${join(root, "node_modules/.bin/protoc-gen-ts_proto")}`,
    `--ts_proto_out=${out}`,
    `--ts_proto_opt=${opts}`,
    `-I${join(root, "proto")}`,
    ...protos,
  ],
  { stdio: "inherit" },
);

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

if (check) {
  const want = files(out)
    .map((f) => relative(out, f))
    .sort();
  const have = files(target)
    .map((f) => relative(target, f))
    .sort();
  const stale = [...new Set([...want, ...have])].filter(
    (f) => !want.includes(f) || !have.includes(f) || !readFileSync(join(out, f)).equals(readFileSync(join(target, f))),
  );
  rmSync(out, { recursive: true });
  if (stale.length > 0) {
    console.error(`gen:check: generated code is stale (${stale.join(", ")}); run npm run gen and commit`);
    process.exit(1);
  }
  console.log("gen:check: generated code is up to date");
} else {
  rmSync(target, { recursive: true, force: true });
  cpSync(out, target, { recursive: true });
  rmSync(out, { recursive: true });
  console.log(`gen: wrote ${relative(root, target)}`);
}
