import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("../../..", import.meta.url));

interface TrialResult {
  ok?: boolean;
  skipped?: string;
  error?: string;
  sha256Ok?: string;
}
interface BenchRecord {
  scenario: string;
  smoke: boolean;
  skipped?: string;
  error?: string;
  anchors: Record<string, { status: string; reason?: string }>;
  runs: { systems: Record<string, TrialResult> }[];
  goals: { id: string; met: boolean | null }[];
}

/**
 * The benchmark harness's smoke run (bench/run.mjs all --smoke: tiny sizes, one run), so it cannot rot:
 * every scenario must write a well-formed record in which each system either ran (every output
 * sha256-identical to the origin's file) or was skipped with a reason. No speed is asserted.
 */
describe("benchmark harness smoke run", { timeout: 300_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), "ds-bench-smoke-"));
  after(() => rmSync(out, { recursive: true, force: true }));

  test("npm run bench -- all --smoke writes a well-formed record per scenario", async () => {
    const child = spawn(
      process.execPath,
      [join(root, "bench/run.mjs"), "all", "--smoke", "--out", out, "--work-dir", out],
      {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let log = "";
    child.stdout.on("data", (d) => (log = (log + d).slice(-20_000)));
    child.stderr.on("data", (d) => (log = (log + d).slice(-20_000)));
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    assert.equal(code, 0, `bench exited ${code}\n${log}`);

    const { recordProblems } = (await import(pathToFileURL(join(root, "bench/lib/report.mjs")).href)) as {
      recordProblems: (rec: unknown) => string[];
    };
    const files = readdirSync(out).filter((f) => f.endsWith("-smoke.json"));
    const scenarios = ["flash-crowd", "single", "memory", "control", "tracker-capacity", "checksum"];
    for (const scenario of scenarios) {
      const file = files.find((f) => f.startsWith(`${scenario}-`));
      assert.ok(file, `no record for ${scenario} in ${files.join(", ")}`);
      assert.ok(existsSync(join(out, file.replace(/\.json$/, ".md"))), `no Markdown table for ${scenario}`);
      const rec = JSON.parse(readFileSync(join(out, file), "utf8")) as BenchRecord;
      assert.deepEqual(recordProblems(rec), [], `${scenario}: malformed record`);
      assert.equal(rec.smoke, true);
      assert.equal(rec.error, undefined, `${scenario}: ${rec.error}`);
      if (rec.skipped) {
        assert.ok(rec.skipped.length > 0);
        continue;
      }
      for (const [name, r] of Object.entries(rec.runs[0]!.systems)) {
        if (r.skipped) {
          assert.equal(rec.anchors[name]?.status, "skipped", `${scenario}/${name} skipped without saying so`);
          continue;
        }
        assert.equal(r.ok, true, `${scenario}/${name} failed: ${r.error}`);
        if (r.sha256Ok) assert.match(r.sha256Ok, /^(\d+)\/\1$/, `${scenario}/${name}: outputs differ`);
      }
      for (const g of rec.goals) assert.ok(g.met === null || typeof g.met === "boolean", `${scenario}: goal ${g.id}`);
    }
    // DistribuStream itself is never skipped where the tests run
    const crowd = JSON.parse(
      readFileSync(
        join(
          out,
          files.find((f) => f.startsWith("flash-crowd-"))!,
        ),
        "utf8",
      ),
    ) as BenchRecord;
    assert.equal(crowd.runs[0]!.systems.ds?.ok, true);
  });
});
