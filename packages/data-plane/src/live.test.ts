import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { Readable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  issueTicket,
  LiveChunkError,
  liveFrameHead,
  LiveVerifier,
  MAX_ATTESTATION_BYTES,
  MAX_LIVE_SEQ,
  sha256,
  signLiveAttestation,
  Signer,
  type ChunkRange,
  type LiveAttestation,
  type LiveDescriptorBody,
  type SignedLiveAttestation,
} from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import {
  fetchChunks,
  FetchError,
  fetchLiveChunks,
  keepAliveAgent,
  LiveWindow,
  startDataPlane,
  type ChunkSource,
  type LiveFetchOptions,
  type RunningDataPlane,
} from "./index.js";

// A live stream held from sequence number 2^32 - 2: chunks of the lengths their source cut them at.
const FIRST = 2 ** 32 - 2;
const chunks = [700, 4096, 1, 2500, 4096, 33].map((n) => randomBytes(n));
const LAST = FIRST + chunks.length - 1;
const tracker = Signer.generate();
const fetcher = Signer.generate();
let plane: RunningDataPlane;

/** Offsets of each held chunk in this peer's own numbering of the bytes it holds. */
const offsets: number[] = [];
for (let at = 0, i = 0; i < chunks.length; at += chunks[i]!.length, i++) offsets.push(at);
const all = Buffer.concat(chunks);

const source: ChunkSource = {
  layout: (id) =>
    id === "live-1"
      ? {
          kind: "live",
          name: "cam",
          span: (r) =>
            r.first >= FIRST && r.last <= LAST
              ? { start: offsets[r.first - FIRST]!, end: offsets[r.last - FIRST]! + chunks[r.last - FIRST]!.length }
              : undefined,
        }
      : undefined,
  holds: (_id, r) => r.first >= FIRST && r.last <= LAST,
  read: (_id, start, end) => Readable.from([all.subarray(start, end)]),
};

function fetch(range: ChunkRange, lengths: number[]) {
  const got: [number, Buffer][] = [];
  const ticket = issueTicket(
    {
      streamId: "live-1",
      range,
      fetcherId: "viewer",
      serverId: "seeder",
      expiresMs: Date.now() + 60_000,
      fetcherKey: fetcher.publicKey.ed25519,
    },
    tracker,
  );
  return fetchChunks({
    host: "127.0.0.1",
    port: plane.port,
    streamId: "live-1",
    range,
    ticket,
    sessionKey: fetcher,
    layout: { lengths },
    onChunk: (i, d) => void got.push([i, Buffer.from(d)]),
  }).then(() => got);
}

describe("live chunks on the data plane", () => {
  before(async () => {
    plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source,
      identity: () => ({ peerId: "seeder", ticketKeys: [tracker.publicKey] }),
      log: createLogger("test", { level: "silent" }),
    });
  });
  after(() => plane.close());

  it("a range of chunks of their own lengths arrives whole, one chunk at a time, across 2^32", async () => {
    const got = await fetch(
      { first: FIRST, last: LAST },
      chunks.map((c) => c.length),
    );
    assert.deepEqual(
      got.map(([i]) => i),
      chunks.map((_, k) => FIRST + k),
    );
    for (const [i, d] of got) assert.ok(d.equals(chunks[i - FIRST]!), `chunk ${i}`);
  });

  it("a chunk not held answers 416; lengths that do not fit the range are refused before any request", async () => {
    await assert.rejects(
      fetch({ first: LAST, last: LAST + 1 }, [33, 10]),
      (e) => e instanceof FetchError && e.status === 416,
    );
    await assert.rejects(fetch({ first: FIRST, last: FIRST + 1 }, [700]), /does not fit its 1 chunk lengths/);
    await assert.rejects(
      fetch({ first: FIRST + 1, last: FIRST + 2 }, [4096, 2]),
      (e) => e instanceof FetchError && /content-length/.test(e.message),
      "a peer whose chunk lengths differ from the attested ones is caught",
    );
  });
});

// Attested live chunks: every frame carries the checksum service's signature over its chunk.
const attester = Signer.generate();
const MAX_CHUNK = 512 * 1024;

/** A live stream held with attestations: its chunks, their signed attestations and frame heads. */
interface Held {
  first: number;
  chunks: Buffer[];
  signed: SignedLiveAttestation[];
  heads: Buffer[];
  descriptor: LiveDescriptorBody;
}

function held(streamId: string, first: number, lengths: number[]): Held {
  const start = Date.now() - 1_000;
  const chunks = lengths.map((n) => randomBytes(n));
  const signed = chunks.map((data, k) =>
    signLiveAttestation(
      {
        streamId,
        seq: first + k,
        timestampMs: start + k,
        length: data.length,
        sha256: sha256(data),
        randomAccess: false,
      },
      attester,
    ),
  );
  const descriptor: LiveDescriptorBody = {
    streamId,
    name: streamId,
    maxChunkBytes: MAX_CHUNK,
    maxChunkMs: 250,
    bitrate: 2_000_000,
    windowChunks: 64,
    firstSeq: first,
    startMs: start,
    attestationKeyId: attester.keyId,
    version: 1,
  };
  return { first, chunks, signed, heads: signed.map(liveFrameHead), descriptor };
}

/** Frames of `range` as a seeder keeps them: each chunk's head beside its bytes; undefined when not all held. */
function framesOf(h: Held, range: ChunkRange): Buffer[] | undefined {
  if (range.first < h.first || range.last >= h.first + h.chunks.length) return undefined;
  const frames: Buffer[] = [];
  for (let seq = range.first; seq <= range.last; seq++) frames.push(h.heads[seq - h.first]!, h.chunks[seq - h.first]!);
  return frames;
}

/** The last sequence number a live stream may reach (2^53 - 2). */
const TOP = MAX_LIVE_SEQ;
const streams = new Map<string, Held>([
  ["cam-32", held("cam-32", 2 ** 32 - 3, [700, 4096, 1, 2500, 65536, 33])],
  ["cam-top", held("cam-top", TOP - 4, [1000, 3, 65536, 12, 999])],
  // chunks big enough to be read in place (straight into the chunk buffer), and small ones between
  ["cam-big", held("cam-big", 5, [300_000, 70_000, 1, 524_288, 200_000, 65_535, 131_072])],
]);

/** Stream "hostile", chunks 10-12: a test sets what the peer makes of the frames it holds. */
let hostile: (frames: Buffer[]) => Buffer[] = (f) => f;
streams.set("hostile", held("hostile", 10, [700, 4096, 300]));

/** Stream "late", chunks 20-22, held in a seeder's LiveWindow: a test attaches their attestations when it likes. */
streams.set("late", held("late", 20, [500, 800, 1200]));
const lateWindow = new LiveWindow(8);
{
  const h = streams.get("late")!;
  h.chunks.forEach((data, k) => lateWindow.push(h.first + k, data, k));
}

const FILE_SIZE = 10_000;
const attestedSource: ChunkSource = {
  layout: (id) => {
    if (id === "file-1") return { size: FILE_SIZE, chunkSize: 4096, chunkCount: 3, name: "f" };
    if (id === "late") {
      return {
        kind: "live",
        name: id,
        span: (r) => lateWindow.span(r),
        attested: (r) => lateWindow.attested(r),
        whenAttested: (r, ms) => lateWindow.whenAttested(r, ms),
      };
    }
    if (id === "no-attestations") return { kind: "live", name: "raw", span: () => ({ start: 0, end: 1 }) };
    const h = streams.get(id);
    if (!h) return undefined;
    const all = Buffer.concat(h.chunks);
    return {
      kind: "live",
      name: id,
      span: (r) => {
        if (r.first < h.first || r.last >= h.first + h.chunks.length) return undefined;
        let start = 0;
        for (let k = 0; k < r.first - h.first; k++) start += h.chunks[k]!.length;
        let end = start;
        for (let seq = r.first; seq <= r.last; seq++) end += h.chunks[seq - h.first]!.length;
        return end <= all.length ? { start, end } : undefined;
      },
      attested: (r) => {
        const frames = framesOf(h, r);
        return frames && id === "hostile" ? hostile(frames) : frames;
      },
    };
  },
  holds: () => true,
  read: (id, start, end) => {
    const h = streams.get(id);
    return Readable.from([h ? Buffer.concat(h.chunks).subarray(start, end) : Buffer.alloc(end - start, 1)]);
  },
};

function ticketFor(streamId: string, range: ChunkRange) {
  return issueTicket(
    {
      streamId,
      range,
      fetcherId: "viewer",
      serverId: "seeder",
      expiresMs: Date.now() + 60_000,
      fetcherKey: fetcher.publicKey.ed25519,
    },
    tracker,
  );
}

interface LiveRun {
  /** Chunks delivered, each with the attestation it came with. */
  got: { seq: number; data: Buffer; signed: SignedLiveAttestation }[];
  done: Promise<{ bytes: number }>;
}

/** Fetches live chunks as a viewer does: each attestation opened by a real LiveVerifier, each chunk accepted by it. */
function fetchLive(port: number, streamId: string, range: ChunkRange, over: Partial<LiveFetchOptions> = {}): LiveRun {
  const h = streams.get(streamId);
  const verifier = h ? new LiveVerifier(h.descriptor, { trusted: [attester.publicKey] }) : undefined;
  const got: LiveRun["got"] = [];
  let att: LiveAttestation | undefined;
  const done = fetchLiveChunks({
    host: "127.0.0.1",
    port,
    streamId,
    range,
    ticket: ticketFor(streamId, range),
    sessionKey: fetcher,
    maxChunkBytes: MAX_CHUNK,
    timeoutMs: 5_000,
    onAttestation: (seq, signed) => {
      att = verifier!.open(signed, seq);
      return att.length;
    },
    onChunk: (seq, data) => {
      verifier!.accept(att!, data);
      got.push({ seq, data: Buffer.from(data), signed: att!.signed });
    },
    ...over,
  });
  return { got, done };
}

function assertWhole(run: LiveRun, streamId: string, range: ChunkRange): void {
  const h = streams.get(streamId)!;
  assert.deepEqual(
    run.got.map((c) => c.seq),
    Array.from({ length: range.last - range.first + 1 }, (_, k) => range.first + k),
  );
  for (const { seq, data, signed } of run.got) {
    assert.ok(data.equals(h.chunks[seq - h.first]!), `chunk ${seq} differs`);
    assert.deepEqual(signed, h.signed[seq - h.first], `attestation of chunk ${seq} differs`);
  }
}

/** Payload bytes of `range`. */
function lengthOf(streamId: string, range: ChunkRange): number {
  const h = streams.get(streamId)!;
  return h.chunks.slice(range.first - h.first, range.last - h.first + 1).reduce((a, c) => a + c.length, 0);
}

const failedWith =
  (re: RegExp, bytes = 0) =>
  (e: unknown) =>
    e instanceof FetchError && e.kind === "failed" && e.status === 200 && re.test(e.message) && e.bytes === bytes;

/** A TCP relay in front of the data plane that counts the connections made through it. */
async function relay(to: number): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((a) => {
    connections++;
    const b = connect(to, "127.0.0.1");
    for (const s of [a, b]) {
      sockets.add(s);
      s.on("error", () => {});
      s.once("close", () => (a.destroy(), b.destroy()));
    }
    a.pipe(b).pipe(a);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("attested live chunks on the data plane (/live/)", () => {
  let live: RunningDataPlane;
  before(async () => {
    live = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source: attestedSource,
      identity: () => ({ peerId: "seeder", ticketKeys: [tracker.publicKey] }),
      log: createLogger("test", { level: "silent" }),
    });
  });
  after(() => live.close());
  beforeEach(() => {
    hostile = (f) => f;
  });

  it("variable-length chunks across 2^32 arrive whole, each with its attestation, in order", async () => {
    const range = { first: 2 ** 32 - 3, last: 2 ** 32 + 2 };
    const run = fetchLive(live.port, "cam-32", range);
    assert.deepEqual(await run.done, { bytes: lengthOf("cam-32", range) });
    assertWhole(run, "cam-32", range);
  });

  it("big chunks, read in place, arrive whole, each with its attestation, in order", async () => {
    const range = { first: 5, last: 11 };
    const run = fetchLive(live.port, "cam-big", range);
    assert.deepEqual(await run.done, { bytes: lengthOf("cam-big", range) });
    assertWhole(run, "cam-big", range);
  });

  it("chunks up to the last sequence number, 2^53 - 2, arrive whole, each with its attestation, in order", async () => {
    for (const range of [
      { first: TOP - 4, last: TOP },
      { first: TOP, last: TOP },
    ]) {
      const run = fetchLive(live.port, "cam-top", range);
      assert.deepEqual(await run.done, { bytes: lengthOf("cam-top", range) });
      assertWhole(run, "cam-top", range);
    }
  });

  it("a frame whose bytes differ from its attestation is caught by the caller's verifier", async () => {
    hostile = (frames) => {
      const flipped = Buffer.from(frames[3]!); // chunk 11's bytes
      flipped[100]! ^= 1;
      return frames.map((f, i) => (i === 3 ? flipped : f));
    };
    const run = fetchLive(live.port, "hostile", { first: 10, last: 12 });
    await assert.rejects(
      run.done,
      (e) => e instanceof LiveChunkError && e.reason === "bad-data" && /chunk 11/.test(e.message),
    );
    assert.deepEqual(
      run.got.map((c) => c.seq),
      [10],
    );
  });

  it("an attestation the caller refuses stops the transfer with the caller's error", async () => {
    const refused = new Error("not this one");
    const cam = streams.get("cam-32")!;
    const delivered: number[] = [];
    const agent = keepAliveAgent();
    try {
      const { done } = fetchLive(
        live.port,
        "cam-32",
        { first: cam.first, last: cam.first + 5 },
        {
          agent,
          onAttestation: (seq) => {
            if (seq === cam.first + 2) throw refused;
            return cam.chunks[seq - cam.first]!.length;
          },
          onChunk: (seq) => void delivered.push(seq),
        },
      );
      await assert.rejects(done, (e) => e === refused);
      assert.deepEqual(delivered, [cam.first, cam.first + 1]);
      assert.equal(agent.idleCount, 0, "a connection left mid-body is not reused");
    } finally {
      agent.destroy();
    }
  });

  it("bad frames fail with a FetchError saying what is wrong", async () => {
    const range = { first: 10, last: 12 };
    const cases: [string, (f: Buffer[]) => Buffer[], (e: unknown) => boolean, Partial<LiveFetchOptions>?][] = [
      [
        "a chunk over maxChunkBytes",
        (f) => f,
        failedWith(/chunk 11 announces 4096 bytes, expected 1 to maxChunkBytes 2000/, 700),
        { maxChunkBytes: 2000 },
      ],
      [
        "a body cut inside the last frame",
        (f) => [...f.slice(0, 5), f[5]!.subarray(0, 299)],
        failedWith(/short body: it ends inside the frame of chunk 12 of 10-12/, 700 + 4096),
      ],
      [
        "a body ending after two frames of three",
        (f) => f.slice(0, 4),
        failedWith(/short body: it ends inside the frame of chunk 12/, 700 + 4096),
      ],
      [
        "bytes after the last frame",
        (f) => [...f, Buffer.from("!!")],
        failedWith(/content-length for 2 bytes after the last frame/, 700 + 4096 + 300),
      ],
      [
        "an attestation over MAX_ATTESTATION_BYTES",
        (f) => {
          const long = Buffer.alloc(2 + MAX_ATTESTATION_BYTES + 1);
          long.writeUInt16BE(MAX_ATTESTATION_BYTES + 1, 0);
          return [f[0]!, f[1]!, long, f[3]!, f[4]!, f[5]!];
        },
        failedWith(/frame of chunk 11 announces an attestation of 513 bytes, expected 1 to 512/, 700),
      ],
      [
        "an empty attestation",
        (f) => [Buffer.from([0, 0]), ...f],
        failedWith(/frame of chunk 10 announces an attestation of 0 bytes/),
      ],
      [
        "more bytes than the frames may take",
        (f) => [...f, Buffer.alloc(3 * (2 + MAX_ATTESTATION_BYTES + 5000))],
        failedWith(/content-length \d+, over the 16542 bytes 3 live frames may take/),
        { maxChunkBytes: 5000 },
      ],
    ];
    for (const [what, serve, check, over] of cases) {
      hostile = serve;
      const run = fetchLive(live.port, "hostile", range, over);
      await assert.rejects(run.done, check, what);
    }
  });

  it("an attestation that does not decode is refused as one that does not verify", async () => {
    hostile = (f) => [Buffer.from([0, 3, 0xff, 0xff, 0xff]), ...f];
    const run = fetchLive(live.port, "hostile", { first: 10, last: 12 });
    await assert.rejects(
      run.done,
      (e) =>
        e instanceof LiveChunkError &&
        e.reason === "bad-signature" &&
        /attestation of chunk 10 does not decode/.test(e.message),
    );
    assert.equal(run.got.length, 0);
  });

  it("a peer closing mid-frame fails the transfer after the whole chunks before", async () => {
    const h = streams.get("hostile")!;
    const body = Buffer.concat(framesOf(h, { first: 10, last: 12 })!);
    const cut = h.heads[0]!.length + 700 + 40; // inside chunk 11's frame
    const peer = createNetServer((s) => {
      s.on("error", () => {});
      s.once("data", () => {
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
        s.end(body.subarray(0, cut));
      });
    });
    await new Promise<void>((r) => peer.listen(0, "127.0.0.1", r));
    try {
      const run = fetchLive((peer.address() as AddressInfo).port, "hostile", { first: 10, last: 12 });
      await assert.rejects(
        run.done,
        (e) => e instanceof FetchError && /short body: got chunks up to 10 of 10-12/.test(e.message) && e.bytes === 700,
      );
    } finally {
      await new Promise<void>((r) => peer.close(() => r()));
    }
  });

  it("a range not held with attestations answers 416; /live/ of a file stream answers 404", async () => {
    const notHeld = fetchLive(live.port, "cam-32", { first: 2 ** 32 + 2, last: 2 ** 32 + 3 });
    await assert.rejects(notHeld.done, (e) => e instanceof FetchError && e.kind === "refused" && e.status === 416);
    const bare = fetchLive(live.port, "no-attestations", { first: 0, last: 0 });
    await assert.rejects(bare.done, (e) => e instanceof FetchError && e.status === 416);
    const file = fetchLive(live.port, "file-1", { first: 0, last: 0 });
    await assert.rejects(
      file.done,
      (e) => e instanceof FetchError && e.kind === "refused" && e.status === 404 && /not a live stream/.test(e.message),
    );
  });

  it("chunks held but not attested yet are answered once their attestations come, not refused", async () => {
    const h = streams.get("late")!;
    const range = { first: 20, last: 22 };
    const run = fetchLive(live.port, "late", range);
    // the request is in before the attestations: attach them one by one, a little later
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(run.got.length, 0, "nothing is sent before every chunk of the range is attested");
    for (let k = 0; k < 3; k++) lateWindow.attest(h.first + k, h.heads[k]!);
    await run.done;
    assertWhole(run, "late", range);
  });

  it("chunks whose attestations never come are refused (416) after the wait", async () => {
    lateWindow.push(23, randomBytes(100), 3);
    const notYet = fetchLive(live.port, "late", { first: 22, last: 23 });
    await assert.rejects(notYet.done, (e) => e instanceof FetchError && e.kind === "refused" && e.status === 416);
  });

  it("a live fetch and then a raw fetch of the same stream reuse one keep-alive connection", async () => {
    const via = await relay(live.port);
    const agent = keepAliveAgent();
    try {
      const range = { first: 2 ** 32 - 3, last: 2 ** 32 };
      const run = fetchLive(via.port, "cam-32", range, { agent });
      await run.done;
      assertWhole(run, "cam-32", range);
      const got: Buffer[] = [];
      const raw = await fetchChunks({
        host: "127.0.0.1",
        port: via.port,
        streamId: "cam-32",
        range,
        ticket: ticketFor("cam-32", range),
        sessionKey: fetcher,
        layout: {
          lengths: streams
            .get("cam-32")!
            .chunks.slice(0, 4)
            .map((c) => c.length),
        },
        onChunk: (_i, d) => void got.push(Buffer.from(d)),
        agent,
      });
      assert.equal(raw.bytes, lengthOf("cam-32", range));
      assert.ok(Buffer.concat(got).equals(Buffer.concat(streams.get("cam-32")!.chunks.slice(0, 4))));
      assert.equal(via.connections(), 1);
      assert.equal(agent.idleCount, 1);

      hostile = (f) => [...f, Buffer.from("!")];
      await assert.rejects(fetchLive(via.port, "hostile", { first: 10, last: 12 }, { agent }).done, FetchError);
      assert.equal(agent.idleCount, 0, "a connection that carried a bad body is not kept");
      await fetchLive(via.port, "cam-32", range, { agent }).done;
      assert.equal(via.connections(), 2);
    } finally {
      agent.destroy();
      await via.close();
    }
  });
});
