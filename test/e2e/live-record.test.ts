import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * Live to on-demand with real processes: a broadcast recorded with
 * --live-record is, once it ended, an ordinary file under its name, whose
 * bytes a plain dsclient download gets exactly as the source sent them;
 * across a seeder restart mid-broadcast, and with the next broadcast of the
 * name live again.
 */
const SECONDS = 4;
/**
 * The clip is played at a third of its bitrate: a 12 s broadcast, so that
 * viewers started on a busy machine still tune in while it runs (the bytes
 * are the same at any pace).
 */
const SLOWER = 3;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** SECONDS of an MPEG-TS test pattern at about 1 Mbit/s; returns its bytes and the bitrate it is played at. */
function makeClip(path: string): { clip: Buffer; bitrate: number } {
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
    path,
  ]);
  const clip = readFileSync(path);
  return { clip, bitrate: Math.round((clip.length * 8) / SECONDS / SLOWER) };
}

/** `dsclient URL -o OUT` in `dir`; resolves with its exit code and the bytes written. */
async function download(dir: string, url: string, out: string, extra: string[] = []) {
  const p = startNode(DSCLIENT, [url, "-o", out, "-q", "--log-level", "info", ...extra], { cwd: dir });
  const code = await p.exited;
  return { code, bytes: existsSync(join(dir, out)) ? readFileSync(join(dir, out)) : Buffer.alloc(0), p };
}

/** The seeder's log line saying the recording of `name`, `size` bytes, is READY as a file. */
const recordingReady = (name: string, size: number) =>
  new RegExp(`"name":"${name}","streamId":"[^"]+","size":${size},"msg":"published: ready"`);

function isSuffix(out: Buffer, of: Buffer): boolean {
  return out.length > 0 && out.length <= of.length && out.equals(of.subarray(of.length - out.length));
}

describe("live to on-demand: a recorded broadcast becomes a file of its name", { timeout: 120_000 }, () => {
  let dir: string;
  let up: Proc;
  let port: number;
  let clip: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-live-record-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/readme.txt"), "a file beside the live stream\n");
    const made = makeClip(join(dir, "clip.ts"));
    clip = made.clip;
    const [p, data, checksum, metrics] = await freePorts(4);
    port = p!;
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`],
        ["--live", "cam.ts=clip.ts", "--live-bitrate", `${made.bitrate}`, "--live-record", "recordings"],
      ),
      { cwd: dir },
    );
    // the viewer below tunes in as soon as the broadcast runs
    await up.waitFor(/"msg":"live broadcast started"/, 60_000);
  });

  after(async () => {
    await up?.kill("SIGTERM");
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test("a viewer watching live exits 0 at the end; then a plain download of the name is the whole broadcast", async () => {
    const url = `pdtp://127.0.0.1:${port}/cam.ts`;
    const live = await download(dir, url, "live.ts");
    assert.equal(live.code, 0, `the live viewer exits 0 at the end: ${live.p.stderr()}`);
    assert.match(live.p.stderr(), /"msg":"live summary"/, "it watched the broadcast live");
    assert.ok(
      isSuffix(live.bytes, clip),
      `the live viewer wrote the clip from its tune-in point (${live.bytes.length})`,
    );

    await up.waitFor(recordingReady("cam.ts", clip.length), 30_000);
    assert.equal(sha(readFileSync(join(dir, "recordings/cam.ts"))), sha(clip), "the recording is the source's bytes");
    const file = await download(dir, url, "vod.ts");
    assert.equal(file.code, 0, file.p.stderr());
    assert.doesNotMatch(file.p.stderr(), /live summary/, "an on-demand download, not a live one");
    assert.equal(sha(file.bytes), sha(clip), "the download is byte for byte what the source sent");
    // --from-start on a name that is a file now is the same download
    const fromStart = await download(dir, url, "from-start.ts", ["--from-start"]);
    assert.equal(fromStart.code, 0, fromStart.p.stderr());
    assert.equal(sha(fromStart.bytes), sha(clip));
  });
});

describe(
  "a recording across a seeder restart mid-broadcast, two tracker replicas on Redis",
  { timeout: 180_000 },
  () => {
    let dir: string;
    let redis: TestRedis;
    let sys: Services;
    let trackers: number[];
    let clip: Buffer;
    let seederArgs: string[];
    /** The seeder of the second run, which ends the first broadcast. */
    let second: Proc;
    /** The first broadcast's recording, across the restart. */
    let previous: Buffer;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "ds-live-record-restart-"));
      const made = makeClip(join(dir, "clip.ts"));
      clip = made.clip;
      sys = new Services(dir);
      redis = await redisForTests();
      const [t1, t2, checksum, data, m1, m2, m3, m4] = await freePorts(8);
      trackers = [t1!, t2!];
      await sys.checksum(checksum!, m3!);
      await sys.tracker({ port: t1!, checksum: checksum!, metricsPort: m1!, redis: redis.url });
      await sys.tracker({ port: t2!, checksum: checksum!, metricsPort: m2!, redis: redis.url });
      seederArgs = ["seeder", "--tracker", `127.0.0.1:${t1}`, "--data-host", "127.0.0.1"].concat(
        ["--data-port", `${data}`, "--metrics-port", `${m4}`, "--state-dir", "state"],
        ["--live", "cam=clip.ts", "--live-bitrate", `${made.bitrate}`, "--live-record", "rec"],
      );
    });

    after(async () => {
      try {
        await sys?.stop();
      } finally {
        await redis?.stop();
        if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
      }
    });

    test("the recording holds what the source sent in both runs, and downloads whole from the other replica", async () => {
      const recording = join(dir, "rec/cam");
      const first = sys.start(seederArgs);
      await first.waitFor(/live recording started/, 30_000);
      // stopped about a third into the clip, mid-broadcast
      const deadline = Date.now() + 30_000;
      while (!(existsSync(recording) && statSync(recording).size >= clip.length / 3) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(await first.kill("SIGTERM"), 0, first.stderr());
      const part = readFileSync(recording);
      assert.ok(part.length > 0 && part.length < clip.length, `${part.length} bytes recorded before the stop`);
      assert.ok(part.equals(clip.subarray(0, part.length)), "what the first run recorded is what its source sent");

      second = sys.start(seederArgs);
      await second.waitFor(/live recording continues/, 30_000);
      const whole = Buffer.concat([part, clip]);
      previous = whole;
      await second.waitFor(recordingReady("cam", whole.length), 30_000);
      const file = await download(dir, `pdtp://127.0.0.1:${trackers[1]}/cam`, "vod.ts");
      assert.equal(file.code, 0, file.p.stderr());
      assert.equal(sha(file.bytes), sha(whole), "both runs' bytes, in order, nothing else");
      assert.deepEqual(readdirSync(join(dir, "rec")), ["cam"]);
    });

    test("the next run is a new broadcast: the name is live again, and its own recording replaces the file", async () => {
      assert.equal(await second.kill("SIGTERM"), 0, second.stderr());
      const third = sys.start(seederArgs);
      await third.waitFor(/the previous live recording is kept aside/, 30_000);
      await third.waitFor(/live broadcast started/, 30_000);
      // on the replica the seeder publishes to, which knows the edge's source time from the first chunk on
      const live = await download(dir, `pdtp://127.0.0.1:${trackers[0]}/cam`, "live3.ts");
      assert.equal(live.code, 0, live.p.stderr());
      assert.match(live.p.stderr(), /"msg":"live summary"/, "watched live, not the previous recording");
      assert.ok(isSuffix(live.bytes, clip), `the new broadcast from the tune-in point (${live.bytes.length} bytes)`);
      assert.ok(live.bytes.length > clip.length / 4, "tuned in while it ran, not at an ended broadcast's tail");

      await third.waitFor(recordingReady("cam", clip.length), 30_000);
      const file = await download(dir, `pdtp://127.0.0.1:${trackers[0]}/cam`, "vod3.ts");
      assert.equal(file.code, 0, file.p.stderr());
      assert.equal(sha(file.bytes), sha(clip), "the new broadcast's recording");
      const kept = readdirSync(join(dir, "rec")).filter((f) => f !== "cam");
      assert.equal(kept.length, 1, "the previous recording is kept aside, not overwritten");
      assert.match(kept[0]!, /^cam\.\d{8}T\d{6}Z$/);
      assert.equal(sha(readFileSync(join(dir, "rec", kept[0]!))), sha(previous));
    });

    test("a record folder the seeder cannot write to stops it at start, naming the setting", () => {
      writeFileSync(join(dir, "not-a-folder"), "");
      const r = startNode(DISTRIBUSTREAM, ["seeder", "--live", "x=-", "--live-record", "not-a-folder"], { cwd: dir });
      return r.exited.then((code) => {
        assert.equal(code, 2, r.stderr());
        assert.match(r.stderr(), /invalid setting live_record: .*not-a-folder is not a folder the seeder can write to/);
      });
    });
  },
);
