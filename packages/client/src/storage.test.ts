import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { chunkCount, chunkSpan, RangeSet } from "@distribustream/pdtp";
import { BufferFile } from "./bufferFile.js";
import { DownloadError } from "./errors.js";
import { InOrderWriter, SLOW_WRITE_MS } from "./inOrderWriter.js";
import { openStorage } from "./storage.js";

const dir = mkdtempSync(join(tmpdir(), "dsclient-storage-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const chunkSize = 4096;
function makeFile(size: number) {
  const data = randomBytes(size);
  const layout = { size, chunkSize, chunkCount: chunkCount(size, chunkSize) };
  const chunk = (i: number) => {
    const { start, end } = chunkSpan(i, size, chunkSize);
    return data.subarray(start, end);
  };
  return { data, layout, chunk };
}

/** A fixed shuffle so failures reproduce. */
function shuffled(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let seed = 7;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

describe("InOrderWriter", () => {
  test("chunks arriving out of order reach a slow sink in order, one chunk in memory at a time", async () => {
    const { data, layout, chunk } = makeFile(100 * chunkSize + 123);
    const held = new RangeSet();
    let reads = 0;
    let maxOutstanding = 0;
    const received: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 1024,
      write(buf: Buffer, _enc, cb) {
        received.push(Buffer.from(buf));
        setImmediate(cb); // a slow reader
      },
    });
    const positions: number[] = [];
    const writer = new InOrderWriter(
      {
        held,
        readChunk: async (i) => {
          reads++;
          maxOutstanding = Math.max(maxOutstanding, sink.writableLength);
          return Buffer.from(chunk(i));
        },
      },
      sink,
      layout.chunkCount,
      (p) => positions.push(p),
    );
    for (const i of shuffled(layout.chunkCount)) {
      held.add({ first: i, last: i });
      writer.kick();
      await new Promise((r) => setImmediate(r));
      // never ahead of what is contiguous
      assert.ok(writer.position <= held.firstMissing(0));
    }
    await writer.done();
    assert.ok(Buffer.concat(received).equals(data), "output bytes equal the file, in order");
    assert.equal(reads, layout.chunkCount, "each chunk read from the buffer exactly once");
    assert.ok(maxOutstanding <= chunkSize, `sink never held more than a chunk (max ${maxOutstanding})`);
    assert.deepEqual(
      positions,
      Array.from({ length: layout.chunkCount }, (_, i) => i + 1),
    );
  });

  test("reads chunk n+1 while the sink takes chunk n, alternating two buffers", async () => {
    const { data, layout, chunk } = makeFile(40 * chunkSize + 77);
    const file = await BufferFile.create(join(dir, "pipelined.buf"), layout, { anonymous: true });
    for (let i = 0; i < layout.chunkCount; i++) await file.writeChunk(i, Buffer.from(chunk(i)));
    const events: string[] = [];
    const buffers = new Set<ArrayBufferLike>();
    const received: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 1024,
      write(buf: Buffer, _enc, cb) {
        buffers.add(buf.buffer);
        received.push(Buffer.from(buf));
        const i = received.length - 1;
        setTimeout(() => {
          events.push(`taken ${i}`);
          cb();
        }, 2);
      },
    });
    const held = RangeSet.of(0, layout.chunkCount - 1);
    const writer = new InOrderWriter(
      {
        held,
        readChunk: (i, scratch) => {
          events.push(`read ${i}`);
          return file.readChunk(i, scratch);
        },
      },
      sink,
      layout.chunkCount,
    );
    writer.kick();
    await writer.done();
    await file.close();
    assert.ok(Buffer.concat(received).equals(data));
    assert.ok(buffers.size <= 2, `${buffers.size} distinct buffers written`);
    for (let i = 1; i < layout.chunkCount; i++) {
      const readNext = events.indexOf(`read ${i}`);
      assert.ok(readNext < events.indexOf(`taken ${i - 1}`), `chunk ${i} read while chunk ${i - 1} was written`);
      if (i >= 2) assert.ok(readNext > events.indexOf(`taken ${i - 2}`), `chunk ${i} read after ${i - 2} was taken`);
    }
  });

  test("waiting is true only when a write is pending for long, not during normal writes", async () => {
    const { layout, chunk } = makeFile(30 * chunkSize);
    const held = RangeSet.of(0, layout.chunkCount - 1);
    const reader = { held, readChunk: async (i: number) => Buffer.from(chunk(i)) };
    // A fast reader: the writer is never reported blocked.
    const fast = new InOrderWriter(
      reader,
      new Writable({ highWaterMark: 16, write: (_b, _e, cb) => setTimeout(cb, 1) }),
      layout.chunkCount,
    );
    fast.kick();
    let sawWaiting = false;
    const sampler = setInterval(() => (sawWaiting ||= fast.waiting), 1);
    await fast.done();
    clearInterval(sampler);
    assert.equal(sawWaiting, false, "a sink taking each chunk at once is not blocked");
    // A paused reader: blocked once a write has waited more than SLOW_WRITE_MS.
    let release: (() => void) | undefined;
    const slow = new InOrderWriter(reader, new Writable({ write: (_b, _e, cb) => (release = cb) }), layout.chunkCount);
    slow.kick();
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(slow.waiting, false, "not yet");
    await new Promise((r) => setTimeout(r, SLOW_WRITE_MS + 50));
    assert.equal(slow.waiting, true, "pending for longer than SLOW_WRITE_MS");
    release?.();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(slow.position >= 1, true);
  });

  test("a failing sink rejects done()", async () => {
    const sink = new Writable({
      write: (_b, _e, cb) => cb(Object.assign(new Error("broken pipe"), { code: "EPIPE" })),
    });
    const held = RangeSet.of(0, 1);
    const writer = new InOrderWriter({ held, readChunk: async () => Buffer.alloc(10) }, sink, 2);
    writer.kick();
    await assert.rejects(writer.done(), /broken pipe/);
  });
});

describe("file storage", () => {
  test("writes a .dspart at offsets, renames on finish, keeps serving after the rename", async () => {
    const { data, layout, chunk } = makeFile(37 * chunkSize + 5);
    const out = join(dir, "movie.bin");
    const s = await openStorage({ kind: "file", path: out }, layout, { tempDir: dir });
    assert.ok(existsSync(out + ".dspart"));
    const order = shuffled(layout.chunkCount);
    for (const i of order.slice(0, 10)) await s.put(i, Buffer.from(chunk(i)));
    assert.equal(s.position(), s.held.firstMissing(0));
    for (const i of order.slice(10)) await s.put(i, Buffer.from(chunk(i)));
    assert.equal(s.position(), layout.chunkCount);
    await s.finish();
    assert.ok(!existsSync(out + ".dspart"), ".dspart renamed away");
    assert.ok(readFileSync(out).equals(data));
    const served: Buffer[] = [];
    for await (const b of s.read(chunkSize * 3, chunkSize * 9 + 17)) served.push(b as Buffer);
    assert.ok(Buffer.concat(served).equals(data.subarray(chunkSize * 3, chunkSize * 9 + 17)));
    await s.close();
    assert.ok(readFileSync(out).equals(data), "closing keeps the finished file");
  });

  test("discard removes the partial file", async () => {
    const { layout, chunk } = makeFile(8 * chunkSize);
    const out = join(dir, "partial.bin");
    const s = await openStorage({ kind: "file", path: out }, layout, { tempDir: dir });
    await s.put(3, Buffer.from(chunk(3)));
    await s.discard();
    assert.ok(!existsSync(out + ".dspart"));
    assert.ok(!existsSync(out));
  });

  test("a symbolic link planted at <out>.dspart is replaced, never written through", async () => {
    const { data, layout, chunk } = makeFile(3 * chunkSize);
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "precious");
    const out = join(dir, "planted.bin");
    symlinkSync(victim, out + ".dspart");
    const s = await openStorage({ kind: "file", path: out }, layout, { tempDir: dir });
    assert.ok(!lstatSync(out + ".dspart").isSymbolicLink(), "the link was replaced by a new file");
    for (let i = 0; i < layout.chunkCount; i++) await s.put(i, Buffer.from(chunk(i)));
    await s.finish();
    await s.close();
    assert.equal(readFileSync(victim, "utf8"), "precious", "the link's target is untouched");
    assert.ok(readFileSync(out).equals(data));
  });

  test("a folder that cannot be written is an I/O error (exit 5)", async () => {
    const { layout } = makeFile(chunkSize);
    await assert.rejects(
      openStorage({ kind: "file", path: join(dir, "no/such/folder/x.bin") }, layout, { tempDir: dir }),
      (err: unknown) => err instanceof DownloadError && err.exitCode === 5 && /ENOENT/.test(err.message),
    );
  });
});

describe("stream storage", () => {
  test("a socket output gets the bytes in order while the buffer file is anonymous", async () => {
    const { data, layout, chunk } = makeFile(64 * chunkSize + 999);
    const sockPath = join(dir, "out.sock");
    const got: Buffer[] = [];
    let conn: Socket | undefined;
    const closed = new Promise<void>((resolve) => {
      const server = createServer((c) => {
        conn = c;
        c.on("data", (b) => {
          got.push(b);
          c.pause();
          setTimeout(() => c.resume(), 1); // slow reader
        });
        c.on("end", () => {
          server.close();
          resolve();
        });
      }).listen(sockPath);
    });
    const tempDir = mkdtempSync(join(dir, "tmp-"));
    await new Promise((r) => setTimeout(r, 20));
    const s = await openStorage({ kind: "stream", path: sockPath, type: "socket" }, layout, { tempDir });
    assert.deepEqual(readdirSync(tempDir), [], "the buffer file is unlinked at once");
    for (const i of shuffled(layout.chunkCount)) await s.put(i, Buffer.from(chunk(i)));
    await s.finish();
    await s.close();
    await closed;
    assert.ok(conn);
    assert.ok(Buffer.concat(got).equals(data));
  });

  test("a full disk on the output is exit 5 'disk full writing'", { skip: !existsSync("/dev/full") }, async () => {
    const { layout, chunk } = makeFile(4 * chunkSize);
    const s = await openStorage({ kind: "stream", path: "/dev/full", type: "char" }, layout, { tempDir: dir });
    for (let i = 0; i < layout.chunkCount; i++) await s.put(i, Buffer.from(chunk(i)));
    await assert.rejects(
      s.failed,
      (err: unknown) =>
        err instanceof DownloadError && err.exitCode === 5 && err.message === "disk full writing /dev/full",
    );
    await s.discard();
  });
});
