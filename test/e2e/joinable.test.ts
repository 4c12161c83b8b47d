import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumService,
  chunkCount,
  chunkSpan,
  PeerRole,
  PublishStatus,
  signManifest,
  signPieces,
  Signer,
  streamIdFor,
  TrackerClient,
  type ComputeManifestRequest,
  type ManifestPart,
  type PeerMessage,
  type PublicKey,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { startDataPlane, type RunningDataPlane } from "@distribustream/data-plane";
import { startTracker, type RunningTracker } from "@distribustream/tracker";
import { download, DownloadError } from "@distribustream/client";

/**
 * A stream is joinable while it is being hashed. A real tracker, a seeder
 * session serving over a real data plane and the real client library, in
 * this process; the checksum service is a stand-in that hashes the real
 * bytes but holds every hash piece after the first back until the viewer has
 * its first verified byte. So the download can finish only if its first byte
 * came before the rest of the file was hashed: an ordering, not a timing.
 */
const log = createLogger("test", { level: "silent" });
const CHUNK = 1024;
const PIECE_CHUNKS = 8;
const size = 40 * CHUNK + 100;
const count = chunkCount(size, CHUNK);
const pieceCount = Math.ceil(count / PIECE_CHUNKS);
const content = randomBytes(size);
const names = ["films/good.bin", "films/broken.bin"];

describe("a stream joinable before it is fully hashed", { timeout: 60_000 }, () => {
  const network = Signer.generate();
  const ticketKey = Signer.generate();
  const store = new MemorySwarmStore();
  const checksum = new grpc.Server();
  /** Per name: pieces sent to the tracker so far, and the gate holding back the rest. */
  const hashing = new Map<string, { sent: number; release: () => void; released: Promise<void> }>();
  let tracker: RunningTracker;
  let plane: RunningDataPlane;
  let seederSession: grpc.ClientDuplexStream<PeerMessage, TrackerMessage>;
  let client: TrackerClient;
  let seederId = "";
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-joinable-"));
    for (const name of names) {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      hashing.set(name, { sent: 0, release, released });
    }
    const chunkHashes = Buffer.concat(
      Array.from({ length: count }, (_, i) => {
        const { start, end } = chunkSpan(i, size, CHUNK);
        return createHash("sha256").update(content.subarray(start, end)).digest();
      }),
    );
    checksum.addService(ChecksumService, {
      getNetworkKey: (_call: unknown, cb: grpc.sendUnaryData<PublicKey>) => cb(null, network.publicKey),
      computeManifest: (call: grpc.ServerWritableStream<ComputeManifestRequest, ManifestPart>) => {
        // grpc-js ignores a handler's promise: run the async part on its own
        void (async () => {
          const r = call.request;
          const h = hashing.get(r.name)!;
          const header = signManifest(
            {
              streamId: r.streamId,
              name: r.name,
              size: r.size,
              chunkSize: r.chunkSize,
              createdMs: Date.now(),
              version: r.version,
              pieceChunks: r.pieceChunks,
            },
            network,
          );
          call.write({ part: { $case: "header", value: header } });
          const pieces = signPieces(header, chunkHashes, network);
          for (const [i, piece] of pieces.entries()) {
            if (i === 1) {
              await h.released;
              if (r.name === "films/broken.bin") {
                call.emit("error", { code: grpc.status.UNAVAILABLE, details: "source went away" });
                return;
              }
            }
            call.write({ part: { $case: "piece", value: piece } });
            h.sent++;
          }
          call.end();
        })();
      },
    });
    const checksumPort = await new Promise<number>((resolve, reject) =>
      checksum.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    tracker = await startTracker({
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksumPort}`,
      store,
      ticketSigner: ticketKey,
      chunkSize: CHUNK,
      pieceChunks: PIECE_CHUNKS,
      log,
      registry: new Registry(),
    });
    const ids = new Set(names.map((n) => streamIdFor(n, size, 1)));
    plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      log,
      identity: () => ({ peerId: seederId, ticketKeys: [ticketKey.publicKey] }),
      source: {
        layout: (id) => (ids.has(id) ? { size, chunkSize: CHUNK, chunkCount: count, name: "x" } : undefined),
        holds: (id) => ids.has(id),
        read: (_id, start, end) => Readable.from([content.subarray(start, end)]),
      },
    });
    // the seeder: a session that publishes both files and waits until they are READY
    client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
    seederSession = client.session();
    seederSession.on("error", () => {});
    const ready = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      seederSession.on("data", (m: TrackerMessage) => {
        if (m.body?.$case === "welcome") {
          seederId = m.body.value.peerId;
          for (const name of names)
            seederSession.write({ body: { $case: "publish", value: { name, size, version: 1 } } });
        } else if (m.body?.$case === "publishResult") {
          const r = m.body.value;
          if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) reject(new Error(r.detail));
          if (r.status === PublishStatus.PUBLISH_STATUS_READY) ready.add(r.name);
          if (ready.size === names.length) resolve();
        }
      });
      seederSession.write({
        body: {
          $case: "hello",
          value: {
            role: PeerRole.PEER_ROLE_SEEDER,
            dataPort: plane.port,
            agent: "test",
            credential: "",
            advertiseHost: "",
            advertisePort: 0,
            internalHost: "",
            internalPort: 0,
            peerKey: Buffer.alloc(0),
          },
        },
      });
    });
  });

  after(async () => {
    seederSession.cancel();
    client.close();
    await tracker.drain();
    await plane.close();
    checksum.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Downloads NAME; at its first verified byte, notes how many pieces were hashed and lets the rest come. */
  function viewer(name: string) {
    const h = hashing.get(name)!;
    let piecesAtFirstByte: number | undefined;
    const out = join(dir, name.replace("/", "-"));
    const done = download({
      url: `pdtp://127.0.0.1:${tracker.port}/${name}`,
      output: out,
      log,
      listenHost: "127.0.0.1",
      stallSeconds: 20,
      onProgress: (p) => {
        if (piecesAtFirstByte !== undefined || p.bytes === 0) return;
        piecesAtFirstByte = h.sent;
        h.release();
      },
    });
    return { done, out, piecesAtFirstByte: () => piecesAtFirstByte };
  }

  test("READY with the first hash piece: the viewer's first byte comes before the other pieces exist", async () => {
    assert.equal(hashing.get("films/good.bin")!.sent, 1, "READY while the rest is held back");
    const v = viewer("films/good.bin");
    const r = await v.done;
    assert.equal(v.piecesAtFirstByte(), 1, `first byte with 1 of ${pieceCount} pieces hashed`);
    assert.ok(readFileSync(v.out).equals(content), "every byte verified and identical");
    assert.equal(r.size, size);
    assert.equal(hashing.get("films/good.bin")!.sent, pieceCount);
    assert.equal((await store.getStream(r.streamId))?.hashedChunks, count);
  });

  test("hashing that fails midway ends the viewer with the reason (exit 7), not a hang", async () => {
    const v = viewer("films/broken.bin");
    const err = await v.done.then(
      () => assert.fail("the download should fail"),
      (e: unknown) => e,
    );
    assert.equal(v.piecesAtFirstByte(), 1);
    assert.ok(err instanceof DownloadError);
    assert.equal(err.exitCode, 7, err.message);
    assert.match(err.message, /"films\/broken\.bin" cannot be downloaded: manifest not computed: source went away/);
  });
});
