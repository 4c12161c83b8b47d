import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LiveWindow } from "@distribustream/data-plane";
import { RandomAccessScanner, startsAtRandomAccess, TS_PACKET_SIZE } from "@distribustream/pdtp";
import { cutChunks, type CutChunk } from "./chunker.js";
import { SequenceState, SequenceStateError } from "./sequenceState.js";
import { httpStream, LiveSourceError, pacedFile } from "./sources.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function collect(it: AsyncIterable<CutChunk>): Promise<CutChunk[]> {
  const out: CutChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

describe("cutting a live input into chunks", () => {
  test("by size: full chunks of maxChunkBytes, a shorter last one, the bytes unchanged", async () => {
    const input = new PassThrough();
    const data = randomBytes(10_000);
    const chunks = collect(cutChunks(input, { maxChunkBytes: 3000, maxChunkMs: 60_000 }));
    for (let o = 0; o < data.length; o += 777) input.write(data.subarray(o, o + 777));
    input.end();
    const got = await chunks;
    assert.deepEqual(
      got.map((c) => c.data.length),
      [3000, 3000, 3000, 1000],
    );
    assert.equal(sha(Buffer.concat(got.map((c) => c.data))), sha(data));
  });

  test("by time: a slow input is cut when its first byte has waited maxChunkMs, without waiting for more", async () => {
    const input = new PassThrough();
    const it = cutChunks(input, { maxChunkBytes: 1 << 20, maxChunkMs: 100 })[Symbol.asyncIterator]();
    const t0 = Date.now();
    input.write(Buffer.from("first"));
    const first = await it.next();
    assert.equal(first.done, false);
    assert.equal(first.value!.data.toString(), "first");
    assert.ok(Date.now() - t0 >= 90, "not cut before maxChunkMs");
    assert.ok(first.value!.timestampMs >= t0 && first.value!.timestampMs <= t0 + 50, "timestamped at its first byte");
    // Nothing arrives for a while: no empty chunk is cut.
    await sleep(250);
    input.write(Buffer.from("second"));
    input.end();
    const second = await it.next();
    assert.equal(second.value!.data.toString(), "second");
    assert.equal((await it.next()).done, true);
  });

  /** 4 s of an ffmpeg test pattern with a tone as MPEG-TS, a keyframe every second. */
  function transportStream(): Buffer {
    const r = spawnSync(
      "ffmpeg",
      ["-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4"].concat(
        ["-f", "lavfi", "-i", "sine=duration=4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25"],
        ["-c:a", "aac", "-f", "mpegts", "-"],
      ),
      { maxBuffer: 64 << 20 },
    );
    assert.equal(r.status, 0, r.stderr.toString());
    return r.stdout;
  }

  test("MPEG-TS: a chunk begins at each random access point, and every cut keeps the packets whole", async () => {
    const ts = transportStream();
    const points = new RandomAccessScanner().push(ts).map((p) => p.offset);
    assert.ok(points.length >= 4, `${points.length} random access points`);
    for (const pieces of [[ts.length], [1000, 777, 33_333], [187], [32_768]]) {
      const input = new PassThrough();
      const chunks = collect(cutChunks(input, { maxChunkBytes: 8192, maxChunkMs: 60_000 }));
      for (let o = 0, i = 0; o < ts.length; o += pieces[i++ % pieces.length]!) {
        input.write(ts.subarray(o, o + pieces[i % pieces.length]!));
      }
      input.end();
      const got = await chunks;
      assert.equal(sha(Buffer.concat(got.map((c) => c.data))), sha(ts), "the bytes unchanged");
      const starts: number[] = [];
      let at = 0;
      for (const c of got) {
        starts.push(at);
        at += c.data.length;
        assert.ok(c.data.length <= 8192);
        assert.equal(at % TS_PACKET_SIZE === 0 || at === ts.length, true, `a cut at ${at} keeps packets whole`);
      }
      const rap = starts.filter((s, i) => startsAtRandomAccess(got[i]!.data));
      assert.deepEqual(rap, points, `pieces of ${pieces.join(", ")}: chunks begin at the points, alone show them`);
    }
  });

  test("MPEG-TS by time: a cut waits for the packets that may make a PAT a random access point", async () => {
    const ts = transportStream();
    const [first, second] = new RandomAccessScanner().push(ts);
    const input = new PassThrough();
    const it = cutChunks(input, { maxChunkBytes: 1 << 20, maxChunkMs: 50 })[Symbol.asyncIterator]();
    const next = async () => (await it.next()).value!.data;
    // up to the first point, whole packets up to the next PAT, then part of its PMT
    const x = second!.offset;
    input.write(ts.subarray(0, x + TS_PACKET_SIZE + 20));
    assert.equal((await next()).length, first!.offset, "cut at the first point");
    assert.equal((await next()).length, x - first!.offset, "cut on time before the undecided PAT");
    const waiting = it.next();
    const early = await Promise.race([waiting, sleep(200).then(() => "nothing")]);
    assert.equal(early, "nothing", "no cut splits the PAT from its PMT while the input is silent");
    input.write(ts.subarray(x + TS_PACKET_SIZE + 20, second!.end + 50));
    const point = (await waiting).value!.data;
    assert.equal(point.length, second!.end - x, "once shown, the point's chunk is cut on time at a packet boundary");
    assert.equal(startsAtRandomAccess(point), true);
    input.end();
    assert.equal((await next()).length, 50, "the rest at the end");
    assert.equal((await it.next()).done, true);
  });

  test("an input that fails ends the chunks with its error", async () => {
    const input = new PassThrough();
    const chunks = collect(cutChunks(input, { maxChunkBytes: 1024, maxChunkMs: 50 }));
    input.write(Buffer.alloc(10));
    input.destroy(new Error("camera unplugged"));
    await assert.rejects(chunks, /camera unplugged/);
  });
});

describe("live sources", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-live-src-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a file played at a bitrate is never ahead of the clock; looped, it starts over", async () => {
    const file = join(dir, "clip.ts");
    const data = randomBytes(40_000);
    writeFileSync(file, data);
    const t0 = Date.now();
    const parts: Buffer[] = [];
    for await (const b of pacedFile(file, 8 * 200_000, { loop: false })) parts.push(b);
    assert.equal(sha(Buffer.concat(parts)), sha(data));
    // 40 kB at 200 kB/s is 200 ms of media: it cannot arrive sooner (a bound that holds on a slow machine).
    assert.ok(Date.now() - t0 >= 180, `played in ${Date.now() - t0} ms`);
    const looped: Buffer[] = [];
    let n = 0;
    for await (const b of pacedFile(file, 8 * 10_000_000, { loop: true })) {
      looped.push(b);
      if ((n += b.length) >= 100_000) break;
    }
    const all = Buffer.concat(looped);
    assert.ok(all.subarray(40_000, 80_000).equals(data), "the second pass is the file again");
    const empty = join(dir, "empty.ts");
    writeFileSync(empty, "");
    await assert.rejects(async () => {
      for await (const _ of pacedFile(empty, 1000, { loop: true })) void _;
    }, LiveSourceError);
  });

  test("an HTTP stream that drops is reconnected, and its bytes continue in order", async () => {
    const parts = [Buffer.from("part one|"), Buffer.from("part two|"), Buffer.from("part three|")];
    let requests = 0;
    const server: Server = createServer((req, res) => {
      const i = requests++;
      if (i === 1) {
        res.writeHead(503).end();
        return;
      }
      const part = parts[i === 0 ? 0 : i - 1];
      if (!part) {
        res.writeHead(200);
        return; // a stream that stays open
      }
      res.writeHead(200, { "content-type": "video/mp2t" });
      // i = 0: sends then drops the connection mid-stream; later: sends and ends
      res.write(part, () => (i === 0 ? res.destroy() : res.end()));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/live.ts`;
    const retries: string[] = [];
    const ac = new AbortController();
    let text = "";
    for await (const b of httpStream(url, {
      signal: ac.signal,
      backoffMinMs: 10,
      backoffMaxMs: 20,
      onRetry: (why) => retries.push(why),
    })) {
      text += b.toString();
      if (text.endsWith("part three|")) ac.abort();
    }
    server.close();
    assert.equal(text, "part one|part two|part three|");
    assert.ok(retries.includes("HTTP 503"), retries.join("; "));
    assert.ok(retries.length >= 3, retries.join("; "));
  });
});

async function readAll(r: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of r) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

describe("the live window a seeder serves from", () => {
  test("keeps the last windowChunks chunks and maps a range onto their bytes, across 2^32", async () => {
    const w = new LiveWindow(4);
    const first = 2 ** 32 - 3;
    const data = [10, 20, 30, 40, 50, 60].map((n, i) => Buffer.alloc(n, i + 1));
    data.forEach((d, i) => w.push(first + i, d, 1000 + i));
    assert.equal(w.low, first + 2);
    assert.equal(w.edge, first + 5);
    assert.equal(w.bytes, 30 + 40 + 50 + 60);
    assert.equal(w.holds({ first: first + 1, last: first + 3 }), false, "chunk first + 1 was dropped");
    assert.equal(w.span({ first: first + 1, last: first + 2 }), undefined);
    const span = w.span({ first: first + 3, last: first + 4 })!;
    assert.deepEqual(await readAll(w.read(span.start, span.end)), Buffer.concat([data[3]!, data[4]!]));
    assert.throws(() => w.push(first + 7, Buffer.alloc(1), 0), /does not follow/);
    // a read of bytes dropped meanwhile fails before its first byte, with 416
    const old = { start: 0, end: 10 };
    await assert.rejects(readAll(w.read(old.start, old.end)), (e: Error & { refusalStatus?: number }) => {
      assert.equal(e.refusalStatus, 416);
      return true;
    });
  });

  test("a restarted broadcast continues its sequence numbers from the saved state", () => {
    const dir = mkdtempSync(join(tmpdir(), "ds-live-state-"));
    try {
      const a = new SequenceState(dir, "cams/front door");
      assert.equal(a.load(0), 0, "nothing saved: the fallback");
      a.save(2 ** 32 + 5);
      assert.equal(new SequenceState(dir, "cams/front door").load(0), 2 ** 32 + 5);
      assert.equal(new SequenceState(dir, "other").load(7), 7, "each name has its own");
      writeFileSync(join(dir, `live-${encodeURIComponent("broken")}.json`), "{not json");
      assert.throws(() => new SequenceState(dir, "broken").load(0), SequenceStateError);
      // a broadcast that used up its numbers saved the one after the last (2^53 - 2): a restart says so
      const done = new SequenceState(dir, "done");
      done.save(Number.MAX_SAFE_INTEGER);
      assert.throws(
        () => done.load(0),
        (e: Error) => e instanceof SequenceStateError && /"done" used up its sequence numbers.*remove /.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
