import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { chunkSpan, issueTicket, Signer, type ChunkRange } from "@distribustream/pdtp";
import { fetchChunks, FetchError, keepAliveAgent, type DataPlaneAgent, type FetchOptions } from "./index.js";

// Chunks much smaller than a socket read, so that one read spans several chunk boundaries.
const CHUNK = 1000;
const SIZE = CHUNK * 20 + 77; // 21 chunks, the last one short
const LAST = 20;
const data = randomBytes(SIZE);
const signer = Signer.generate();

const rangeBytes = (r: ChunkRange) =>
  data.subarray(chunkSpan(r.first, SIZE, CHUNK).start, chunkSpan(r.last, SIZE, CHUNK).end);

/** A test peer: counts connections and closes them all on close(). */
interface Peer {
  port: number;
  connections: number;
  open: number;
  /** Heads of the requests received, in order. */
  requests: string[];
  close(): Promise<void>;
}

async function listen(server: Server, peer: Omit<Peer, "port" | "close">): Promise<Peer> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    peer.connections++;
    peer.open++;
    sockets.add(s);
    s.once("close", () => {
      peer.open--;
      sockets.delete(s);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(peer, {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}

/** An HTTP/1.1 peer (node:http, keep-alive) serving `data` by the chunks path; `answer` may override. */
function httpPeer(answer?: (req: IncomingMessage, res: ServerResponse, n: number) => boolean): Promise<Peer> {
  let n = 0;
  const peer = { connections: 0, open: 0, requests: [] as string[] };
  const server = createHttpServer((req, res) => {
    peer.requests.push(`${req.method} ${req.url}`);
    if (answer?.(req, res, n++)) return;
    const m = /\/chunks\/(\d+)-(\d+)$/.exec(req.url ?? "");
    const body = rangeBytes({ first: Number(m![1]), last: Number(m![2]) });
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 30_000;
  return listen(server, peer);
}

/** A raw TCP peer: `answer` writes whatever bytes it likes for each request head it receives. */
function rawPeer(answer: (socket: Socket, head: string, nOnSocket: number) => void | Promise<void>): Promise<Peer> {
  const peer = { connections: 0, open: 0, requests: [] as string[] };
  const server = createNetServer((socket) => {
    socket.setNoDelay(true);
    let pending = "";
    let n = 0;
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      pending += d.toString("latin1");
      let at: number;
      while ((at = pending.indexOf("\r\n\r\n")) >= 0) {
        const head = pending.slice(0, at);
        pending = pending.slice(at + 4);
        peer.requests.push(head);
        void answer(socket, head, n++);
      }
    });
  });
  return listen(server, peer);
}

function options(port: number, over: Partial<FetchOptions> = {}): FetchOptions & { got: [number, Buffer][] } {
  const got: [number, Buffer][] = [];
  const range = over.range ?? { first: 0, last: LAST };
  return {
    host: "127.0.0.1",
    port,
    streamId: "somestream",
    range,
    ticket: issueTicket(
      { streamId: "somestream", range, fetcherId: "f", serverId: "s", expiresMs: Date.now() + 60_000 },
      signer,
    ),
    layout: { size: SIZE, chunkSize: CHUNK },
    onChunk: (i, d) => void got.push([i, Buffer.from(d)]),
    timeoutMs: 2000,
    got,
    ...over,
  };
}

function assertDelivered(got: [number, Buffer][], range: ChunkRange): void {
  assert.deepEqual(
    got.map(([i]) => i),
    Array.from({ length: range.last - range.first + 1 }, (_, k) => range.first + k),
  );
  for (const [i, d] of got) assert.ok(d.equals(rangeBytes({ first: i, last: i })), `chunk ${i} differs`);
}

const failed =
  (re: RegExp, bytes = 0) =>
  (e: unknown) =>
    e instanceof FetchError && e.kind === "failed" && re.test(e.message) && e.bytes === bytes;

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await sleep(10);
  assert.ok(cond(), what);
}

describe("fetchChunks over keep-alive connections", () => {
  it("sends the request by hand and reuses one connection for sequential fetches", async () => {
    const peer = await httpPeer();
    const agent = keepAliveAgent();
    try {
      for (const range of [
        { first: 0, last: LAST },
        { first: 3, last: 5 },
        { first: LAST, last: LAST },
      ]) {
        const o = options(peer.port, { agent, range });
        assert.deepEqual(await fetchChunks(o), { bytes: rangeBytes(range).length });
        assertDelivered(o.got, range);
      }
      assert.equal(peer.connections, 1);
      assert.deepEqual(peer.requests, [
        "GET /pdtp/v1/streams/somestream/chunks/0-20",
        "GET /pdtp/v1/streams/somestream/chunks/3-5",
        "GET /pdtp/v1/streams/somestream/chunks/20-20",
      ]);
      assert.equal(agent.idleCount, 1);
      agent.destroy();
      await until(() => peer.open === 0, "destroy() closes the idle connection");
      assert.equal(agent.idleCount, 0);
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  it("writes an exact request head", async () => {
    const peer = await rawPeer((s) => void s.end("HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n" + "x".repeat(77)));
    try {
      const o = options(peer.port, { range: { first: LAST, last: LAST }, onChunk: () => {} });
      await fetchChunks(o);
      const ticket = /\r\nx-pdtp-ticket: ([A-Za-z0-9_-]+)\r\n/.exec(peer.requests[0]!);
      assert.ok(ticket, peer.requests[0]);
      assert.equal(
        peer.requests[0],
        `GET /pdtp/v1/streams/somestream/chunks/20-20 HTTP/1.1\r\nHost: 127.0.0.1:${peer.port}\r\n` +
          `x-pdtp-ticket: ${ticket[1]}\r\nConnection: keep-alive`,
      );
    } finally {
      await peer.close();
    }
  });

  it("without an agent, uses a connection per fetch and closes it", async () => {
    const peer = await httpPeer();
    try {
      for (let i = 0; i < 2; i++) {
        const o = options(peer.port, { range: { first: 1, last: 2 } });
        await fetchChunks(o);
        assertDelivered(o.got, { first: 1, last: 2 });
      }
      assert.equal(peer.connections, 2);
      await until(() => peer.open === 0, "connections closed after the fetch");
    } finally {
      await peer.close();
    }
  });

  it("does not reuse a connection the peer answered with Connection: close", async () => {
    // The peer says close but leaves the socket open (and would answer more on it): only the header tells.
    let answered = 0;
    const peer = await rawPeer((s) => {
      const body = rangeBytes({ first: 0, last: 1 });
      s.write(
        `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${answered++ === 0 ? "Connection: close\r\n" : ""}\r\n`,
      );
      s.write(body);
    });
    const agent = keepAliveAgent();
    try {
      for (let i = 0; i < 3; i++) {
        const o = options(peer.port, { agent, range: { first: 0, last: 1 } });
        await fetchChunks(o);
        assertDelivered(o.got, { first: 0, last: 1 });
      }
      assert.equal(peer.connections, 2, "the first connection was closed, the second reused");
      assert.equal(agent.idleCount, 1);
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  it("reads a 4xx answer's body as the reason and reuses the connection", async () => {
    const peer = await httpPeer((_req, res, n) => {
      if (n > 0) return false;
      const body = "ticket expired\n";
      res.writeHead(403, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return true;
    });
    const agent = keepAliveAgent();
    try {
      await assert.rejects(
        fetchChunks(options(peer.port, { agent, onChunk: () => assert.fail("no chunk expected") })),
        (e: unknown) =>
          e instanceof FetchError &&
          e.kind === "refused" &&
          e.status === 403 &&
          e.message === "peer answered 403: ticket expired",
      );
      const o = options(peer.port, { agent });
      await fetchChunks(o);
      assertDelivered(o.got, { first: 0, last: LAST });
      assert.equal(peer.connections, 1);
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  it("fails on a 5xx with a long body, keeps a short reason and closes the connection", async () => {
    const peer = await rawPeer(async (s) => {
      s.write(`HTTP/1.1 500 Oops\r\ncontent-length: ${200_000}\r\n\r\n`);
      s.write("disk on fire " + "z".repeat(100_000));
      await sleep(20);
      s.write("z".repeat(99_987));
    });
    const agent = keepAliveAgent();
    try {
      await assert.rejects(
        fetchChunks(options(peer.port, { agent })),
        (e: unknown) =>
          e instanceof FetchError &&
          e.kind === "failed" &&
          e.status === 500 &&
          e.message.startsWith("peer answered 500: disk on fire zzz") &&
          e.message.length < 600,
      );
      assert.equal(agent.idleCount, 0);
      await until(() => peer.open === 0, "connection closed");
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  it("retries once on a fresh connection when a reused one is closed before answering", async () => {
    const peer = await rawPeer((s, _head, n) => {
      if (n > 0) return void s.destroy(); // the server dropped its keep-alive just as we reused it
      const body = rangeBytes({ first: 0, last: 1 });
      s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
      s.write(body);
    });
    const agent = keepAliveAgent();
    try {
      for (let i = 0; i < 2; i++) {
        const o = options(peer.port, { agent, range: { first: 0, last: 1 } });
        await fetchChunks(o);
        assertDelivered(o.got, { first: 0, last: 1 });
      }
      assert.equal(peer.connections, 2);
      assert.equal(peer.requests.length, 3);
    } finally {
      agent.destroy();
      await peer.close();
    }
  });
  it("idle pooled connections do not keep the process alive", async () => {
    const peer = await httpPeer();
    try {
      const script = `
        const { fetchChunks, keepAliveAgent } = await import(${JSON.stringify(import.meta.resolve("./index.js"))});
        const { issueTicket, Signer } = await import(${JSON.stringify(import.meta.resolve("@distribustream/pdtp"))});
        const range = { first: 0, last: 1 };
        const ticket = issueTicket({ streamId: "s", range, fetcherId: "f", serverId: "s", expiresMs: Date.now() + 60000 }, Signer.generate());
        const agent = keepAliveAgent();
        await fetchChunks({ host: "127.0.0.1", port: ${peer.port}, streamId: "s", range, ticket,
          layout: { size: ${SIZE}, chunkSize: ${CHUNK} }, onChunk: () => {}, agent });
        console.log(agent.idleCount);`;
      const started = Date.now();
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      const killer = setTimeout(() => child.kill(), 8000);
      const code = await new Promise<number | null>((r) => child.on("close", r));
      clearTimeout(killer);
      assert.equal(code, 0, "the child exited by itself");
      assert.equal(out.trim(), "1", "one idle connection was pooled");
      assert.ok(Date.now() - started < 8000);
    } finally {
      await peer.close();
    }
  });

  it("fails a transfer in flight when the agent is destroyed", async () => {
    const peer = await httpPeer();
    const agent = keepAliveAgent();
    try {
      const o = options(peer.port, { agent });
      const sync = o.onChunk;
      o.onChunk = async (i, d) => {
        await sync(i, d);
        if (i === 1) agent.destroy();
        await sleep(5);
      };
      await assert.rejects(fetchChunks(o), failed(/^connection closed mid-body$/, 2 * CHUNK));
      await until(() => peer.open === 0, "connection closed");
    } finally {
      agent.destroy();
      await peer.close();
    }
  });
});

describe("fetchChunks parsing", () => {
  /** Writes `pieces` with a pause between them, so that each arrives as its own read. */
  const piecewise = (pieces: (string | Buffer)[]) =>
    rawPeer(async (s) => {
      for (const p of pieces) {
        if (s.destroyed) return;
        s.write(p);
        await sleep(15);
      }
    });

  const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${SIZE}\r\n\r\n`;
  const awkward = (): (string | Buffer)[] => {
    const b = rangeBytes({ first: 0, last: LAST });
    return [
      head.slice(0, 3), // "HTT"
      head.slice(3, 30),
      head.slice(30, -3), // ends in the middle of CRLFCRLF
      head.slice(-3, -1),
      Buffer.concat([Buffer.from(head.slice(-1)), b.subarray(0, 5)]), // head's last byte with the first body bytes
      b.subarray(5, CHUNK - 1), // one byte short of a chunk
      b.subarray(CHUNK - 1, CHUNK + 1), // across a boundary
      b.subarray(CHUNK + 1, 5 * CHUNK + 500), // several whole chunks and a half in one read
      b.subarray(5 * CHUNK + 500, 6 * CHUNK), // exactly to a boundary
      b.subarray(6 * CHUNK), // the rest, ending with the short chunk
    ];
  };

  for (const [what, onChunk] of [
    ["a synchronous", undefined],
    ["a slow asynchronous", () => sleep(2)],
  ] as const) {
    it(`reassembles a response split at awkward places, with ${what} onChunk`, async () => {
      const peer = await piecewise(awkward());
      const agent = keepAliveAgent();
      try {
        const o = options(peer.port, { agent });
        if (onChunk) {
          const sync = o.onChunk;
          o.onChunk = async (i, d) => {
            await sync(i, d);
            await onChunk();
          };
        }
        assert.deepEqual(await fetchChunks(o), { bytes: SIZE });
        assertDelivered(o.got, { first: 0, last: LAST });
        assert.equal(agent.idleCount, 1, "connection back in the pool");
      } finally {
        agent.destroy();
        await peer.close();
      }
    });
  }

  for (const [what, slow] of [
    ["a synchronous", false],
    ["an asynchronous", true],
  ] as const) {
    it(`reads big chunks in place, byte-exact, with ${what} onChunk and three transfers at once`, async () => {
      // 256 KiB chunks: a chunk's rest is read straight into the transfer's buffer (no copy out of the shared
      // read buffer); odd write sizes put chunk boundaries and the head anywhere in a read
      const chunk = 256 * 1024;
      const size = chunk * 12 + 4321;
      const bodies = [randomBytes(size), randomBytes(size), randomBytes(size)];
      const peers = await Promise.all(
        bodies.map((body) =>
          rawPeer(async (s) => {
            const all = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`), body]);
            for (let at = 0, k = 0; at < all.length && !s.destroyed; k++) {
              const n = [70_001, 300_000, 1, 150_000, 262_144][k % 5]!;
              s.write(all.subarray(at, at + n));
              at += n;
              if (k % 3 === 0) await sleep(2);
            }
          }),
        ),
      );
      const agent = keepAliveAgent();
      try {
        const runs = peers.map((peer, p) => {
          const got: Buffer[] = [];
          const o = options(peer.port, {
            agent,
            range: { first: 0, last: 12 },
            layout: { size, chunkSize: chunk },
            onChunk: slow
              ? async (i, d) => {
                  got[i] = Buffer.from(d);
                  await sleep(3);
                }
              : (i, d) => void (got[i] = Buffer.from(d)),
          });
          return fetchChunks(o).then((r) => ({ r, got, p }));
        });
        for (const { r, got, p } of await Promise.all(runs)) {
          assert.deepEqual(r, { bytes: size });
          assert.equal(got.length, 13);
          assert.ok(Buffer.concat(got).equals(bodies[p]!), `peer ${p}'s bytes arrived as sent`);
        }
      } finally {
        agent.destroy();
        await Promise.all(peers.map((p) => p.close()));
      }
    });
  }

  it("delivers a whole response that arrives in one read, chunk by chunk from the carry", async () => {
    const peer = await rawPeer((s) => void s.write(Buffer.concat([Buffer.from(head), data])));
    try {
      const o = options(peer.port);
      const sync = o.onChunk;
      o.onChunk = async (i, d) => {
        await sync(i, d);
        await sleep(1);
      };
      await fetchChunks(o);
      assertDelivered(o.got, { first: 0, last: LAST });
    } finally {
      await peer.close();
    }
  });

  it("keeps each connection's bytes apart: reads share one buffer, a paused transfer's carry is its own", async () => {
    // two peers with different bytes, each whole response in one write: every chunk boundary leaves a
    // carry while the slow onChunk runs, and the other connection reads meanwhile
    const other = randomBytes(SIZE);
    const whole = (body: Buffer) => rawPeer((s) => void s.write(Buffer.concat([Buffer.from(head), body])));
    const peers = [await whole(data), await whole(other)];
    try {
      const runs = peers.map((peer) => {
        const o = options(peer.port);
        const sync = o.onChunk;
        o.onChunk = async (i, d) => {
          await sync(i, d);
          await sleep(1);
        };
        return { o, done: fetchChunks(o) };
      });
      await Promise.all(runs.map((r) => r.done));
      assertDelivered(runs[0]!.o.got, { first: 0, last: LAST });
      assert.ok(Buffer.concat(runs[1]!.o.got.map(([, d]) => d)).equals(other), "second peer's bytes");
    } finally {
      await Promise.all(peers.map((p) => p.close()));
    }
  });

  it("fails when the peer sends more bytes than the range, after delivering every chunk", async () => {
    const b = rangeBytes({ first: 0, last: LAST });
    const peer = await piecewise([head, b.subarray(0, -5), Buffer.concat([b.subarray(-5), Buffer.from("extra")])]);
    try {
      const o = options(peer.port);
      await assert.rejects(fetchChunks(o), failed(/more bytes than the range/, SIZE));
      assertDelivered(o.got, { first: 0, last: LAST });
    } finally {
      await peer.close();
    }
  });

  it("fails when bytes past the range follow a last chunk big enough to be read in place", async () => {
    // the last chunk's rest (256 KiB) is read straight into its buffer; its last byte must still come with
    // what follows, or the extra bytes would wait in the socket for the next request on the pooled connection
    const chunk = 256 * 1024;
    const size = chunk * 2;
    const body = randomBytes(size);
    const peer = await rawPeer(async (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
      s.write(body.subarray(0, chunk + 100));
      await sleep(20);
      s.write(Buffer.concat([body.subarray(chunk + 100), Buffer.from("extra")]));
    });
    const agent = keepAliveAgent();
    try {
      const o = options(peer.port, { agent, range: { first: 0, last: 1 }, layout: { size, chunkSize: chunk } });
      await assert.rejects(fetchChunks(o), failed(/more bytes than the range/, size));
      assert.equal(agent.idleCount, 0, "the connection is not pooled");
    } finally {
      agent.destroy();
      await peer.close();
    }
  });

  it("fails on a short body with the whole chunks delivered", async () => {
    const b = rangeBytes({ first: 0, last: LAST });
    const peer = await rawPeer(async (s) => {
      s.write(head);
      s.write(b.subarray(0, 3 * CHUNK + 10));
      await sleep(20);
      s.end();
    });
    try {
      const o = options(peer.port);
      await assert.rejects(fetchChunks(o), failed(/^short body: got chunks up to 2 of 0-20$/, 3 * CHUNK));
      assertDelivered(o.got, { first: 0, last: 2 });
    } finally {
      await peer.close();
    }
  });

  const bad: [string, string, RegExp][] = [
    ["no content-length", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", /no content-length/],
    ["a chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", /chunked/],
    ["a wrong content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", /content-length 5, expected/],
    ["something that is not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", /not an HTTP\/1\.x status line: SSH-2\.0/],
    ["a bad header line", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", /bad header line/],
    ["a response head over 16 KiB", `HTTP/1.1 200 OK\r\nx-junk: ${"j".repeat(20_000)}\r\n\r\n`, /over 16384 bytes/],
  ];
  for (const [what, answer, re] of bad) {
    it(`fails on ${what}`, async () => {
      const peer = await rawPeer((s) => void s.write(answer));
      const agent = keepAliveAgent();
      try {
        await assert.rejects(
          fetchChunks(options(peer.port, { agent, onChunk: () => assert.fail("no chunk") })),
          failed(re),
        );
        assert.equal(agent.idleCount, 0);
        await until(() => peer.open === 0, "connection closed");
      } finally {
        agent.destroy();
        await peer.close();
      }
    });
  }

  it("does not count time in onChunk as idle, but does count a stalled peer", async () => {
    const b = rangeBytes({ first: 0, last: LAST });
    const peer = await rawPeer((s) => {
      s.write(head);
      s.write(b.subarray(0, 2 * CHUNK + 1)); // then nothing
    });
    try {
      const o = options(peer.port, { timeoutMs: 100 });
      const sync = o.onChunk;
      o.onChunk = async (i, d) => {
        await sync(i, d);
        await sleep(150);
      };
      await assert.rejects(fetchChunks(o), failed(/^no data for 100 ms$/, 2 * CHUNK));
      assertDelivered(o.got, { first: 0, last: 1 });
    } finally {
      await peer.close();
    }
  });

  it("aborting while onChunk runs waits for it, then rejects with the chunks delivered", async () => {
    const peer = await httpPeer();
    const agent: DataPlaneAgent = keepAliveAgent();
    try {
      const ac = new AbortController();
      let running = false;
      const o = options(peer.port, { agent, signal: ac.signal });
      const sync = o.onChunk;
      o.onChunk = async (i, d) => {
        running = true;
        await sync(i, d);
        if (i === 3) ac.abort();
        await sleep(20);
        running = false;
      };
      await assert.rejects(fetchChunks(o), (e: unknown) => {
        assert.equal(running, false, "rejected while onChunk was running");
        return failed(/^aborted$/, 4 * CHUNK)(e);
      });
      assertDelivered(o.got, { first: 0, last: 3 });
      assert.equal(agent.idleCount, 0);
    } finally {
      agent.destroy();
      await peer.close();
    }
  });
});
