#!/usr/bin/env node
// Runs the compiled tests with node's test runner: unit tests (beside the code)
// in parallel, then end-to-end tests (test/e2e) one file at a time, since each
// starts several processes.   node scripts/test.mjs [--unit|--e2e] [filter]
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const only = args.includes("--unit") ? "unit" : args.includes("--e2e") ? "e2e" : "all";
const filter = args.find((a) => !a.startsWith("--"));

function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === "node_modules") return [];
    return statSync(p).isDirectory() ? find(p) : p.endsWith(".test.js") ? [p] : [];
  });
}
const dists = ["packages", "services", "cmd"].flatMap((d) =>
  existsSync(join(root, d)) ? readdirSync(join(root, d)).map((p) => join(root, d, p, "dist")) : [],
);
const pick = (files) => files.filter((f) => !filter || f.includes(filter)).sort();
const unit = pick(dists.flatMap(find));
const e2e = pick(find(join(root, "test/dist")));

let failed = false;
function run(files, concurrency) {
  if (files.length === 0) return;
  console.log(`# running ${files.length} test files: ${files.map((f) => relative(root, f)).join(" ")}`);
  // no test may hang the run: one that passes 10 minutes fails (a server left open keeps a file's process alive)
  const r = spawnSync(
    process.execPath,
    ["--test", `--test-concurrency=${concurrency}`, "--test-timeout=600000", ...files],
    {
      stdio: "inherit",
    },
  );
  if (r.status !== 0) failed = true;
}
if (only !== "e2e") run(unit, 2);
if (only !== "unit") run(e2e, 1);
process.exit(failed ? 1 : 0);
