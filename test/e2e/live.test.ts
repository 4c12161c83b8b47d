import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, startNode, type Proc } from "../support/procs.js";

/**
 * A live broadcast end to end with real processes: an MPEG-TS test pattern
 * made by ffmpeg, played by `distribustream up --live` at its bitrate (or
 * piped into it from a running ffmpeg), and real `dsclient` viewers tuning in
 * at different times, whose outputs ffmpeg decodes without a word.
 */
const SECONDS = 8;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** What a viewer's "live summary" log line says. */
function summary(p: Proc): { chunksWritten: number; skipped: number; ended: boolean; delayP95Ms: number } {
  for (const line of p.stderr().split("\n")) if (line.includes('"msg":"live summary"')) return JSON.parse(line);
  throw new Error(`no live summary:\n${p.stderr()}`);
}

/**
 * What `ffmpeg -v error -i FILE -f null -` prints (nothing for a stream that
 * decodes cleanly from its first byte), and the video frames ffprobe decodes.
 */
function decode(file: string): { errors: string; frames: number } {
  const r = spawnSync("ffmpeg", ["-v", "error", "-nostdin", "-i", file, "-f", "null", "-"], { encoding: "utf8" });
  const probe = spawnSync(
    "ffprobe",
    ["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames"].concat([
      "-of",
      "csv=p=0",
      file,
    ]),
    { encoding: "utf8" },
  );
  return {
    errors: r.stderr + (r.status === 0 ? "" : `(exit ${r.status})`),
    frames: Number(probe.stdout.trim().split("\n")[0]) || 0,
  };
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
      // and it plays from its first byte: it starts at a random access point, ffmpeg has nothing to say
      const { errors, frames } = decode(join(dir, `v${i}.ts`));
      assert.equal(errors, "", `viewer ${i}'s output decodes cleanly`);
      const seconds = (out.length / clip.length) * SECONDS;
      assert.ok(frames >= (seconds - 0.5) * 25, `viewer ${i}: ${frames} frames decoded from ${seconds.toFixed(1)} s`);
    }
  });
});

describe(
  "an encoder piped into distribustream up --live cam=-, viewers tuning in mid-stream",
  { timeout: 90_000 },
  () => {
    const LIVE_SECONDS = 12;
    let dir: string;
    let up: Proc;

    after(async () => {
      await up?.kill("SIGTERM");
      if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
    });

    test("five viewers each write what ffmpeg wrote from a random access point to the end, and it decodes cleanly", async () => {
      dir = mkdtempSync(join(tmpdir(), "ds-live-pipe-"));
      mkdirSync(join(dir, "media"));
      const [port, data, checksum, metrics] = await freePorts(4);
      up = startNode(
        DISTRIBUSTREAM,
        ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat([
          "--checksum-port",
          `${checksum}`,
          "--metrics-port",
          `${metrics}`,
          "--live",
          "cam=-",
        ]),
        { cwd: dir, stdin: "pipe" },
      );
      await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/cam/, 60_000);
      // ffmpeg -re ... -f mpegts - | tee (what it wrote) | distribustream up --live cam=-
      // prettier-ignore
      const encoder = spawn("ffmpeg", [
      "-v", "error", "-nostdin", "-re",
      "-f", "lavfi", "-i", `testsrc=size=320x240:rate=25:duration=${LIVE_SECONDS}`,
      "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", "1M", "-g", "25",
      "-f", "mpegts", "-",
    ], { stdio: ["ignore", "pipe", "pipe"] });
      let encoderSays = "";
      encoder.stderr.setEncoding("utf8").on("data", (t: string) => (encoderSays += t));
      const wrote: Buffer[] = [];
      const stdin = up.child.stdin!;
      encoder.stdout.on("data", (b: Buffer) => {
        wrote.push(b);
        if (!stdin.write(b)) {
          encoder.stdout.pause();
          stdin.once("drain", () => encoder.stdout.resume());
        }
      });
      encoder.stdout.on("end", () => stdin.end());
      const encoded = new Promise<number | null>((r) => encoder.on("close", r));

      const viewers: Proc[] = [];
      for (let i = 0; i < 5; i++) {
        await sleep(i === 0 ? 1500 : 1200);
        viewers.push(
          startNode(DSCLIENT, [`pdtp://127.0.0.1:${port}/cam`, "-o", `v${i}.ts`, "-q", "--log-level", "info"], {
            cwd: dir,
          }),
        );
      }
      assert.equal(await encoded, 0, encoderSays);
      const codes = await Promise.all(viewers.map((v) => v.exited));
      codes.forEach((c, i) =>
        assert.equal(c, 0, `viewer ${i} exits 0 when the broadcast ends: ${viewers[i]!.stderr()}`),
      );
      const all = Buffer.concat(wrote);
      let previous = Infinity;
      for (const [i, v] of viewers.entries()) {
        const s = summary(v);
        assert.equal(s.ended, true, `viewer ${i} saw the end`);
        assert.equal(s.skipped, 0, `viewer ${i} skipped nothing on loopback: ${v.stderr().slice(-3000)}`);
        const out = readFileSync(join(dir, `v${i}.ts`));
        assert.ok(out.length > 0 && out.length < all.length, `viewer ${i} tuned in mid-stream: ${out.length} bytes`);
        // a contiguous run of what ffmpeg wrote, from its tune-in point to the end
        assert.equal(sha(out), sha(all.subarray(all.length - out.length)), `viewer ${i}'s output is ffmpeg's tail`);
        assert.ok(out.length <= previous, "a later viewer tunes in later");
        previous = out.length;
        const { errors, frames } = decode(join(dir, `v${i}.ts`));
        assert.equal(errors, "", `ffmpeg -v error prints nothing for viewer ${i}'s output`);
        const seconds = (out.length / all.length) * LIVE_SECONDS;
        assert.ok(frames >= (seconds - 0.5) * 25, `viewer ${i}: ${frames} frames decoded from ${seconds.toFixed(1)} s`);
      }
    });
  },
);
