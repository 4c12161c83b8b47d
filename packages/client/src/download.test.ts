import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
} from "@grpc/grpc-js";
import {
  chunkCount,
  chunkSpan,
  HashPieceBody,
  issueTicket,
  signHashPiece,
  signManifest,
  signPieces,
  Signer,
  StreamKind,
  streamIdFor,
  TrackerService,
  TransferOutcome,
  type ChunkRange,
  type Directive,
  type GetHashPiecesRequest,
  type GetHashPiecesResponse,
  type Join,
  type PeerMessage,
  type SignedHashPiece,
  type TrackerMessage,
  type TransferReport,
} from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { startDataPlane } from "@distribustream/data-plane";
import { download, DownloadError } from "./index.js";

/**
 * download() against a scripted tracker (real gRPC, real signed manifest and
 * tickets) and real data planes. The script plays situations the production
 * tracker rarely produces on demand: a restart mid-download, a peer serving
 * bad bytes, a manifest signed by the wrong key. End-to-end runs with the
 * real tracker live in test/e2e.
 */
const log = createLogger("test", { level: "silent" });
const chunkSize = 16 * 1024;
const size = 50 * chunkSize + 1234;
const count = chunkCount(size, chunkSize);
const name = "videos/clip.bin";
const version = 1;
const streamId = streamIdFor(name, size, version);
const content = randomBytes(size);
const network = Signer.generate();
const ticketKey = Signer.generate();

/** Chunks per hash piece: the 51 chunks make 7 pieces. */
const pieceChunks = 8;
const chunkHashes = Buffer.concat(
  Array.from({ length: count }, (_, i) => {
    const { start, end } = chunkSpan(i, size, chunkSize);
    return createHash("sha256").update(content.subarray(start, end)).digest();
  }),
);

/** The manifest header of version `v` (deterministic: Ed25519 signatures are, and createdMs is fixed). */
function manifestSignedBy(signer: Signer, v = version) {
  return signManifest(
    { streamId: streamIdFor(name, size, v), name, size, chunkSize, createdMs: 1, version: v, pieceChunks },
    signer,
  );
}

/** The signed hash pieces of version `v`'s manifest. */
function piecesSignedBy(signer: Signer, v = version) {
  return signPieces(manifestSignedBy(signer, v), chunkHashes, signer);
}
const descriptor = {
  streamId,
  name,
  kind: StreamKind.STREAM_KIND_ON_DEMAND,
  size,
  chunkSize,
  chunkCount: count,
  version,
  peers: 0,
  seeders: 1,
  manifestSha256: "",
  networkKeyId: "",
};

interface Pace {
  /** Nothing is sent before this settles. */
  gate?: Promise<void>;
  /** Pause before each chunk. */
  chunkDelayMs?: number;
}

/**
 * A data plane serving `content` (or a corrupted copy), counting bytes served
 * and, when paced, the responses in progress.
 */
async function servingPeer(peerId: string, corruptChunk?: number, pace?: Pace, id = streamId) {
  const bytes = corruptChunk === undefined ? content : Buffer.from(content);
  if (corruptChunk !== undefined) {
    const at = chunkSpan(corruptChunk, size, chunkSize).start;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at);
  }
  const served = { bytes: 0, active: 0, maxActive: 0, closed: 0 };
  const plane = await startDataPlane({
    host: "127.0.0.1",
    port: 0,
    log,
    identity: () => ({ peerId, ticketKeys: [ticketKey.publicKey] }),
    source: {
      layout: (want) => (want === id ? { size, chunkSize, chunkCount: count, name } : undefined),
      holds: () => true,
      read: (_id, start, end) => {
        served.bytes += end - start;
        const slice = bytes.subarray(start, end);
        if (!pace) return Readable.from([slice]);
        served.active++;
        served.maxActive = Math.max(served.maxActive, served.active);
        const r = new Readable({ read() {} });
        r.once("close", () => {
          served.active--;
          served.closed++;
        });
        void (async () => {
          await pace.gate;
          for (let off = 0; off < slice.length && !r.destroyed; off += chunkSize) {
            if (pace.chunkDelayMs) await new Promise((t) => setTimeout(t, pace.chunkDelayMs));
            r.push(slice.subarray(off, off + chunkSize));
          }
          if (!r.destroyed) r.push(null);
        })();
        return r;
      },
    },
  });
  return { plane, peerId, served };
}
type Peer = Awaited<ReturnType<typeof servingPeer>>;

let nextTransfer = 1;
function directive(
  peer: Peer,
  fetcherId: string,
  range: ChunkRange,
  transferId = nextTransfer++,
  id = streamId,
): Directive {
  return {
    transferId,
    streamId: id,
    range,
    source: { peerId: peer.peerId, host: "127.0.0.1", port: peer.plane.port, seeder: true },
    ticket: issueTicket(
      { streamId: id, range, fetcherId, serverId: peer.peerId, expiresMs: Date.now() + 60_000 },
      ticketKey,
    ),
  };
}

function ranges(first: number, last: number, per: number): ChunkRange[] {
  const out: ChunkRange[] = [];
  for (let f = first; f <= last; f += per) out.push({ first: f, last: Math.min(f + per - 1, last) });
  return out;
}

type Call = ServerDuplexStream<PeerMessage, TrackerMessage>;
interface SessionScript {
  /** Leave Hello unanswered (a hung tracker). */
  mute?: boolean;
  /** Called with the Join; the peer id is the one given in the Welcome. */
  onJoin(call: Call, join: Join, peerId: string, session: number): void;
  onReports?(call: Call, reports: TransferReport[], peerId: string, session: number): void;
  /** Called with a Leave. */
  onLeave?(peerId: string): void;
  /** The peer half-closed: the call is ended once this resolves (default at once). */
  beforeEnd?(): Promise<unknown> | undefined;
  /** Answers GetHashPieces; default: the network's pieces of the version the stream id names. */
  pieces?(req: GetHashPiecesRequest): SignedHashPiece[];
}

/** A gRPC Tracker that follows a script; records every message it receives. */
async function scriptedTracker(script: SessionScript) {
  const received: PeerMessage[][] = [];
  const pieceRequests: GetHashPiecesRequest[] = [];
  const server = new Server();
  server.addService(TrackerService, {
    session: (call: Call) => {
      const session = received.length;
      const msgs: PeerMessage[] = [];
      received.push(msgs);
      const peerId = `viewer-${session}`;
      call.on("data", (m: PeerMessage) => {
        msgs.push(m);
        if (m.body?.$case === "hello") {
          if (script.mute) return;
          call.write({
            body: {
              $case: "welcome",
              value: {
                peerId,
                observedHost: "127.0.0.1",
                ticketKeys: [ticketKey.publicKey],
                networkKeys: [network.publicKey],
              },
            },
          });
        } else if (m.body?.$case === "join") script.onJoin(call, m.body.value, peerId, session);
        else if (m.body?.$case === "reports") script.onReports?.(call, m.body.value.reports, peerId, session);
        else if (m.body?.$case === "leave") script.onLeave?.(peerId);
      });
      call.on("end", () => {
        void Promise.resolve(script.beforeEnd?.())
          .catch(() => {})
          .then(() => call.end());
      });
      call.on("error", () => {});
    },
    describeStream: (_c: unknown, cb: (e: { code: status }) => void) => cb({ code: status.UNIMPLEMENTED }),
    listStreams: (_c: unknown, cb: (e: { code: status }) => void) => cb({ code: status.UNIMPLEMENTED }),
    getHashPieces: (
      call: ServerUnaryCall<GetHashPiecesRequest, GetHashPiecesResponse>,
      cb: sendUnaryData<GetHashPiecesResponse>,
    ) => {
      const r = call.request;
      pieceRequests.push(r);
      const all =
        script.pieces?.(r) ??
        piecesSignedBy(network, r.streamId === streamIdFor(name, size, 2) ? 2 : version).slice(r.firstPiece);
      cb(null, { pieces: all.slice(0, r.count) });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const all = () => received.flat();
  const reports = () => all().flatMap((m) => (m.body?.$case === "reports" ? m.body.value.reports : []));
  return { port, received, pieceRequests, all, reports, close: () => server.forceShutdown() };
}

const dir = mkdtempSync(join(tmpdir(), "dsclient-dl-"));
let seeder: Peer;
before(async () => {
  seeder = await servingPeer("seeder-1");
});
after(async () => {
  await seeder.plane.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A script's onJoin: the whole stream from the seeder; `named` gets the peer id the Welcome gave. */
const wholeFromSeeder = (named: (peerId: string) => void) => (call: Call, _join: Join, peerId: string) => {
  named(peerId);
  call.write(joined());
  call.write({
    body: { $case: "directives", value: { directives: [directive(seeder, peerId, { first: 0, last: count - 1 })] } },
  });
};

/** The data port the client's Hello gave the scripted tracker. */
const dataPortOf = (tracker: Awaited<ReturnType<typeof scriptedTracker>>) => {
  const hello = tracker.all()[0]?.body;
  return hello?.$case === "hello" ? hello.value.dataPort : 0;
};

/** Another peer fetching `range` from the client's data plane, with a ticket naming the client as the server. */
async function fetchFromClient(port: number, serverId: string, range: ChunkRange): Promise<Buffer> {
  const { fetchChunks } = await import("@distribustream/data-plane");
  const got: Buffer[] = [];
  await fetchChunks({
    host: "127.0.0.1",
    port,
    streamId,
    range,
    ticket: issueTicket({ streamId, range, fetcherId: "other", serverId, expiresMs: Date.now() + 60_000 }, ticketKey),
    layout: { size, chunkSize },
    timeoutMs: 5_000,
    onChunk: (_i, d) => void got.push(Buffer.from(d)),
  });
  return Buffer.concat(got);
}

const joined = (signer = network): TrackerMessage => ({
  body: { $case: "joined", value: { descriptor, manifest: manifestSignedBy(signer) } },
});

describe("download() with a scripted tracker", () => {
  test("downloads to a file: identical bytes, one report per transfer, coalesced control traffic", async () => {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: {
            $case: "directives",
            value: { directives: ranges(0, count - 1, 8).map((r) => directive(seeder, peerId, r)) },
          },
        });
      },
    });
    const progress: number[] = [];
    const out = join(dir, "clip.bin");
    const r = await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      onProgress: (p) => progress.push(p.bytes),
    });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    assert.ok(!existsSync(out + ".dspart"));
    assert.deepEqual(
      { size: r.size, fromSeeders: r.bytesFromSeeders, fromPeers: r.bytesFromPeers, streamId: r.streamId },
      { size, fromSeeders: size, fromPeers: 0, streamId },
    );
    assert.equal(progress.at(-1), size);
    const msgs = tracker.all();
    const hello = msgs[0]?.body;
    assert.equal(hello?.$case, "hello");
    assert.ok(hello?.$case === "hello" && hello.value.dataPort > 0 && hello.value.agent === "dsclient/0.1.0");
    const join1 = msgs[1]?.body;
    assert.ok(join1?.$case === "join" && join1.value.name === name && join1.value.position === 0);
    const reports = tracker.reports();
    assert.equal(reports.length, 7, "one report per directive");
    for (const rep of reports) {
      assert.equal(rep.outcome, TransferOutcome.TRANSFER_OUTCOME_OK, JSON.stringify(rep));
      assert.equal(rep.verified.length, 1, JSON.stringify(rep));
    }
    assert.equal(
      reports.reduce((n, x) => n + x.bytes, 0),
      size,
    );
    assert.ok(msgs.length < count, `${msgs.length} control messages for ${count} chunks`);
    const positions = msgs.flatMap((m) => (m.body?.$case === "position" ? [m.body.value.nextChunk] : []));
    assert.equal(positions.at(-1), count, "final position is the end");
    assert.equal(msgs.at(-1)?.body?.$case, "leave");
  });

  test("a bad chunk is reported BAD_DATA, never written, and the rest comes from another source", async () => {
    const evil = await servingPeer("evil", 2);
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: { $case: "directives", value: { directives: [directive(evil, peerId, { first: 0, last: 5 })] } },
        });
      },
      onReports: (call, reports, peerId) => {
        if (reports.some((r) => r.outcome === TransferOutcome.TRANSFER_OUTCOME_BAD_DATA)) {
          call.write({
            body: {
              $case: "directives",
              value: { directives: [directive(seeder, peerId, { first: 2, last: count - 1 })] },
            },
          });
        }
      },
    });
    const out = join(dir, "bad.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    await evil.plane.close();
    assert.ok(readFileSync(out).equals(content));
    const bad = tracker.reports().find((r) => r.outcome === TransferOutcome.TRANSFER_OUTCOME_BAD_DATA);
    assert.ok(bad, "BAD_DATA reported");
    assert.deepEqual(bad.verified, [{ first: 0, last: 1 }], "the good prefix counts");
    assert.match(bad.detail, /chunk 2/);
  });

  test("after a tracker restart (UNAVAILABLE) the client re-joins with what it holds and fetches nothing twice", async () => {
    const peer = await servingPeer("seeder-2");
    const half = Math.floor(count / 2);
    let okReports = 0;
    const tracker = await scriptedTracker({
      onJoin: (call, join, peerId, session) => {
        call.write(joined());
        const want = session === 0 ? { first: 0, last: half - 1 } : { first: half, last: count - 1 };
        if (session === 1) assert.deepEqual(join.have, [{ first: 0, last: half - 1 }]);
        call.write({
          body: {
            $case: "directives",
            value: { directives: ranges(want.first, want.last, 6).map((r) => directive(peer, peerId, r)) },
          },
        });
      },
      onReports: (call, reports, _peerId, session) => {
        okReports += reports.length;
        if (session === 0 && okReports === Math.ceil(half / 6)) {
          setTimeout(() => call.emit("error", { code: status.UNAVAILABLE, details: "tracker restarting" }), 20);
        }
      },
    });
    const out = join(dir, "restart.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    await peer.plane.close();
    assert.ok(readFileSync(out).equals(content));
    assert.equal(tracker.received.length, 2, "two sessions");
    assert.equal(peer.served.bytes, size, "every byte fetched once");
  });

  test("a manifest signed by another key is exit 6 and leaves no file behind", async () => {
    const tracker = await scriptedTracker({ onJoin: (call) => call.write(joined(Signer.generate())) });
    const out = join(dir, "forged.bin");
    await assert.rejects(
      download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" }),
      (err: unknown) =>
        err instanceof DownloadError &&
        err.exitCode === 6 &&
        /manifest of "videos\/clip.bin" rejected: .*unknown key/.test(err.message),
    );
    tracker.close();
    assert.ok(!existsSync(out) && !existsSync(out + ".dspart"));
  });

  test("hash pieces are fetched as transfers need them, a few per call", async () => {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: {
            $case: "directives",
            value: { directives: ranges(0, count - 1, 16).map((r) => directive(seeder, peerId, r)) },
          },
        });
      },
    });
    const out = join(dir, "pieces.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    const asked = tracker.pieceRequests.map((r) => [r.firstPiece, r.count]);
    assert.ok(asked.length >= 1 && asked.length <= 7, `GetHashPieces calls: ${JSON.stringify(asked)}`);
    assert.ok(
      tracker.pieceRequests.every((r) => r.streamId === streamId && r.count <= 2),
      "a 16-chunk range needs at most 2 pieces of 8",
    );
  });

  /** Downloads with the pieces `pieces` answers; resolves the error it ends with. */
  async function refusal(pieces: (req: GetHashPiecesRequest) => SignedHashPiece[]) {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: {
            $case: "directives",
            value: { directives: [directive(seeder, peerId, { first: 0, last: count - 1 })] },
          },
        });
      },
      pieces,
    });
    const out = join(dir, "refused.bin");
    const err = await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
    }).then(
      () => assert.fail("the download should fail"),
      (e: unknown) => e,
    );
    tracker.close();
    assert.ok(!existsSync(out) && !existsSync(out + ".dspart"), "nothing unverified is left behind");
    assert.ok(err instanceof DownloadError);
    return err;
  }

  test("a hash piece that is forged, tampered, moved or of another version is exit 6 naming the piece", async () => {
    const good = piecesSignedBy(network);
    const forged = piecesSignedBy(Signer.generate());
    const other = piecesSignedBy(network, 2);
    const tampered = good.map((p, i) => {
      if (i !== 3) return p;
      const body = HashPieceBody.decode(p.body);
      body.chunkHashes[0]! ^= 1;
      return { ...p, body: Buffer.from(HashPieceBody.encode(body).finish()) };
    });
    /** Answers with `alt(i)` in place of piece i from piece 3 on. */
    const from3 =
      (alt: (i: number) => SignedHashPiece | undefined) =>
      (r: GetHashPiecesRequest): SignedHashPiece[] =>
        Array.from({ length: good.length - r.firstPiece }, (_, k) => r.firstPiece + k)
          .map((i) => (i >= 3 ? alt(i) : good[i]))
          .filter((p): p is SignedHashPiece => p !== undefined);
    const cases: [(r: GetHashPiecesRequest) => SignedHashPiece[], RegExp][] = [
      [from3((i) => forged[i]), /hash piece 3 signed by unknown key/],
      [from3((i) => tampered[i]), /hash piece 3 signature does not verify/],
      [from3((i) => good[i + 1]), /hash piece 3 is piece 4 of the stream/],
      [from3((i) => other[i]), /hash piece 3 belongs to stream .* version 2/],
      [
        from3((i) => ({
          ...signHashPiece(HashPieceBody.decode(good[i]!.body), Signer.generate()),
          keyId: network.keyId,
        })),
        /hash piece 3 signature does not verify/,
      ],
    ];
    for (const [pieces, why] of cases) {
      const err = await refusal(pieces);
      assert.equal(err.exitCode, 6, err.message);
      assert.match(err.message, /^hash piece of "videos\/clip.bin" rejected: /);
      assert.match(err.message, why);
    }
  });

  test("a piece not hashed yet only cancels the transfer; the tracker plans it again", async () => {
    let withheld = 0;
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: { $case: "directives", value: { directives: [directive(seeder, peerId, { first: 0, last: 20 })] } },
        });
      },
      onReports: (call, reports, peerId) => {
        const cancelled = reports.find((r) => r.outcome === TransferOutcome.TRANSFER_OUTCOME_CANCELLED);
        if (cancelled) {
          const first = cancelled.verified.at(-1)!.last + 1;
          call.write({
            body: {
              $case: "directives",
              value: { directives: [directive(seeder, peerId, { first, last: count - 1 })] },
            },
          });
        }
      },
      pieces: (r) => {
        // piece 2 (chunks 16-23) is "not hashed yet" the first two times it is asked for
        // (the prefetch of the directive, then its first chunk)
        const all = piecesSignedBy(network).slice(r.firstPiece);
        const stop = 2 - r.firstPiece;
        if (withheld < 2 && stop >= 0 && stop < r.count) {
          withheld++;
          return all.slice(0, stop);
        }
        return all;
      },
    });
    const out = join(dir, "unhashed.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    const cancelled = tracker.reports().find((r) => r.outcome === TransferOutcome.TRANSFER_OUTCOME_CANCELLED);
    assert.ok(cancelled, "the transfer that met the missing piece is CANCELLED, not FAILED (no strike)");
    assert.match(cancelled.detail, /not verifiable: hash piece 2 is not available yet/);
    assert.deepEqual(cancelled.verified, [{ first: 0, last: 15 }]);
  });

  test("an unknown name (NOT_FOUND) is exit 3 with the tracker address", async () => {
    const tracker = await scriptedTracker({
      onJoin: (call, join) => call.emit("error", { code: status.NOT_FOUND, details: `no stream ${join.name}` }),
    });
    await assert.rejects(
      download({
        url: `pdtp://127.0.0.1:${tracker.port}/nope.bin`,
        output: join(dir, "nope.bin"),
        log,
        listenHost: "127.0.0.1",
      }),
      (err: unknown) =>
        err instanceof DownloadError &&
        err.exitCode === 3 &&
        err.message === `no stream named "nope.bin" on 127.0.0.1:${tracker.port}`,
    );
    tracker.close();
  });

  test("no directives for the stall time is exit 7; the partial file is removed", async () => {
    const tracker = await scriptedTracker({ onJoin: (call) => call.write(joined()) });
    const out = join(dir, "stall.bin");
    await assert.rejects(
      download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: out,
        log,
        listenHost: "127.0.0.1",
        stallSeconds: 1,
      }),
      (err: unknown) => err instanceof DownloadError && err.exitCode === 7 && /stalled/.test(err.message),
    );
    tracker.close();
    assert.ok(!readdirSync(dir).includes("stall.bin.dspart"));
  });

  test("the client serves what it holds to other peers during --linger", async () => {
    let viewerId = "";
    const tracker = await scriptedTracker({ onJoin: wholeFromSeeder((id) => (viewerId = id)) });
    let dataPort = 0;
    const done = download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: join(dir, "linger.bin"),
      log,
      listenHost: "127.0.0.1",
      lingerSeconds: 2,
      onComplete: () => (dataPort = dataPortOf(tracker)),
    });
    const deadline = Date.now() + 10_000;
    while (!dataPort && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const bytes = await fetchFromClient(dataPort, viewerId, { first: 3, last: count - 1 });
    assert.ok(bytes.equals(content.subarray(3 * chunkSize)), "served after the rename to the final name");
    await done;
    tracker.close();
  });

  test(
    "a download shutting down still serves the fetches directed to it before its Leave reached the tracker",
    { timeout: 30_000 },
    async () => {
      let viewerId = "";
      let served: Promise<Buffer> | undefined;
      const range = { first: 5, last: 9 };
      const tracker = await scriptedTracker({
        onJoin: wholeFromSeeder((id) => (viewerId = id)),
        // Another peer, directed here before the tracker heard the Leave, fetches as it arrives.
        onLeave: () => {
          served = fetchFromClient(dataPortOf(tracker), viewerId, range);
        },
        // the client closes its data plane once its session has ended: hold the end until the fetch is over
        beforeEnd: () => served,
      });
      await download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: join(dir, "leaving.bin"),
        log,
        listenHost: "127.0.0.1",
      });
      assert.ok(served, "the client said Leave");
      const bytes = await served;
      assert.ok(
        bytes.equals(content.subarray(range.first * chunkSize, (range.last + 1) * chunkSize)),
        "served, not 503",
      );
      tracker.close();
    },
  );

  test("chunks of a seeder's range are told (Have) and served to other peers before the range ends; a peer's range only by its report", async () => {
    // 51 chunks at 20 ms each: the range takes about a second, the Have interval is 100 ms
    const slowSeeder = await servingPeer("seeder-slow", undefined, { chunkDelayMs: 20 });
    const slowPeer = await servingPeer("peer-slow", undefined, { chunkDelayMs: 20 });
    const hadEarly = async (from: Peer, fromSeeder: boolean) => {
      let viewerId = "";
      const tracker = await scriptedTracker({
        onJoin: (call, _join, peerId) => {
          viewerId = peerId;
          call.write(joined());
          const d = directive(from, peerId, { first: 0, last: count - 1 });
          call.write({
            body: {
              $case: "directives",
              value: { directives: [{ ...d, source: { ...d.source!, seeder: fromSeeder } }] },
            },
          });
        },
      });
      const haves = () =>
        tracker.all().flatMap((m) => (m.body?.$case === "have" ? m.body.value.ranges : ([] as ChunkRange[])));
      let servedEarly: Buffer | undefined;
      let told: ChunkRange | undefined;
      const done = download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: join(dir, `early-${fromSeeder}.bin`),
        log,
        listenHost: "127.0.0.1",
      });
      let finished = false;
      void done.then(() => (finished = true)).catch(() => (finished = true));
      while (!finished && !told) {
        if (tracker.reports().length === 0) told = haves()[0];
        await new Promise((r) => setTimeout(r, 10));
      }
      if (told) servedEarly = await fetchFromClient(dataPortOf(tracker), viewerId, told);
      const inFlightWhenServed = tracker.reports().length === 0;
      await done;
      tracker.close();
      return { told, servedEarly, inFlightWhenServed, reports: tracker.reports().length };
    };
    try {
      const seeded = await hadEarly(slowSeeder, true);
      assert.ok(seeded.told, "a Have before the range's report");
      assert.ok(seeded.told.last < count - 1, JSON.stringify(seeded.told));
      assert.ok(seeded.inFlightWhenServed, "served while the range was still coming");
      assert.ok(
        seeded.servedEarly?.equals(content.subarray(seeded.told.first * chunkSize, (seeded.told.last + 1) * chunkSize)),
        "the chunks told are served, identical",
      );
      assert.equal(seeded.reports, 1);
      const peered = await hadEarly(slowPeer, false);
      assert.equal(peered.told, undefined, "no Have for a peer's range: its report tells the tracker");
      assert.equal(peered.reports, 1);
    } finally {
      await slowSeeder.plane.close();
      await slowPeer.plane.close();
    }
  });

  test("a tracker that never answers Hello ends in a stall (exit 7) without hanging", async () => {
    const tracker = await scriptedTracker({ mute: true, onJoin: () => {} });
    const started = Date.now();
    await assert.rejects(
      download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: join(dir, "mute.bin"),
        log,
        stallSeconds: 1,
      }),
      (err: unknown) => err instanceof DownloadError && err.exitCode === 7 && /not joined/.test(err.message),
    );
    assert.ok(Date.now() - started < 5000);
    tracker.close();
  });

  test("dsclient -o - writes exactly the file's bytes to stdout; a reader closing early is exit 0", async () => {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        call.write({
          body: {
            $case: "directives",
            value: { directives: ranges(0, count - 1, 4).map((r) => directive(seeder, peerId, r)) },
          },
        });
      },
    });
    const cli = fileURLToPath(new URL("./cli.js", import.meta.url));
    const url = `pdtp://127.0.0.1:${tracker.port}/${name}`;
    const full = spawn(process.execPath, [cli, url, "-o", "-", "--listen-host", "127.0.0.1"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    full.stdout.on("data", (d: Buffer) => out.push(d));
    full.stderr.on("data", (d) => (stderr += d));
    try {
      assert.equal(await new Promise((r) => full.on("close", r)), 0, stderr);
      assert.ok(Buffer.concat(out).equals(content), "stdout is the file");
      assert.match(
        stderr,
        /^dsclient: [\d.]+ MiB to standard output in [\d.]+ s \([\d.]+ MiB\/s\), \d+% from peers\n$/,
        "without a terminal: one summary line",
      );

      // The reader takes 1000 bytes and closes the pipe.
      const early = spawn(process.execPath, [cli, url, "-o", "-", "--listen-host", "127.0.0.1"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err2 = "";
      let taken = 0;
      early.stderr.on("data", (d) => (err2 += d));
      early.stdout.on("data", (d: Buffer) => {
        taken += d.length;
        if (taken >= 1000) early.stdout.destroy();
      });
      assert.equal(await new Promise((r) => early.on("close", r)), 0, err2);
      assert.doesNotMatch(err2, /Error|\n\s+at /, "no error and no stack trace when the reader goes away");
      assert.ok(err2.split("\n").filter(Boolean).length <= 1, `at most its summary line: ${err2}`);
    } finally {
      tracker.close(); // also when an assertion failed: a server left open keeps the test process alive
    }
  });
});

const send = (call: Call, ...directives: Directive[]) =>
  call.write({ body: { $case: "directives", value: { directives } } });
const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("download() re-planning and recovery", () => {
  test("a directive for held chunks is CANCELLED with them as verified; a partly held one reports its held head", async () => {
    let held: Directive | undefined;
    let partly: Directive | undefined;
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        send(call, directive(seeder, peerId, { first: 0, last: 9 }));
      },
      onReports: (call, reports, peerId) => {
        if (!held) {
          held = directive(seeder, peerId, { first: 0, last: 4 });
          partly = directive(seeder, peerId, { first: 5, last: 14 });
          send(call, held, partly);
        } else if (reports.some((r) => r.transferId === partly!.transferId)) {
          send(call, directive(seeder, peerId, { first: 15, last: count - 1 }));
        }
      },
    });
    const out = join(dir, "held.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    const reports = tracker.reports();
    const ofHeld = reports.find((r) => r.transferId === held!.transferId);
    assert.equal(ofHeld?.outcome, TransferOutcome.TRANSFER_OUTCOME_CANCELLED);
    assert.deepEqual(ofHeld?.verified, [{ first: 0, last: 4 }], "held chunks credited");
    const ofPartly = reports.find((r) => r.transferId === partly!.transferId);
    assert.equal(ofPartly?.outcome, TransferOutcome.TRANSFER_OUTCOME_OK);
    assert.deepEqual(ofPartly?.verified, [{ first: 5, last: 14 }], "held head and fetched tail");
    assert.equal(ofPartly?.bytes, 5 * chunkSize, "only the missing chunks were fetched");
  });

  test("transfer ids restarting with a new session do not mix: the new transfer stays cancellable", async () => {
    let openA!: () => void;
    let openB!: () => void;
    const oldPeer = await servingPeer("old", undefined, { gate: new Promise<void>((r) => (openA = r)) });
    const newPeer = await servingPeer("new", undefined, { gate: new Promise<void>((r) => (openB = r)) });
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId, session) => {
        call.write(joined());
        if (session === 0) {
          send(call, directive(oldPeer, peerId, { first: 0, last: 0 }, 9001));
          setTimeout(() => call.emit("error", { code: status.UNAVAILABLE, details: "tracker restarting" }), 50);
          return;
        }
        // The restarted tracker numbers its transfers from the start again.
        send(call, directive(newPeer, peerId, { first: 1, last: count - 1 }, 9001));
        void (async () => {
          while (newPeer.served.active === 0) await sleepMs(5);
          openA(); // the old session's transfer 9001 ends now
          while (oldPeer.served.closed === 0) await sleepMs(5);
          await sleepMs(50);
          call.write({ body: { $case: "cancel", value: { transferIds: [9001] } } });
          const deadline = Date.now() + 3000;
          while (newPeer.served.closed === 0 && Date.now() < deadline) await sleepMs(5);
          // Only once the cancelled fetch is gone does the rest come from the seeder.
          if (newPeer.served.closed > 0) send(call, directive(seeder, peerId, { first: 1, last: count - 1 }, 9002));
        })();
      },
    });
    const out = join(dir, "ids.bin");
    try {
      await download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: out,
        log,
        listenHost: "127.0.0.1",
        stallSeconds: 4,
      });
    } finally {
      openB();
      tracker.close();
      await oldPeer.plane.close();
      await newPeer.plane.close();
    }
    assert.ok(readFileSync(out).equals(content));
    assert.equal(tracker.received.length, 2);
    const second = tracker.received[1]!.flatMap((m) => (m.body?.$case === "reports" ? m.body.value.reports : []));
    assert.ok(!second.some((r) => r.transferId === 9001), "a cancelled transfer is not reported");
  });

  test("after joining, INTERNAL, NOT_FOUND (stream not re-published yet) and CANCELLED are retried", async () => {
    const half = Math.floor(count / 2);
    const ends = [status.INTERNAL, status.NOT_FOUND, status.CANCELLED];
    const tracker = await scriptedTracker({
      onJoin: (call, join, peerId, session) => {
        if (session === 1 || session === 2) {
          call.emit("error", { code: ends[session], details: `no stream ${join.name}` });
          return;
        }
        call.write(joined());
        const want = session === 0 ? { first: 0, last: half - 1 } : { first: half, last: count - 1 };
        send(call, directive(seeder, peerId, want));
      },
      onReports: (call, _reports, _peerId, session) => {
        if (session === 0) call.emit("error", { code: ends[0], details: "store failed" });
      },
    });
    const out = join(dir, "retried.bin");
    await download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    assert.equal(tracker.received.length, 4, "four sessions");
  });

  test("a stream that comes back with another version after a reconnect is exit 7", async () => {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId, session) => {
        if (session === 0) {
          call.write(joined());
          send(call, directive(seeder, peerId, { first: 0, last: 3 }));
          return;
        }
        const v2 = { ...descriptor, streamId: streamIdFor(name, size, 2), version: 2 };
        call.write({ body: { $case: "joined", value: { descriptor: v2, manifest: manifestSignedBy(network, 2) } } });
      },
      onReports: (call, _r, _p, session) => {
        if (session === 0) call.emit("error", { code: status.UNAVAILABLE, details: "restarting" });
      },
    });
    const out = join(dir, "changed.bin");
    await assert.rejects(
      download({ url: `pdtp://127.0.0.1:${tracker.port}/${name}`, output: out, log, listenHost: "127.0.0.1" }),
      (err: unknown) =>
        err instanceof DownloadError && err.exitCode === 7 && /changed on the tracker/.test(err.message),
    );
    tracker.close();
    assert.ok(!existsSync(out + ".dspart"));
  });

  test("interrupted while the buffer file is being created: no .dspart is left behind", async () => {
    for (let round = 0; round < 3; round++) {
      const folder = mkdtempSync(join(dir, "join-"));
      const ac = new AbortController();
      const watcher = watch(folder, () => ac.abort());
      const tracker = await scriptedTracker({ onJoin: (call) => call.write(joined()) });
      await assert.rejects(
        download({
          url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
          output: join(folder, "x.bin"),
          log,
          listenHost: "127.0.0.1",
          signal: ac.signal,
        }),
        (err: unknown) => err instanceof DownloadError && err.exitCode === 130,
      );
      watcher.close();
      tracker.close();
      assert.deepEqual(readdirSync(folder), [], "nothing left in the output folder");
    }
  });

  test("concurrent transfers are capped by maxInFlightBytes; extra directives are re-planned later", async () => {
    const slow = await servingPeer("slow", undefined, { chunkDelayMs: 3 });
    const rangeOf = new Map<number, ChunkRange>();
    const plan = (peerId: string, range: ChunkRange) => {
      const d = directive(slow, peerId, range);
      rangeOf.set(d.transferId, range);
      return d;
    };
    const cancelledIds: number[] = [];
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        send(call, ...ranges(0, count - 1, Math.ceil(count / 5)).map((r) => plan(peerId, r)));
      },
      onReports: (call, reports, peerId) => {
        for (const r of reports) {
          if (r.outcome !== TransferOutcome.TRANSFER_OUTCOME_CANCELLED) continue;
          cancelledIds.push(r.transferId);
          // The tracker plans the range again (here: from the same source).
          send(call, plan(peerId, rangeOf.get(r.transferId)!));
        }
      },
    });
    const out = join(dir, "capped.bin");
    await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      maxInFlightBytes: 2 * chunkSize,
    });
    tracker.close();
    await slow.plane.close();
    assert.ok(readFileSync(out).equals(content));
    assert.ok(slow.served.maxActive <= 2, `${slow.served.maxActive} fetches at once`);
    assert.ok(cancelledIds.length >= 3, "directives over the cap were handed back");
    assert.ok(cancelledIds.length < 40, `${cancelledIds.length} hand-backs: no ping-pong`);
  });
});

describe("download() with resume (-c)", () => {
  /** Directives for the chunks a report does not name as verified (the tracker plans the gaps again). */
  const gapsOf = (peerId: string, verified: ChunkRange[]) => {
    const out: Directive[] = [];
    let next = 0;
    for (const r of [...verified].sort((a, b) => a.first - b.first)) {
      if (r.first > next) out.push(directive(seeder, peerId, { first: next, last: r.first - 1 }));
      next = Math.max(next, r.last + 1);
    }
    if (next < count) out.push(directive(seeder, peerId, { first: next, last: count - 1 }));
    return out;
  };

  /** A first run that gets chunks 0-19 and then stalls (exit 7), with resume: it keeps them. */
  async function keepPartial(out: string) {
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        send(call, directive(seeder, peerId, { first: 0, last: 19 }));
      },
    });
    const err = await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      stallSeconds: 1,
      resume: true,
    }).then(
      () => assert.fail("the first run stalls"),
      (e: unknown) => e,
    );
    tracker.close();
    assert.ok(err instanceof DownloadError && err.exitCode === 7, String(err));
    return err;
  }

  test("a stalled run keeps FILE.dspart and its record; the next checks the kept chunks and fetches only the rest", async () => {
    const out = join(dir, "resumed.bin");
    const err = await keepPartial(out);
    assert.equal(err.result?.keptPartial, out + ".dspart");
    const record = JSON.parse(readFileSync(out + ".dsclient", "utf8")) as Record<string, unknown>;
    assert.deepEqual(record, { dsclient: 1, name, streamId, version, size, chunkSize, chunks: "0-19" });

    // a kept chunk damaged on disk meanwhile: it must not count
    const part = readFileSync(out + ".dspart");
    part[5 * chunkSize + 7]! ^= 0xff;
    writeFileSync(out + ".dspart", part);

    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write(joined());
        send(call, directive(seeder, peerId, { first: 0, last: count - 1 }));
      },
      onReports: (call, reports, peerId) => {
        for (const r of reports) {
          if (r.outcome === TransferOutcome.TRANSFER_OUTCOME_CANCELLED) send(call, ...gapsOf(peerId, r.verified));
        }
      },
    });
    const events: unknown[] = [];
    const servedBefore = seeder.served.bytes;
    const r = await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      resume: true,
      onResume: (e) => events.push(e),
    });
    tracker.close();
    assert.ok(readFileSync(out).equals(content));
    assert.ok(!existsSync(out + ".dspart") && !existsSync(out + ".dsclient"), "no partial file nor record left");
    assert.deepEqual(events, [
      { kind: "resumed", path: out + ".dspart", chunks: 19, bytes: 19 * chunkSize, badChunks: 1 },
    ]);
    assert.equal(r.resumedBytes, 19 * chunkSize);
    assert.equal(r.resumedBadChunks, 1);
    assert.equal(r.bytesFromSeeders, size - 19 * chunkSize, "the damaged chunk and the rest were fetched");
    assert.equal(seeder.served.bytes - servedBefore, size - 19 * chunkSize, "nothing kept was served again");
  });

  test("a stream that changed version since is downloaded from zero, saying why", async () => {
    const out = join(dir, "changed-since.bin");
    await keepPartial(out);
    const v2 = { ...descriptor, streamId: streamIdFor(name, size, 2), version: 2 };
    const v2Seeder = await servingPeer("seeder-v2", undefined, undefined, v2.streamId);
    const tracker = await scriptedTracker({
      onJoin: (call, _join, peerId) => {
        call.write({ body: { $case: "joined", value: { descriptor: v2, manifest: manifestSignedBy(network, 2) } } });
        send(call, directive(v2Seeder, peerId, { first: 0, last: count - 1 }, undefined, v2.streamId));
      },
    });
    const events: { kind: string; reason?: string }[] = [];
    const r = await download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      resume: true,
      onResume: (e) => events.push(e),
    }).finally(() => tracker.close());
    await v2Seeder.plane.close();
    assert.equal(events.length, 1);
    assert.equal(events[0]!.kind, "restart");
    assert.match(
      events[0]!.reason ?? "",
      /^"videos\/clip\.bin" changed on the tracker since changed-since\.bin\.dspart was kept \(version 1, \d+ bytes; now version 2, \d+ bytes\): starting from zero$/,
    );
    assert.equal(r.resumedBytes, 0);
    assert.ok(readFileSync(out).equals(content));
  });

  test("without -c a partial file is removed, and so is a record left by an earlier -c run", async () => {
    const out = join(dir, "not-resumed.bin");
    await keepPartial(out);
    const tracker = await scriptedTracker({ onJoin: (call) => call.write(joined()) });
    await assert.rejects(
      download({
        url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
        output: out,
        log,
        listenHost: "127.0.0.1",
        stallSeconds: 1,
      }),
      (err: unknown) => err instanceof DownloadError && err.exitCode === 7 && err.result?.keptPartial === undefined,
    );
    tracker.close();
    assert.ok(!existsSync(out + ".dspart") && !existsSync(out + ".dsclient"));
  });

  test("-c with standard output is a usage error (exit 2) before any connection", async () => {
    await assert.rejects(
      download({ url: "pdtp://127.0.0.1:1/x.bin", output: "-", log, resume: true }),
      (err: unknown) =>
        err instanceof DownloadError &&
        err.exitCode === 2 &&
        err.message ===
          "-c cannot resume a download to standard output: only a regular output file keeps its partial download",
    );
  });
});
