import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  createReadStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { Redis } from "ioredis";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, startNode, type Proc } from "../support/procs.js";
import { LiveTamperer, type Tampering } from "../support/liveTamperer.js";
import { Services } from "../support/services.js";
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js";
import { describeStream } from "../support/tracker.js";

/**
 * Live broadcasts under faults, with real processes: a tampering peer in the
 * swarm, a source killed and restarted, sequence numbers across 2^32 and up
 * to the last one, 2^53 - 2, and a long broadcast at a high bitrate on a
 * real Redis. Viewers are real dsclient processes; what is checked is what a
 * viewer's user sees: its output's bytes, its exit status, its live summary.
 */

/** What a viewer's "live summary" log line says. */
interface LiveSummary {
  chunksWritten: number;
  bytesWritten: number;
  skipped: number;
  retunes: number;
  delayP50Ms: number;
  delayP95Ms: number;
  ended: boolean;
  rejected: Record<string, number>;
}

function summary(p: Pick<Proc, "stderr">): LiveSummary {
  for (const line of p.stderr().split("\n")) if (line.includes('"msg":"live summary"')) return JSON.parse(line);
  throw new Error(`no live summary:\n${p.stderr().slice(-3000)}`);
}

/** A dsclient watching `url` into dir/out. */
function viewer(dir: string, url: string, out: string, extra: string[] = []): Proc {
  return startNode(DSCLIENT, [url, "-o", out, "-q", "--log-level", "info", ...extra], { cwd: dir });
}

/** The viewer ran to the broadcast's end: exit 0, the end seen, nothing skipped. */
function assertWatchedToTheEnd(v: Pick<Proc, "stderr">, code: number, i: number): LiveSummary {
  assert.equal(code, 0, `viewer ${i} exits 0 at the end: ${v.stderr().slice(-3000)}`);
  const s = summary(v);
  assert.equal(s.ended, true, `viewer ${i} saw the end`);
  assert.equal(s.skipped, 0, `viewer ${i} skipped nothing: ${v.stderr().slice(-3000)}`);
  return s;
}

/** The output is the source's bytes from some point to the end: a suffix of `source`, and not empty. */
function assertSuffix(out: Buffer, source: Buffer, what: string): void {
  assert.ok(out.length > 0 && out.length <= source.length, `${what}: ${out.length} bytes of ${source.length}`);
  assert.ok(out.equals(source.subarray(source.length - out.length)), `${what} is the source's bytes to its end`);
}

/** A viewer's log lines of chunks it skipped, for a failure's message. */
function skipLines(p: Pick<Proc, "stderr">): string {
  return p
    .stderr()
    .split("\n")
    .filter((l) => l.includes('"chunks skipped') || l.includes('"re-tuned'))
    .join("\n");
}

/** Size of a file, 0 while it does not exist. */
function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Resolves once `ok()` holds (checked every 100 ms); rejects after `timeoutMs`. */
async function until(ok: () => boolean, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; !ok(); await sleep(100)) {
    if (Date.now() > end) throw new Error(`not so after ${timeoutMs} ms`);
  }
}

/** Resident memory of process `pid` in MB (VmRSS), or undefined once it is gone. */
function rssMB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The highest of the samples in the `k`th of `n` equal parts of the run (k from 0). */
function highestIn(samples: readonly number[], k: number, n: number): number {
  return Math.max(...samples.slice((k * samples.length) / n, ((k + 1) * samples.length) / n));
}

/** SHA-256 of bytes [start, end) of a file, streamed. */
function sha256Of(path: string, start: number, end: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    if (end <= start) return resolve(h.digest("hex"));
    createReadStream(path, { start, end: end - 1 })
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/**
 * A dsclient watching `url` to its standard output, hashed as it comes (nothing kept): the
 * byte count and SHA-256 of what it wrote, its stderr, and its exit code.
 */
function hashingViewer(dir: string, url: string, extra: string[] = []) {
  const child = spawn(process.execPath, [DSCLIENT, url, "-o", "-", "-q", "--log-level", "info", ...extra], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const h = createHash("sha256");
  let bytes = 0;
  let err = "";
  child.stdout.on("data", (d: Buffer) => {
    bytes += d.length;
    h.update(d);
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? 128)));
  return {
    pid: child.pid!,
    stderr: () => err,
    exited,
    result: exited.then(() => ({ bytes, sha256: h.digest("hex") })),
    kill: () => child.kill("SIGKILL"),
  };
}

describe("a tampering peer in a live swarm (distribustream up)", { timeout: 90_000 }, () => {
  /** The tampering peer's address: its session reaches the tracker through a proxy connecting from it. */
  const TAMPERER_HOST = "127.0.0.2";
  /** The tracker's TRUST_POLICY.banAfterBad and per-viewer upload slots (DEFAULT_LIMITS.maxUploadsPeer). */
  const BAN_AFTER_BAD = 3;
  const PEER_UPLOAD_SLOTS = 4;
  let dir: string;
  let up: Proc;
  let port: number;
  let metricsUrl: string;
  let proxy: TcpProxy;
  let tamperer: LiveTamperer;
  let source: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-live-tamper-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/readme.txt"), "a file beside the live stream\n");
    // 10 s of media at 2 Mbit/s: about 50 chunks of 200 ms
    source = randomBytes(2_500_000);
    writeFileSync(join(dir, "cam.bin"), source);
    const [p, data, checksum, m] = (await freePorts(4)) as [number, number, number, number];
    port = p;
    metricsUrl = `http://127.0.0.1:${m}/metrics`;
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${m}`, "--log-level", "info"],
        ["--live", "cam=cam.bin", "--live-bitrate", "2M"],
      ),
      { cwd: dir },
    );
    await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/cam/, 60_000);
    proxy = await startTcpProxy([{ host: "127.0.0.1", port }], { localAddress: TAMPERER_HOST });
    tamperer = new LiveTamperer(`127.0.0.1:${proxy.port}`, TAMPERER_HOST);
    await tamperer.join("cam");
  });

  after(async () => {
    tamperer?.close();
    await proxy?.close();
    await up?.kill("SIGTERM");
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test("altered, replayed and reordered chunks are all rejected, no viewer writes them, the peer is banned", async () => {
    const viewers: Proc[] = [];
    for (let i = 0; i < 3; i++) {
      viewers.push(viewer(dir, `pdtp://127.0.0.1:${port}/cam`, `v${i}.bin`));
      await sleep(300);
    }
    const codes = await Promise.all(viewers.map((v) => v.exited));
    const rejected: Record<string, number> = {};
    for (const [i, v] of viewers.entries()) {
      const s = assertWatchedToTheEnd(v, codes[i]!, i);
      for (const [reason, n] of Object.entries(s.rejected)) rejected[reason] = (rejected[reason] ?? 0) + n;
      assertSuffix(readFileSync(join(dir, `v${i}.bin`)), source, `viewer ${i}'s output`);
    }
    const served = tamperer.served;
    console.log(`# tampering peer: fetched ${tamperer.fetched} chunks, served ${JSON.stringify(served)}`);
    console.log(`# viewers rejected ${JSON.stringify(rejected)}`);
    // every tampered answer was rejected, as what it was
    for (const kind of Object.keys(served) as Tampering[]) {
      assert.ok(
        served[kind] >= 1,
        `the tampering peer was sent a viewer for a ${kind} answer: ${JSON.stringify(served)}`,
      );
      assert.equal(rejected[kind] ?? 0, served[kind], `every ${kind} answer rejected as ${kind}`);
    }
    for (const [reason, n] of Object.entries(rejected)) {
      if (!(reason in served)) assert.equal(n, 0, `no chunk rejected as ${reason}`);
    }
    // each one reported BAD_DATA to the tracker: banned after three, its address with it, and
    // after the third at most the transfers already on its upload slots followed
    const total = served["bad-data"] + served.replayed + served.reordered;
    assert.equal(await metric(metricsUrl, "pdtp_tracker_bad_chunks_total"), total);
    assert.equal(await metric(metricsUrl, "pdtp_tracker_sources_banned_total", { reason: "bad_data" }), 1);
    assert.ok(total <= BAN_AFTER_BAD + PEER_UPLOAD_SLOTS, `the tampering peer served ${total} answers`);
    await up.waitFor(
      new RegExp(
        `"serverId":"${tamperer.peerId}","host":"${TAMPERER_HOST.replace(/\./g, "\\.")}"[^\\n]*"source banned"`,
      ),
      5_000,
    );
  });
});

describe(
  "live broadcasts on a real Redis: a source restart, sequence number limits, a long broadcast",
  { timeout: 240_000 },
  () => {
    let dir: string;
    let redis: TestRedis;
    let sys: Services;
    let target = "";
    let trackerMetrics = "";
    const seeders: Proc[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "ds-live-faults-"));
      sys = new Services(dir);
      redis = await redisForTests();
      const [pdtp, checksum, m1, m2] = (await freePorts(4)) as [number, number, number, number];
      target = `127.0.0.1:${pdtp}`;
      trackerMetrics = `http://127.0.0.1:${m2}/metrics`;
      await sys.checksum(checksum, m1);
      await sys.tracker({ port: pdtp, checksum, metricsPort: m2, redis: redis.url });
    });

    after(async () => {
      for (const s of seeders) await s.kill("SIGKILL");
      await sys?.stop();
      await redis?.stop();
      if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
    });

    /** A seeder broadcasting `file` (in dir) as `name` at `bitrate`, its state in dir/state-NAME; resolves once started. */
    async function seeder(name: string, file: string, bitrate: string, ports: [number, number]): Promise<Proc> {
      const p = startNode(
        DISTRIBUSTREAM,
        ["seeder", "--tracker", target, "--data-host", "127.0.0.1", "--data-port", `${ports[0]}`].concat(
          ["--metrics-port", `${ports[1]}`, "--log-level", "info"],
          ["--live", `${name}=${file}`, "--live-bitrate", bitrate, "--state-dir", `state-${name}`],
        ),
        { cwd: dir },
      );
      seeders.push(p);
      await p.waitFor(/"live broadcast started"/, 30_000);
      return p;
    }

    /** The sequence number a seeder's "live broadcast started" line says it starts at. */
    function firstSeq(p: Proc): number {
      const line = (p.stdout() + p.stderr()).split("\n").find((l) => l.includes('"msg":"live broadcast started"'));
      return JSON.parse(line!).firstSeq as number;
    }

    const edgeOf = (name: string) => metric(trackerMetrics, "pdtp_tracker_live_edge_seq", { stream: name });

    /** A state file saying broadcast `name` continues at `nextSeq` (sequenceState.ts). */
    function saveState(name: string, nextSeq: number): void {
      mkdirSync(join(dir, `state-${name}`), { recursive: true });
      writeFileSync(join(dir, `state-${name}/live-${name}.json`), JSON.stringify({ name, nextSeq }));
    }

    /**
     * 200 chunks of the default 64 KiB at 16 Mbit/s: the size bound cuts them, 30 a second, so that
     * 100 chunks take seconds, not the 20 s of 200 ms chunks.
     */
    const CHUNK = 64 * 1024;
    const FAST = "16M";
    /**
     * The viewers join a while after the broadcast started and play 3 s behind the edge, one from
     * the window's start: their first chunk is seconds old, so each chunk's deadline is seconds
     * after its source time, and a busy machine is less likely to make them skip one.
     */
    const JOIN_AFTER_MS = 2_000;
    const PREBUFFER = ["--prebuffer", "3000"];

    /** What a seeder (metrics on `port`) cut of broadcast `name`: chunks and bytes. */
    async function cutBy(port: number, name: string): Promise<{ chunks: number; bytes: number }> {
      const url = `http://127.0.0.1:${port}/metrics`;
      return {
        chunks: await metric(url, "pdtp_seeder_live_chunks_total", { stream: name }),
        bytes: await metric(url, "pdtp_seeder_live_bytes_total", { stream: name }),
      };
    }

    test("a source SIGKILLed for longer than the viewers' buffers and restarted: numbers continue, every viewer goes on", async () => {
      // two inputs of one broadcast: what the source played before it was killed, and after its restart
      const before = randomBytes(4_000_000); // 16 s at 2 Mbit/s: it is killed long before its end
      const afterRestart = randomBytes(1_500_000); // 6 s
      writeFileSync(join(dir, "tv-1.bin"), before);
      writeFileSync(join(dir, "tv-2.bin"), afterRestart);
      const ports = (await freePorts(2)) as [number, number];
      const first = await seeder("tv", "tv-1.bin", "2M", ports);
      const viewers: Proc[] = [];
      for (let i = 0; i < 3; i++) {
        viewers.push(viewer(dir, `pdtp://${target}/tv`, `tv${i}.bin`));
        await sleep(300);
      }
      // once every viewer is writing (a second of media at least), the source dies
      await until(() => viewers.every((_, i) => sizeOf(join(dir, `tv${i}.bin`)) >= 250_000), 30_000);
      assert.equal(await first.kill("SIGKILL"), 137);
      // longer than the prebuffer (500 ms) and the re-tune threshold (5 s beyond it) together
      const OUTAGE_MS = 7_000;
      await sleep(OUTAGE_MS);
      const edgeAtKill = await edgeOf("tv");
      const written = viewers.map((_, i) => readFileSync(join(dir, `tv${i}.bin`)).length);
      for (const [i, v] of viewers.entries()) {
        assert.equal(v.child.exitCode, null, `viewer ${i} still runs with the source gone: ${v.stderr().slice(-2000)}`);
        assert.ok(written[i]! > 0, `viewer ${i} wrote before the source was killed`);
      }
      // A source killed between cutting chunks and seeing them attested has its state file ahead of
      // the tracker's edge (likely at a high chunk rate): made sure here, two numbers ahead.
      const stateFile = join(dir, "state-tv/live-tv.json");
      const saved = JSON.parse(readFileSync(stateFile, "utf8")) as { nextSeq: number };
      assert.ok(saved.nextSeq > edgeAtKill, `state ${saved.nextSeq}, edge ${edgeAtKill}`);
      writeFileSync(stateFile, JSON.stringify({ name: "tv", nextSeq: edgeAtKill + 3 }));
      const again = await seeder("tv", "tv-2.bin", "2M", ports);
      assert.equal(firstSeq(again), edgeAtKill + 3, "the restart continues at its saved number, above the edge");
      const codes = await Promise.all(viewers.map((v) => v.exited));
      for (const [i, v] of viewers.entries()) {
        assert.equal(codes[i], 0, `viewer ${i} exits 0 at the end: ${v.stderr().slice(-3000)}`);
        const s = summary(v);
        console.log(
          `# viewer ${i}: wrote ${s.chunksWritten} chunks (${written[i]} bytes before the kill), skipped ${s.skipped}, ` +
            `re-tuned ${s.retunes} times, delay p50 ${s.delayP50Ms} ms p95 ${s.delayP95Ms} ms`,
        );
        assert.equal(s.ended, true);
        // the two numbers never attested are skipped; at most two more, of those attested just before the
        // kill that no viewer had fetched when the source died. Every chunk of the restarted source is
        // written (below): the tracker's chunk time used to count the outage in, and a viewer then took
        // a chunk not yet announced for seconds older than it was and skipped it as overdue.
        assert.ok(
          s.skipped >= 2 && s.skipped <= 4,
          `viewer ${i} skipped the two numbers never attested and at most two more: ${s.skipped}\n${skipLines(v)}`,
        );
        // back at the live edge after the outage, not the outage behind it
        assert.ok(s.delayP95Ms < OUTAGE_MS, `viewer ${i}'s delay p95 ${s.delayP95Ms} ms`);
        // its output: the first input's bytes from its tune-in point to the kill, then all of the second input
        const out = readFileSync(join(dir, `tv${i}.bin`));
        assert.ok(before.indexOf(out.subarray(0, written[i])) >= 0, `viewer ${i} wrote the first input in order`);
        assert.ok(
          out.subarray(written[i]).equals(afterRestart),
          `viewer ${i} wrote the restarted source's bytes: ${skipLines(v)}`,
        );
      }
      const cut = await metric(`http://127.0.0.1:${ports[1]}/metrics`, "pdtp_seeder_live_chunks_total", {
        stream: "tv",
      });
      assert.equal(await edgeOf("tv"), edgeAtKill + 3 + cut - 1, "the restart's chunks are numbered on from there");
      await again.kill("SIGTERM");
    });

    test("sequence numbers from 2^32 - 100 run across 2^32: viewers write exactly the source's bytes", async () => {
      const FIRST = 2 ** 32 - 100;
      const source = randomBytes(200 * CHUNK);
      writeFileSync(join(dir, "wrap.bin"), source);
      saveState("wrap", FIRST);
      const ports = (await freePorts(2)) as [number, number];
      const s = await seeder("wrap", "wrap.bin", FAST, ports);
      assert.equal(firstSeq(s), FIRST);
      await sleep(JOIN_AFTER_MS);
      const viewers = [
        viewer(dir, `pdtp://${target}/wrap`, "wrap0.bin", [...PREBUFFER, "--from-start"]),
        viewer(dir, `pdtp://${target}/wrap`, "wrap1.bin", PREBUFFER),
      ];
      const codes = await Promise.all(viewers.map((v) => v.exited));
      viewers.forEach((v, i) => assertWatchedToTheEnd(v, codes[i]!, i));
      const cut = await cutBy(ports[1], "wrap");
      assert.ok(FIRST + cut.chunks - 1 > 2 ** 32, `${cut.chunks} chunks from 2^32 - 100 cross 2^32`);
      assert.equal(await edgeOf("wrap"), FIRST + cut.chunks - 1);
      // from the window's start, i.e. the first chunk: every byte of the source, across 2^32
      assert.ok(readFileSync(join(dir, "wrap0.bin")).equals(source), "from the start: every byte of the source");
      assertSuffix(readFileSync(join(dir, "wrap1.bin")), source, "3 s behind the edge: the source's bytes from there");
      await s.kill("SIGTERM");
    });

    test("a broadcast from 2^53 - 100 runs to the last sequence number, 2^53 - 2, and ends there clearly", async () => {
      const FIRST = 2 ** 53 - 100;
      const source = randomBytes(200 * CHUNK);
      writeFileSync(join(dir, "last.bin"), source);
      saveState("last", FIRST);
      const ports = (await freePorts(2)) as [number, number];
      const s = await seeder("last", "last.bin", FAST, ports);
      assert.equal(firstSeq(s), FIRST);
      await sleep(JOIN_AFTER_MS);
      const viewers = [
        viewer(dir, `pdtp://${target}/last`, "last0.bin", [...PREBUFFER, "--from-start"]),
        viewer(dir, `pdtp://${target}/last`, "last1.bin", PREBUFFER),
      ];
      const codes = await Promise.all(viewers.map((v) => v.exited));
      viewers.forEach((v, i) => assertWatchedToTheEnd(v, codes[i]!, i));
      // the 99 chunks 2^53 - 100 .. 2^53 - 2, then the end
      const cut = await cutBy(ports[1], "last");
      assert.equal(cut.chunks, 99);
      assert.equal(await edgeOf("last"), 2 ** 53 - 2);
      const sent = source.subarray(0, cut.bytes);
      assert.ok(
        readFileSync(join(dir, "last0.bin")).equals(sent),
        "from the start: the source's bytes to the last chunk",
      );
      assertSuffix(readFileSync(join(dir, "last1.bin")), sent, "3 s behind the edge: the source's bytes from there");
      const said = await s.waitFor(
        /used up its sequence numbers \(the last is 2\^53 - 2 = 9007199254740990\): the broadcast ends/,
      );
      console.log(`# at the limit the seeder logs: ${said[0]}`);
      assert.equal(s.child.exitCode, null, "the seeder goes on serving");
      await s.kill("SIGTERM");
      // its state file is at the end of the numbers: a restart is refused, saying why and what to do
      const again = startNode(
        DISTRIBUSTREAM,
        ["seeder", "--tracker", target, "--data-host", "127.0.0.1", "--data-port", `${ports[0]}`].concat([
          "--metrics-port",
          `${ports[1]}`,
          "--live",
          "last=last.bin",
          "--live-bitrate",
          FAST,
          "--state-dir",
          "state-last",
        ]),
        { cwd: dir },
      );
      const code = await again.exited;
      const out = (again.stdout() + again.stderr()).trim();
      console.log(`# restarted at the limit: exit ${code}: ${out.slice(-300)}`);
      assert.equal(code, 2, out);
      assert.match(
        out,
        /"last" used up its sequence numbers \(the last is 2\^53 - 2\); remove \S*live-last\.json to start them over at 0/,
      );
    });

    test("ten minutes of 2 Mbit/s media at 12 times the rate: viewer memory stays flat, the stream's Redis keys stay within its window", async () => {
      // 150 MB: a random block of 1 MiB + 17 bytes over and over (no two 64 KiB chunks alike)
      const SIZE = 150_000_000;
      const block = randomBytes(1024 * 1024 + 17);
      const file = join(dir, "long.bin");
      const fd = openSync(file, "w");
      for (let at = 0; at < SIZE; at += block.length) writeSync(fd, block, 0, Math.min(block.length, SIZE - at));
      closeSync(fd);
      const ports = (await freePorts(2)) as [number, number];
      const s = await seeder("long", "long.bin", "24M", ports);
      const { streamId } = await describeStream(target, "long");
      await sleep(JOIN_AFTER_MS);
      // 2 s behind the edge (this test is about memory, not delay: slack for a loaded
      // machine); at 46 chunks a second the window of 150 chunks holds 3.3 s
      const viewers = [0, 1, 2].map(() => hashingViewer(dir, `pdtp://${target}/long`, ["--prebuffer", "2000"]));
      const rss: number[][] = viewers.map(() => []);
      const seederRss: number[] = [];
      const sampleRss = setInterval(() => {
        viewers.forEach((v, i) => {
          const mb = rssMB(v.pid);
          if (mb !== undefined) rss[i]!.push(mb);
        });
        const mb = rssMB(s.child.pid!);
        if (mb !== undefined) seederRss.push(mb);
      }, 500);
      // the stream's keys (ds:{id}:*) and the size of each, as the broadcast goes on
      const raw = new Redis(redis.url);
      const keyCounts: number[] = [];
      const sizes = new Map<string, number>();
      const memory: number[] = [];
      let sampling = true;
      const sampleKeys = (async () => {
        while (sampling) {
          const keys: string[] = [];
          for (let cursor = "0"; ;) {
            const [next, found] = await raw.scan(cursor, "MATCH", `ds:{${streamId}}:*`, "COUNT", 1000);
            keys.push(...found);
            if ((cursor = next) === "0") break;
          }
          let bytes = 0;
          for (const key of keys) {
            const type = await raw.type(key);
            const n =
              type === "hash"
                ? await raw.hlen(key)
                : type === "zset"
                  ? await raw.zcard(key)
                  : type === "set"
                    ? await raw.scard(key)
                    : 1;
            const name = key.slice(key.lastIndexOf(":") + 1);
            sizes.set(name, Math.max(sizes.get(name) ?? 0, n));
            bytes += Number(await raw.memory("USAGE", key, "SAMPLES", "0")) || 0;
          }
          keyCounts.push(keys.length);
          memory.push(bytes);
          await sleep(1_000);
        }
      })();
      let codes: number[];
      let results: { bytes: number; sha256: string }[];
      try {
        codes = await Promise.all(viewers.map((v) => v.exited));
        results = await Promise.all(viewers.map((v) => v.result));
      } finally {
        clearInterval(sampleRss);
        sampling = false;
        await sampleKeys;
        raw.disconnect();
        for (const v of viewers) v.kill();
        await s.kill("SIGTERM");
      }
      const mb = (x: number) => x.toFixed(0);
      const fifths = (xs: readonly number[]) => [0, 1, 2, 3, 4].map((k) => mb(highestIn(xs, k, 5)));
      rss.forEach((samples, i) => console.log(`# viewer ${i} RSS MB, highest in each fifth: ${fifths(samples)}`));
      console.log(`# seeder RSS MB, highest in each fifth: ${fifths(seederRss)}`);
      console.log(
        `# Redis: ${Math.max(...keyCounts)} keys of the stream at most; most entries per key ${JSON.stringify(Object.fromEntries(sizes))}; ` +
          `their memory in KB, highest in each fifth: ${fifths(memory.map((b) => b / 1024))}`,
      );
      // 150 MB went through each viewer: one that kept what it wrote would grow by that much. It
      // holds at most two windows of chunks (2 x 150 x 64 KiB = 19 MiB) beside Node's own ~50 MB;
      // after the first third (the window fills, the heap settles) it stays level.
      rss.forEach((samples, i) => {
        const [middle, last] = [highestIn(samples, 1, 3), highestIn(samples, 2, 3)];
        assert.ok(Math.max(...samples) < 200, `viewer ${i} reached ${mb(Math.max(...samples))} MB`);
        assert.ok(last <= middle * 1.25 + 20, `viewer ${i}'s memory grew: ${mb(middle)} MB, then ${mb(last)} MB`);
      });
      // the seeder, answering a viewer that came before a chunk's attestation, is never banned
      assert.equal(await metric(trackerMetrics, "pdtp_tracker_sources_banned_total"), 0);
      // a fixed set of keys, none of them holding more than the window (150 chunks) allows
      assert.ok(Math.max(...keyCounts) <= 20, `keys of the stream: ${keyCounts}`);
      const WINDOW = 150;
      for (const [name, n] of sizes) assert.ok(n <= 2 * WINDOW + 16, `ds:{id}:${name} held ${n} entries`);
      const [early, late] = [highestIn(memory, 0, 3), highestIn(memory, 2, 3)];
      assert.ok(late <= early * 1.5 + 64 * 1024, `the stream's Redis memory: ${early} B, then ${late} B`);
      // and every viewer watched to the end; one that skipped nothing wrote the
      // source's bytes from its tune-in point to the end. (This test is about
      // memory and keys: at 46 chunks a second on a machine loaded by other
      // work a viewer may skip, which the other tests of this file hold to 0.)
      for (const [i, v] of viewers.entries()) {
        assert.equal(codes[i], 0, `viewer ${i} exits 0 at the end: ${v.stderr().slice(-3000)}`);
        const watched = summary(v);
        assert.equal(watched.ended, true, `viewer ${i} saw the end`);
        console.log(
          `# viewer ${i}: ${watched.chunksWritten} chunks written, ${watched.skipped} skipped, ${watched.retunes} re-tunes`,
        );
        const { bytes, sha256 } = results[i]!;
        assert.equal(bytes, watched.bytesWritten);
        assert.ok(bytes > SIZE * 0.5, `viewer ${i} wrote ${bytes} bytes`);
        if (watched.skipped === 0) {
          assert.equal(sha256, await sha256Of(file, SIZE - bytes, SIZE), `viewer ${i} wrote the source's bytes`);
        }
      }
    });
  },
);
