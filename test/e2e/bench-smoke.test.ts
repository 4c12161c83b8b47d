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
/** A live system's figures (bench/lib/live.mjs). */
interface LiveResult extends TrialResult {
  viewers: number;
  delayP50S: number;
  delayP95S: number;
  tuneInP95S: number;
  skips: number | null;
  stalls: number;
  originEgressOverStream: number;
  viewerCpuSecondsPerViewerMinute: number;
  exitedAtEnd: string;
  bytesOk?: string;
  perViewer: { tuneInS: number; delayP95S: number; frames: number; skips: number | null }[];
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
    const scenarios = ["flash-crowd", "single", "memory", "control", "tracker-capacity", "checksum", "live"];
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

    // live: both audiences of the same broadcast watched it to its end, every frame they wrote timed
    const live = JSON.parse(
      readFileSync(
        join(
          out,
          files.find((f) => f.startsWith("live-"))!,
        ),
        "utf8",
      ),
    ) as BenchRecord & { runs: { systems: Record<string, LiveResult | { skipped: string }> }[] };
    if (!live.skipped) {
      const systems = live.runs[0]!.systems;
      assert.ok(!("skipped" in systems.ds!), "DistribuStream is never skipped where ffmpeg is installed");
      for (const [name, r] of Object.entries(systems)) {
        if ("skipped" in r) continue;
        assert.equal(r.viewers, 3, name);
        assert.equal(r.exitedAtEnd, "3/3", `${name}: every viewer exits 0 at the end of the broadcast`);
        assert.equal(r.perViewer.length, 3);
        for (const v of r.perViewer) assert.ok(v.frames > 0 && v.tuneInS > 0, `${name}: ${JSON.stringify(v)}`);
        // a frame cannot come out before the source wrote it, nor after the run
        assert.ok(r.delayP50S > 0 && r.delayP95S >= r.delayP50S && r.delayP95S < 60, `${name} delay ${r.delayP95S}`);
        assert.ok(r.tuneInP95S > 0 && r.tuneInP95S < 60, `${name} tune-in ${r.tuneInP95S}`);
        assert.ok(r.originEgressOverStream > 0, `${name} origin egress ${r.originEgressOverStream}`);
        assert.ok(r.viewerCpuSecondsPerViewerMinute > 0);
        assert.equal(typeof r.stalls, "number");
        assert.equal(typeof r.skips, "number", `${name}: every viewer said what it gave up`);
      }
      // every DistribuStream viewer wrote the source's own bytes
      assert.equal((systems.ds as LiveResult).bytesOk, "3/3");
    }
  });
});
