import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, startNode, type Proc } from "../support/procs.js";

/**
 * A live broadcast end to end with real processes: an MPEG-TS test pattern
 * made by ffmpeg, played by `distribustream up --live` at its bitrate, and
 * real `dsclient` viewers tuning in at different times.
 */
const SECONDS = 8;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** What a viewer's "live summary" log line says. */
function summary(p: Proc): { chunksWritten: number; skipped: number; ended: boolean; delayP95Ms: number } {
  for (const line of p.stderr().split("\n")) if (line.includes('"msg":"live summary"')) return JSON.parse(line);
  throw new Error(`no live summary:\n${p.stderr()}`);
}

/** Video frames ffmpeg decodes from a file (its last progress line). */
function decode(file: string): { frames: number } {
  const r = spawnSync("ffmpeg", ["-v", "info", "-nostdin", "-i", file, "-map", "0:v", "-f", "null", "-"], {
    encoding: "utf8",
  });
  const counts = [...r.stderr.matchAll(/frame= *(\d+)/g)].map((m) => Number(m[1]));
  return { frames: counts.at(-1) ?? 0 };
}

describe("a live broadcast with distribustream up and dsclient viewers", { timeout: 120_000 }, () => {
  let dir: string;
  let up: Proc;
  let port: number;
  let clip: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-live-e2e-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/readme.txt"), "files are published beside the live stream\n");
    // SECONDS of a 25 fps test pattern at about 1 Mbit/s, a keyframe every second
    execFileSync("ffmpeg", [
      "-v",
      "error",
      "-nostdin",
      "-f",
      "lavfi",
      "-i",
      `testsrc=size=320x240:rate=25:duration=${SECONDS}`,
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-b:v",
      "1M",
      "-g",
      "25",
      "-f",
      "mpegts",
      join(dir, "clip.ts"),
    ]);
    clip = readFileSync(join(dir, "clip.ts"));
    const bitrate = Math.round((clip.length * 8) / SECONDS);
    const [p, data, checksum, metrics] = await freePorts(4);
    port = p!;
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`],
        ["--live", "cam=clip.ts", "--live-bitrate", `${bitrate}`],
      ),
      { cwd: dir },
    );
    await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/cam/, 60_000);
  });

  after(async () => {
    await up?.kill("SIGTERM");
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test("viewers tuning in at different times each write the broadcast from their tune-in point to its end", async () => {
    const viewer = (i: number) =>
      startNode(DSCLIENT, [`pdtp://127.0.0.1:${port}/cam`, "-o", `v${i}.ts`, "-q", "--log-level", "info"], {
        cwd: dir,
      });
    const viewers: Proc[] = [viewer(0)];
    await new Promise((r) => setTimeout(r, 1500));
    viewers.push(viewer(1));
    await new Promise((r) => setTimeout(r, 1500));
    viewers.push(viewer(2));
    const codes = await Promise.all(viewers.map((v) => v.exited));
    codes.forEach((c, i) => assert.equal(c, 0, `viewer ${i} exits 0 when the broadcast ends: ${viewers[i]!.stderr()}`));
    let previous = Infinity;
    for (const [i, v] of viewers.entries()) {
      const s = summary(v);
      assert.equal(s.ended, true, `viewer ${i} saw the end`);
      assert.equal(s.skipped, 0, `viewer ${i} skipped nothing on loopback: ${v.stderr().slice(-3000)}`);
      const out = readFileSync(join(dir, `v${i}.ts`));
      assert.ok(out.length > 0 && out.length <= clip.length, `viewer ${i} wrote ${out.length} bytes`);
      // from its tune-in point on, exactly the source's bytes: the output is a suffix of the clip
      assert.equal(sha(out), sha(clip.subarray(clip.length - out.length)), `viewer ${i}'s output is the clip's tail`);
      assert.ok(out.length <= previous, "a later viewer tunes in later");
      previous = out.length;
      // and it plays: ffmpeg decodes the frames after the first keyframe it holds
      const { frames } = decode(join(dir, `v${i}.ts`));
      const seconds = (out.length / clip.length) * SECONDS;
      assert.ok(frames >= (seconds - 1.5) * 25, `viewer ${i}: ${frames} frames decoded from ${seconds.toFixed(1)} s`);
    }
  });
});
