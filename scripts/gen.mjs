#!/usr/bin/env node
// Generates TypeScript for proto/pdtp/v1 into packages/pdtp/src/gen with ts-proto.
// The compiler is buf (@bufbuild/buf, its binary comes in a platform package with npm ci), so
// nothing outside node_modules is needed. Output is byte-identical on every run for the pinned
// buf and ts-proto (root devDependencies).
//   node scripts/gen.mjs           regenerate
//   node scripts/gen.mjs --check   regenerate into a temp folder; exit 1 if the committed files differ
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, cpSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const target = join(root, "packages/pdtp/src/gen");
const check = process.argv.includes("--check");
const require = createRequire(join(root, "package.json"));

const pinned = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).devDependencies["@bufbuild/buf"];
let buf;
let version;
try {
  buf = join(dirname(require.resolve("@bufbuild/buf/package.json")), "bin/buf");
  version = execFileSync(process.execPath, [buf, "--version"], { encoding: "utf8" }).trim();
} catch (err) {
  console.error(`gen: buf from @bufbuild/buf not usable (${err.message.split("\n")[0]}); run npm ci`);
  process.exit(2);
}
if (version !== pinned) {
  console.error(`gen: buf is "${version}", generated code is pinned to "${pinned}"; run npm ci`);
  process.exit(2);
}

const protos = readdirSync(join(root, "proto/pdtp/v1"))
  .filter((f) => f.endsWith(".proto"))
  .sort()
  .map((f) => `pdtp/v1/${f}`);
const work = mkdtempSync(join(tmpdir(), "pdtp-gen-"));
const out = join(work, "out");
const template = {
  version: "v2",
  plugins: [
    {
      local: join(root, "node_modules/.bin/protoc-gen-ts_proto"),
      out,
      strategy: "all", // one plugin run over every file, as protoc did
      opt: [
        "outputServices=grpc-js",
        "esModuleInterop=true",
        "env=node",
        "forceLong=number",
        "useOptionals=messages",
        "oneof=unions-value",
        "importSuffix=.js",
        "annotateFilesWithVersion=false",
        "useExactTypes=false",
        "exportCommonSymbols=false",
      ],
    },
  ],
};
try {
  execFileSync(
    process.execPath,
    [
      buf,
      "generate",
      join(root, "proto"),
      "--template",
      JSON.stringify(template),
      ...protos.flatMap((p) => ["--path", join(root, "proto", p)]),
    ],
    { stdio: "inherit", env: { ...process.env, BUF_CACHE_DIR: join(work, "cache") } },
  );
} catch {
  rmSync(work, { recursive: true, force: true });
  console.error("gen: buf generate failed (see above)");
  process.exit(1);
}

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
  rmSync(work, { recursive: true });
  if (stale.length > 0) {
    console.error(`gen:check: generated code is stale (${stale.join(", ")}); run npm run gen and commit`);
    process.exit(1);
  }
  console.log("gen:check: generated code is up to date");
} else {
  rmSync(target, { recursive: true, force: true });
  cpSync(out, target, { recursive: true });
  rmSync(work, { recursive: true });
  console.log(`gen: wrote ${relative(root, target)}`);
}
