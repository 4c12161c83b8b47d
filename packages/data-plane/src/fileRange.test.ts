import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, rm, truncate, writeFile, type FileHandle } from "node:fs/promises";
import { createServer, get, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { FileRangeReadable, READ_PIECE_BYTES, type RangeSendHooks } from "./fileRange.js";

// several pieces and a short one: both buffers come round many times
const SIZE = READ_PIECE_BYTES * 6 + 12_345;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let dir: string;
let path: string;
let data: Buffer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "file-range-"));
  data = randomBytes(SIZE);
  path = join(dir, "f.bin");
  await writeFile(path, data);
});
after(() => rm(dir, { recursive: true, force: true }));

/** An HTTP server answering every request with `send` (the range's head written by the hooks). */
async function serve(
  send: (res: import("node:http").ServerResponse) => Promise<void>,
): Promise<{ port: number; server: Server; results: PromiseSettledResult<void>[] }> {
  const results: PromiseSettledResult<void>[] = [];
  const server = createServer((_req, res) => {
    send(res).then(
      () => results.push({ status: "fulfilled", value: undefined }),
      (reason: unknown) => {
        results.push({ status: "rejected", reason });
        res.destroy();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, server, results };
}

function hooksFor(res: import("node:http").ServerResponse, length: number, heads: { n: number }): RangeSendHooks {
  return {
    head: () => {
      heads.n++;
      res.writeHead(200, { "content-length": String(length) });
    },
  };
}

describe("FileRangeReadable.sendTo", () => {
  it("sends a range of many pieces byte-identical to a reader that keeps pausing", async () => {
    // more than loopback's socket buffers hold: while the reader pauses, writes queue with their buffers
    const wide = randomBytes(24 * 1024 * 1024 + 4321);
    const widePath = join(dir, "wide.bin");
    await writeFile(widePath, wide);
    const [start, end] = [1000, wide.length - 77];
    let handle: FileHandle | undefined;
    const heads = { n: 0 };
    const { port, server, results } = await serve(async (res) => {
      const body = new FileRangeReadable(
        async () => ({ handle: (handle = await open(widePath)), close: true }),
        start,
        end,
        "f.bin",
      );
      await body.sendTo(res, hooksFor(res, end - start, heads));
      res.end();
    });
    try {
      const got = await new Promise<Buffer>((resolve, reject) => {
        get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (p: Buffer) => {
            // copy: the socket's own buffers are not ours to keep either way
            parts.push(Buffer.from(p));
            res.pause();
            setTimeout(() => res.resume(), parts.length === 1 ? 200 : 1);
          });
          res.on("end", () => resolve(Buffer.concat(parts)));
          res.on("error", reject);
        }).on("error", reject);
      });
      assert.equal(got.length, end - start);
      assert.equal(
        sha(got),
        sha(wide.subarray(start, end)),
        "the bytes of the range, each buffer written before it was read into again",
      );
      await waitFor(() => results.length === 1);
      assert.equal(results[0]!.status, "fulfilled");
      assert.equal(heads.n, 1);
      assert.equal(handle!.fd, -1, "file closed");
    } finally {
      server.close();
    }
  });

  it("stops and closes the file when the reader goes away mid-range", async () => {
    // more than loopback's socket buffers hold, so that the writes stop completing while the reader pauses
    const big = join(dir, "big.bin");
    const BIG = 64 * 1024 * 1024;
    await writeFile(big, "");
    await truncate(big, BIG);
    let handle: FileHandle | undefined;
    const { port, server, results } = await serve(async (res) => {
      const body = new FileRangeReadable(
        async () => ({ handle: (handle = await open(big)), close: true }),
        0,
        BIG,
        "big.bin",
      );
      await body.sendTo(res, hooksFor(res, BIG, { n: 0 }));
      res.end();
    });
    try {
      await new Promise<void>((resolve) => {
        const req = get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
          res.once("data", () => {
            res.pause(); // the server's writes stop completing
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 50);
          });
        });
        req.on("error", () => {});
      });
      await waitFor(() => results.length === 1);
      const r = results[0]!;
      assert.equal(r.status, "rejected");
      assert.equal((r as PromiseRejectedResult).reason.name, "AbortError");
      await waitFor(() => handle?.fd === -1);
    } finally {
      server.close();
    }
  });

  it("stops waiting when the destination closes, or the signal aborts, while a piece is held", async () => {
    const never = () => new Promise<void>(() => {});
    const within = <T>(p: Promise<T>) =>
      Promise.race([p, sleep(2000).then(() => assert.fail("sendTo still waiting 2 s after the fetcher left"))]);

    const out = new PassThrough();
    const held = new FileRangeReadable(async () => ({ handle: await open(path), close: true }), 0, SIZE, "f.bin");
    const sending = held.sendTo(out, { head: () => {}, piece: never });
    setTimeout(() => out.destroy(), 20);
    await assert.rejects(within(sending), { name: "AbortError" });

    const gone = new AbortController();
    const other = new FileRangeReadable(async () => ({ handle: await open(path), close: true }), 0, SIZE, "f.bin");
    const waiting = other.sendTo(new PassThrough(), { head: () => {}, piece: never, signal: gone.signal });
    setTimeout(() => gone.abort(), 20);
    await assert.rejects(within(waiting), { name: "AbortError" });
  });

  it("reports a write that fails as the fetcher gone (AbortError), with the socket's error as its cause", async () => {
    // not destroyed by its failed write, so no close comes first: as a response whose socket reset under a write
    const broken = new Writable({
      autoDestroy: false,
      write: (_chunk, _enc, cb) => cb(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })),
    });
    broken.on("error", () => {});
    // one piece: its failed write is what the end waits for (a reset near the end of a range)
    const body = new FileRangeReadable(async () => ({ handle: await open(path), close: true }), 0, 1000, "f.bin");
    await assert.rejects(body.sendTo(broken, { head: () => {} }), (err: Error) => {
      assert.equal(err.name, "AbortError");
      assert.match(String((err.cause as Error).message), /ECONNRESET/);
      return true;
    });
  });

  it("rejects without a head when the open fails, and after what it had when the file is short", async () => {
    const heads = { n: 0 };
    const failing = new FileRangeReadable(
      () => Promise.reject(new Error("changed since it was published")),
      0,
      10,
      "f.bin",
    );
    const sink = new PassThrough();
    await assert.rejects(failing.sendTo(sink, { head: () => heads.n++ }), /changed since it was published/);
    assert.equal(heads.n, 0);

    const short = new FileRangeReadable(
      async () => ({ handle: await open(path), close: true }),
      SIZE - 100,
      SIZE + 500,
      "f.bin",
    );
    const out = new PassThrough();
    const parts: Buffer[] = [];
    out.on("data", (p: Buffer) => parts.push(p));
    await assert.rejects(short.sendTo(out, { head: () => heads.n++ }), /f\.bin ended at byte/);
    assert.equal(heads.n, 1);
    assert.ok(Buffer.concat(parts).equals(data.subarray(SIZE - 100)), "the bytes it had");
  });

  it("holds each piece for what piece() returns (an upload rate) and counts every byte", async () => {
    let counted = 0;
    let waits = 0;
    const out = new PassThrough();
    const parts: Buffer[] = [];
    out.on("data", (p: Buffer) => parts.push(Buffer.from(p)));
    const body = new FileRangeReadable(async () => ({ handle: await open(path), close: true }), 0, SIZE, "f.bin");
    await body.sendTo(out, {
      head: () => {},
      piece: async (n) => {
        counted += n;
        waits++;
        await sleep(1);
      },
    });
    assert.equal(counted, SIZE);
    assert.equal(waits, Math.ceil(SIZE / READ_PIECE_BYTES));
    assert.equal(sha(Buffer.concat(parts)), sha(data));
  });
});

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await sleep(10);
  assert.ok(cond(), "condition not met within 3 s");
}
