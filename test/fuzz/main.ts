#!/usr/bin/env node
// The fuzz campaign: npm run fuzz [-- --runs N] [--seed S] [--json FILE] [entry...]
// Entries: pdtp (tracker gRPC), data-plane (seeder HTTP), config (config files), url (pdtp:// URLs).
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { fuzz, ENTRIES, type EntryName } from "./fuzz.js";

const USAGE = `usage: npm run fuzz [-- --runs N] [--seed S] [--json FILE] [${ENTRIES.join("|")} ...]
  --runs N     inputs per entry point [100000]
  --seed S     first seed (each worker and tenth of the run adds to it) [20261204]
  --json FILE  also write the report as JSON`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: "string", default: "100000" },
      seed: { type: "string", default: "20261204" },
      json: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
} catch (err) {
  console.error(`fuzz: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const { values: v, positionals } = parsed;
const runs = Number(v.runs);
const seed = Number(v.seed);
const bad = positionals.filter((p) => !(ENTRIES as readonly string[]).includes(p));
if (v.help || bad.length || !(Number.isInteger(runs) && runs > 0) || !Number.isInteger(seed)) {
  if (bad.length) console.error(`fuzz: unknown entry point ${bad.join(", ")}`);
  console.error(USAGE);
  process.exit(v.help ? 0 : 2);
}
const entries = (positionals.length ? positionals : [...ENTRIES]) as EntryName[];
const report = await fuzz({ entries, runs, seed, log: (m) => console.error(m) });
if (v.json) writeFileSync(v.json, JSON.stringify(report, null, 2));
console.log(JSON.stringify(report.summary, null, 2));
for (const p of report.problems) console.error(`fuzz: PROBLEM ${p}`);
process.exit(report.problems.length ? 1 : 0);
