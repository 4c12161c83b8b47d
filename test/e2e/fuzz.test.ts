import assert from "node:assert/strict";
import { test } from "node:test";
import { fuzz, ENTRIES } from "../fuzz/fuzz.js";

/**
 * The short, seeded fuzz campaign (npm run fuzz runs the long one): 1,000
 * inputs on every public entry point — PDTP messages to a real tracker,
 * data-plane requests to a real seeder, config files, pdtp:// URLs — each
 * answered with a clear refusal or a correct answer, never a crash, an
 * INTERNAL or a 5xx, nor a hang; afterwards the system still serves a real
 * download byte for byte and logged no error.
 */
test(
  "1,000 fuzzed inputs per public entry point: clear refusals, no crash, still serving",
  { timeout: 600_000 },
  async () => {
    const report = await fuzz({ entries: ENTRIES, runs: 1000, seed: 17 });
    assert.deepEqual(report.problems, []);
    for (const e of report.entries) {
      assert.ok(e.inputs >= 1000, `${e.entry}: ${e.inputs} inputs`);
      assert.equal(e.defects.length, 0);
    }
    assert.equal(report.after?.stillRunning, true);
    assert.equal(report.after?.downloadIdentical, true);
    assert.deepEqual(report.after?.errorLines, []);
    // the campaign reached past the first checks: the stream's bytes were served and sessions were admitted
    const dp = report.entries.find((e) => e.entry === "data-plane")!;
    assert.ok((dp.outcomes["200"] ?? 0) > 0, JSON.stringify(dp.outcomes));
    const pdtp = report.entries.find((e) => e.entry === "pdtp")!;
    assert.ok((pdtp.outcomes["session OK"] ?? 0) > 0, JSON.stringify(pdtp.outcomes));
  },
);
