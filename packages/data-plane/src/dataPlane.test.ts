import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { connect, createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  chunkCount,
  chunksPath,
  encodeTicket,
  fetchProof,
  issueTicket,
  PROOF_HEADER,
  Signer,
  TICKET_HEADER,
  type ChunkRange,
  type SignedTicket,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import {
  fetchChunks,
  FetchError,
  FileRangeReadable,
  keepAliveAgent,
  startDataPlane,
  type ChunkSource,
  type DataPlaneAgent,
  type RunningDataPlane,
} from "./index.js";

const log = createLogger("test", { level: "silent" });
const CHUNK = 4096;
const SIZE = CHUNK * 10 + 123; // 11 chunks, the last one short
const COUNT = chunkCount(SIZE, CHUNK);
const FULL = "fullstream";
const PARTIAL = "partialstream"; // holds chunks 0-3 only
const SERVER_ID = "peer-A";

const tracker = Signer.generate();
const impostor = Signer.generate();
/** Session keys of the fetcher the tickets name, and of another peer holding a copy of its ticket. */
const fetcher = Signer.generate();
const thief = Signer.generate();

let dir: string;
let file: Buffer;
let plane: RunningDataPlane;
let registry: Registry;
let agent: DataPlaneAgent;

function source(path: string): ChunkSource {
  const layout = { size: SIZE, chunkSize: CHUNK, chunkCount: COUNT, name: "movie.bin" };
  return {
    layout: (id) => (id === FULL || id === PARTIAL ? layout : undefined),
    holds: (id, r) => (id === FULL ? r.last < COUNT : id === PARTIAL ? r.last <= 3 : false),
    // as a seeder or a viewer serves: a FileRangeReadable, sent by sendTo
    read: (_id, start, end) =>
      new FileRangeReadable(async () => ({ handle: await open(path), close: true }), start, end, "movie.bin"),
  };
}

function ticket(
  over: Partial<{
    streamId: string;
    range: ChunkRange;
    serverId: string;
    expiresMs: number;
    fetcherKey: Uint8Array;
  }> = {},
  signer = tracker,
): SignedTicket {
  return issueTicket(
    {
      streamId: over.streamId ?? FULL,
      range: over.range ?? { first: 0, last: COUNT - 1 },
      fetcherId: "peer-B",
      serverId: over.serverId ?? SERVER_ID,
      expiresMs: over.expiresMs ?? Date.now() + 60_000,
      fetcherKey: over.fetcherKey,
    },
    signer,
  );
}

/** Headers of a request for `range` with a ticket naming `fetcher`, signed by `by` (undefined: no proof). */
function bound(range: ChunkRange, by: Signer | undefined, ticketRange = range): Record<string, string> {
  const t = ticket({ range: ticketRange, fetcherKey: fetcher.publicKey.ed25519 });
  return { [TICKET_HEADER]: encodeTicket(t), ...(by ? { [PROOF_HEADER]: fetchProof(t, range, by) } : {}) };
}

function raw(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; body: Buffer; type: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: "127.0.0.1", port, path, headers, method, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (p: Buffer) => parts.push(p));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), type: String(res.headers["content-type"]) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const slice = (first: number, last: number) => file.subarray(first * CHUNK, Math.min((last + 1) * CHUNK, SIZE));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "dp-test-"));
  file = randomBytes(SIZE);
  await writeFile(join(dir, "movie.bin"), file);
  registry = new Registry();
  plane = await startDataPlane({
    host: "127.0.0.1",
    port: 0,
    source: source(join(dir, "movie.bin")),
    identity: () => ({ peerId: SERVER_ID, ticketKeys: [tracker.publicKey] }),
    log,
    registry,
  });
  agent = keepAliveAgent();
});

after(async () => {
  agent.destroy();
  await plane.close();
  await rm(dir, { recursive: true, force: true });
});

describe("data-plane server", () => {
  it("serves the whole stream byte-identical, with an exact content-length", async () => {
    const r = await raw(plane.port, chunksPath(FULL, { first: 0, last: COUNT - 1 }), {
      [TICKET_HEADER]: encodeTicket(ticket()),
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, SIZE);
    assert.equal(sha(r.body), sha(file));
  });

  it("serves a middle range and a range inside the ticket", async () => {
    const r = await raw(plane.port, chunksPath(FULL, { first: 2, last: 4 }), {
      [TICKET_HEADER]: encodeTicket(ticket({ range: { first: 1, last: 6 } })),
    });
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(slice(2, 4)));
  });

  it("serves a ticket naming a fetcher key to that fetcher's proof", async () => {
    const range = { first: 1, last: 3 };
    const r = await raw(plane.port, chunksPath(FULL, range), bound(range, fetcher, { first: 0, last: 5 }));
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(slice(1, 3)));
  });

  const all = { first: 0, last: COUNT - 1 };
  const refusals: [string, () => Record<string, string>, ChunkRange?, RegExp?][] = [
    ["a fetcher's ticket without its proof", () => bound(all, undefined), all, /request carries no fetcher proof/],
    ["another peer's copy of a fetcher's ticket", () => bound(all, thief), all, /ticket is for another fetcher/],
    [
      "a fetcher's proof for another range of its ticket",
      () => {
        const t = ticket({ fetcherKey: fetcher.publicKey.ed25519 });
        return { [TICKET_HEADER]: encodeTicket(t), [PROOF_HEADER]: fetchProof(t, { first: 0, last: 1 }, fetcher) };
      },
      all,
      /ticket is for another fetcher/,
    ],
    ["no ticket", () => ({})],
    ["a malformed ticket", () => ({ [TICKET_HEADER]: "not a ticket!" })],
    ["a ticket that does not decode", () => ({ [TICKET_HEADER]: "AAAA" })],
    ["a forged ticket (signed by another key)", () => ({ [TICKET_HEADER]: encodeTicket(ticket({}, impostor)) })],
    ["an expired ticket", () => ({ [TICKET_HEADER]: encodeTicket(ticket({ expiresMs: Date.now() - 1 })) })],
    ["a ticket for another server", () => ({ [TICKET_HEADER]: encodeTicket(ticket({ serverId: "peer-Z" })) })],
    ["a ticket for another stream", () => ({ [TICKET_HEADER]: encodeTicket(ticket({ streamId: PARTIAL })) })],
    [
      "a range outside the ticket",
      () => ({ [TICKET_HEADER]: encodeTicket(ticket({ range: { first: 0, last: 2 } })) }),
      { first: 2, last: 3 },
    ],
  ];
  for (const [what, headers, range, text] of refusals) {
    it(`answers 403 and no file bytes for ${what}`, async () => {
      const r = await raw(plane.port, chunksPath(FULL, range ?? { first: 0, last: COUNT - 1 }), headers());
      assert.equal(r.status, 403);
      if (text) assert.match(r.body.toString(), text);
      assert.match(r.type, /^text\/plain/);
      assert.ok(r.body.length < 100, `body of ${r.body.length} bytes`);
      assert.ok(!file.includes(r.body.subarray(0, 8)), "body contains file bytes");
    });
  }

  it("answers 404 for an unknown stream with a valid ticket", async () => {
    const r = await raw(plane.port, chunksPath("nosuchstream", { first: 0, last: 0 }), {
      [TICKET_HEADER]: encodeTicket(ticket({ streamId: "nosuchstream", range: { first: 0, last: 0 } })),
    });
    assert.equal(r.status, 404);
  });

  it("answers 416 for a range not held, or past the end of the stream", async () => {
    const notHeld = await raw(plane.port, chunksPath(PARTIAL, { first: 3, last: 4 }), {
      [TICKET_HEADER]: encodeTicket(ticket({ streamId: PARTIAL })),
    });
    assert.equal(notHeld.status, 416);
    const pastEnd = await raw(plane.port, chunksPath(FULL, { first: COUNT - 1, last: COUNT }), {
      [TICKET_HEADER]: encodeTicket(ticket({ range: { first: 0, last: COUNT + 5 } })),
    });
    assert.equal(pastEnd.status, 416);
    assert.ok(pastEnd.body.length < 100);
  });

  it("answers 400 or 404 for `..` and garbage paths, 405 for other methods", async () => {
    const h = { [TICKET_HEADER]: encodeTicket(ticket()) };
    for (const path of [
      "/pdtp/v1/streams/../chunks/0-1",
      "/pdtp/v1/streams/fullstream/chunks/../../../etc/passwd",
      "/pdtp/v1/streams/fullstream/chunks/1-0",
      "/pdtp/v1/streams/fullstream/chunks/a-b",
      "/pdtp/v1/streams/%2e%2e%2fetc/chunks/0-1",
      "/pdtp/v1/streams/fullstream/chunks/0-99999999999999999999",
      "/../../etc/passwd",
      "/\x7f",
    ]) {
      const r = await raw(plane.port, encodeURI(path), h);
      assert.ok(r.status === 400 || r.status === 404, `${path} -> ${r.status}`);
      assert.ok(r.body.length < 100);
    }
    const post = await raw(plane.port, chunksPath(FULL, { first: 0, last: 0 }), h, "POST");
    assert.equal(post.status, 405);
    assert.equal((await raw(plane.port, "/healthz")).status, 200);
  });

  it("survives a request that is not HTTP at all", async () => {
    await new Promise<void>((resolve) => {
      const s = connect(plane.port, "127.0.0.1");
      s.on("error", () => resolve());
      s.on("close", () => resolve());
      s.resume();
      s.end("\x00\x01garbage\r\n\r\n");
    });
  });

  it("refuses a request that is not well-formed HTTP, CONNECT, and an Expect it cannot meet, with a text error", async () => {
    const answer = (bytes: string) =>
      new Promise<string>((resolve) => {
        const s = connect(plane.port, "127.0.0.1");
        let got = "";
        s.setEncoding("latin1").on("data", (d: string) => (got += d));
        s.on("error", () => resolve(got));
        s.on("close", () => resolve(got));
        s.end(bytes);
      });
    const bad = [
      ["\x00GET / HTTP/1.1\r\n\r\n", 400],
      ["| /pdtp/v1/streams/x/chunks/0-0 HTTP/1.1\r\nhost: x\r\n\r\n", 400],
      ["GET  HTTP/1.1\r\nhost: x\r\n\r\n", 400],
      [`GET / HTTP/1.1\r\nhost: x\r\nx: ${"v".repeat(20_000)}\r\n\r\n`, 431],
    ] as const;
    for (const [req, status] of bad) {
      const res = await answer(req);
      assert.match(res, new RegExp(`^HTTP/1\\.1 ${status} `), JSON.stringify(req.slice(0, 40)));
      assert.match(res, /\r\ncontent-type: text\/plain/i);
      assert.match(res.split("\r\n\r\n")[1] ?? "", /[a-z]{3}/, `a reason in the body of ${res.slice(0, 200)}`);
    }
    // no Host header (HTTP/1.1 wants one; the data plane has no use for it): answered as any request
    const noHost = await answer(`GET ${chunksPath(FULL, { first: 0, last: 0 })} HTTP/1.1\r\nconnection: close\r\n\r\n`);
    assert.match(noHost, /^HTTP\/1\.1 403 [^]*\r\n\r\nmissing ticket/);
    const tunnel = await answer(`CONNECT 127.0.0.1:1 HTTP/1.1\r\nhost: x\r\n\r\n`);
    assert.match(tunnel, /^HTTP\/1\.1 405 [^]*content-type: text\/plain[^]*\r\n\r\nmethod CONNECT not allowed/i);
    const expect = await answer(
      `GET ${chunksPath(FULL, { first: 0, last: 0 })} HTTP/1.1\r\nhost: x\r\nexpect: x\r\nconnection: close\r\n\r\n`,
    );
    assert.match(expect, /^HTTP\/1\.1 417 /);
    assert.match(expect, /\r\ncontent-type: text\/plain/i);
    assert.match(expect, /expect/i);
  });

  it("still serves a good request after all of those, over keep-alive", async () => {
    for (let i = 0; i < 2; i++) {
      const got: Buffer[] = [];
      await fetchChunks({
        host: "127.0.0.1",
        port: plane.port,
        streamId: FULL,
        range: { first: 0, last: COUNT - 1 },
        ticket: ticket(),
        layout: { size: SIZE, chunkSize: CHUNK },
        onChunk: (_i, d) => void got.push(Buffer.from(d)),
        agent,
      });
      assert.equal(sha(Buffer.concat(got)), sha(file));
    }
  });

  it("answers 503 before the tracker's Welcome", async () => {
    const early = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source: source(join(dir, "movie.bin")),
      identity: () => undefined,
      log,
    });
    try {
      const r = await raw(early.port, chunksPath(FULL, { first: 0, last: 0 }), {
        [TICKET_HEADER]: encodeTicket(ticket()),
      });
      assert.equal(r.status, 503);
    } finally {
      await early.close();
    }
  });

  it("counts sent bytes by stream and requests by code", async () => {
    const sent = await registry.getSingleMetric("pdtp_dataplane_sent_bytes_total")!.get();
    const full = sent.values.find((v) => v.labels.stream === FULL);
    assert.ok(full && full.value >= SIZE * 3, `sent ${full?.value}`);
    const reqs = await registry.getSingleMetric("pdtp_dataplane_requests_total")!.get();
    const code = (c: string) => reqs.values.find((v) => v.labels.code === c)?.value ?? 0;
    assert.ok(code("200") >= 3);
    assert.ok(code("403") >= refusals.length);
    assert.ok(code("416") >= 2);
  });
});

describe("fetchChunks", () => {
  it("delivers whole chunks in order, the last one short", async () => {
    const got: [number, Buffer][] = [];
    const r = await fetchChunks({
      host: "127.0.0.1",
      port: plane.port,
      streamId: FULL,
      range: { first: 7, last: COUNT - 1 },
      ticket: ticket(),
      layout: { size: SIZE, chunkSize: CHUNK },
      onChunk: (i, d) => void got.push([i, Buffer.from(d)]),
      agent,
    });
    assert.deepEqual(
      got.map(([i]) => i),
      [7, 8, 9, 10],
    );
    assert.deepEqual(
      got.map(([, d]) => d.length),
      [CHUNK, CHUNK, CHUNK, 123],
    );
    for (const [i, d] of got) assert.ok(d.equals(slice(i, i)), `chunk ${i}`);
    assert.equal(r.bytes, 3 * CHUNK + 123);
  });

  it("waits for a slow onChunk without timing out (backpressure)", async () => {
    const order: number[] = [];
    let busy = false;
    await fetchChunks({
      host: "127.0.0.1",
      port: plane.port,
      streamId: FULL,
      range: { first: 0, last: 3 },
      ticket: ticket(),
      layout: { size: SIZE, chunkSize: CHUNK },
      timeoutMs: 100,
      onChunk: async (i) => {
        assert.equal(busy, false, "onChunk called again before the previous one resolved");
        busy = true;
        await new Promise((r) => setTimeout(r, 150));
        order.push(i);
        busy = false;
      },
      agent,
    });
    assert.deepEqual(order, [0, 1, 2, 3]);
  });

  it("reports 403 and 416 as refused with the status", async () => {
    const base = {
      host: "127.0.0.1",
      port: plane.port,
      layout: { size: SIZE, chunkSize: CHUNK },
      onChunk: () => assert.fail("no chunk expected"),
      agent,
    };
    await assert.rejects(
      fetchChunks({ ...base, streamId: FULL, range: { first: 0, last: 1 }, ticket: ticket({}, impostor) }),
      (e: unknown) =>
        e instanceof FetchError && e.kind === "refused" && e.status === 403 && /signature/.test(e.message),
    );
    await assert.rejects(
      fetchChunks({ ...base, streamId: PARTIAL, range: { first: 4, last: 5 }, ticket: ticket({ streamId: PARTIAL }) }),
      (e: unknown) => e instanceof FetchError && e.kind === "refused" && e.status === 416,
    );
  });

  it("reports a peer killed mid-body as failed after delivering the whole chunks that arrived", async () => {
    const peer = createNetServer((socket) => {
      socket.once("data", () => {
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${4 * CHUNK}\r\n\r\n`);
        socket.write(slice(0, 2).subarray(0, 2 * CHUNK + 100), () => setTimeout(() => socket.destroy(), 50));
      });
    });
    await new Promise<void>((r) => peer.listen(0, "127.0.0.1", r));
    try {
      const got: number[] = [];
      await assert.rejects(
        fetchChunks({
          host: "127.0.0.1",
          port: (peer.address() as AddressInfo).port,
          streamId: FULL,
          range: { first: 0, last: 3 },
          ticket: ticket(),
          layout: { size: SIZE, chunkSize: CHUNK },
          onChunk: (i, d) => {
            assert.ok(d.equals(slice(i, i)));
            got.push(i);
          },
        }),
        (e: unknown) => e instanceof FetchError && e.kind === "failed" && e.bytes === 2 * CHUNK,
      );
      assert.deepEqual(got, [0, 1]);
    } finally {
      peer.close();
    }
  });

  it("fails on an unreachable peer, a silent peer and a 5xx", async () => {
    const silent = createNetServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const silentPort = (silent.address() as AddressInfo).port;
    silent.close(); // frees the port for the unreachable case below once the listener is gone
    const closedPort = silentPort;
    const hold = createNetServer(() => {});
    await new Promise<void>((r) => hold.listen(0, "127.0.0.1", r));
    const base = {
      host: "127.0.0.1",
      streamId: FULL,
      range: { first: 0, last: 0 },
      ticket: ticket(),
      layout: { size: SIZE, chunkSize: CHUNK },
      onChunk: () => {},
    };
    try {
      await assert.rejects(
        fetchChunks({ ...base, port: closedPort }),
        (e: unknown) => e instanceof FetchError && e.kind === "failed",
      );
      await assert.rejects(
        fetchChunks({ ...base, port: (hold.address() as AddressInfo).port, timeoutMs: 200 }),
        (e: unknown) => e instanceof FetchError && e.kind === "failed" && /200 ms/.test(e.message),
      );
      const early = await startDataPlane({
        host: "127.0.0.1",
        port: 0,
        source: source(join(dir, "movie.bin")),
        identity: () => undefined,
        log,
      });
      try {
        await assert.rejects(
          fetchChunks({ ...base, port: early.port }),
          (e: unknown) => e instanceof FetchError && e.kind === "failed" && e.status === 503,
        );
      } finally {
        await early.close();
      }
    } finally {
      hold.close();
    }
  });

  it("stops on abort, and the server keeps serving", async () => {
    const ac = new AbortController();
    const got: number[] = [];
    await assert.rejects(
      fetchChunks({
        host: "127.0.0.1",
        port: plane.port,
        streamId: FULL,
        range: { first: 0, last: COUNT - 1 },
        ticket: ticket(),
        layout: { size: SIZE, chunkSize: CHUNK },
        signal: ac.signal,
        onChunk: (i) => {
          got.push(i);
          if (i === 1) ac.abort();
        },
        agent,
      }),
      (e: unknown) => e instanceof FetchError && e.kind === "failed",
    );
    assert.ok(got.length >= 2 && got.length < COUNT);
    const r = await raw(plane.port, chunksPath(FULL, { first: 0, last: 0 }), {
      [TICKET_HEADER]: encodeTicket(ticket()),
    });
    assert.equal(r.status, 200);
  });

  it("rethrows onChunk's own error unchanged", async () => {
    const boom = new Error("bad chunk");
    await assert.rejects(
      fetchChunks({
        host: "127.0.0.1",
        port: plane.port,
        streamId: FULL,
        range: { first: 0, last: 3 },
        ticket: ticket(),
        layout: { size: SIZE, chunkSize: CHUNK },
        onChunk: (i) => {
          if (i === 1) throw boom;
        },
        agent,
      }),
      (e: unknown) => e === boom,
    );
  });
});
