import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startDataPlane, type RunningDataPlane } from "@distribustream/data-plane";
import {
  ChecksumClient,
  chunkCount,
  issueTicket,
  openManifest,
  Signer,
  streamIdFor,
  type ComputeManifestRequest,
  type PublicKey,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { startChecksum, type RunningChecksum } from "./index.js";
import { readManifest } from "./testing/index.js";

const log = createLogger("test", { level: "silent" });
const CHUNK = 4096;
const SIZE = CHUNK * 7 + 1000;
const COUNT = chunkCount(SIZE, CHUNK);
const NAME = "films/clip.bin";
const VERSION = 1700000000123;
const STREAM = streamIdFor(NAME, SIZE, VERSION);
const SEEDER_ID = "seeder-1";
/** Chunks per hash piece: 8 chunks make 3 pieces, the last one shorter. */
const PIECE = 3;

const trackerKey = Signer.generate();
const networkKey = Signer.generate();

let dir: string;
let file: Buffer;
let plane: RunningDataPlane;
let service: RunningChecksum;
let client: ChecksumClient;
let registry: Registry;

function request(over: Partial<ComputeManifestRequest> = {}, signer = trackerKey): ComputeManifestRequest {
  return {
    streamId: STREAM,
    name: NAME,
    size: SIZE,
    chunkSize: CHUNK,
    version: VERSION,
    sourceUrl: `http://127.0.0.1:${plane.port}`,
    pieceChunks: PIECE,
    ticket: issueTicket(
      {
        streamId: STREAM,
        range: { first: 0, last: COUNT - 1 },
        fetcherId: "checksum",
        serverId: SEEDER_ID,
        expiresMs: Date.now() + 60_000,
      },
      signer,
    ),
    ...over,
  };
}

/** Reads a whole ComputeManifest stream: the header, then the pieces in order. */
const compute = (req: ComputeManifestRequest) => readManifest(client, req);

function rejectsWith(p: Promise<unknown>, code: grpc.status, pattern: RegExp) {
  return assert.rejects(p, (e: grpc.ServiceError) => {
    assert.equal(e.code, code, `code ${e.code}: ${e.details}`);
    assert.match(e.details, pattern);
    return true;
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "checksum-test-"));
  file = randomBytes(SIZE);
  await writeFile(join(dir, "clip.bin"), file);
  plane = await startDataPlane({
    host: "127.0.0.1",
    port: 0,
    source: {
      layout: (id) => (id === STREAM ? { size: SIZE, chunkSize: CHUNK, chunkCount: COUNT, name: NAME } : undefined),
      holds: (id) => id === STREAM,
      read: (_id, start, end) => createReadStream(join(dir, "clip.bin"), { start, end: end - 1 }),
    },
    identity: () => ({ peerId: SEEDER_ID, ticketKeys: [trackerKey.publicKey] }),
    log,
  });
  registry = new Registry();
  service = await startChecksum({ host: "127.0.0.1", port: 0, signer: networkKey, log, registry, maxConcurrent: 1 });
  client = new ChecksumClient(`127.0.0.1:${service.port}`, grpc.credentials.createInsecure());
});

after(async () => {
  client.close();
  await service.drain();
  await plane.close();
  await rm(dir, { recursive: true, force: true });
});

describe("checksum service", () => {
  it("hands out the network key", async () => {
    const key = await new Promise<PublicKey>((resolve, reject) =>
      client.getNetworkKey({}, (err, res) => (err ? reject(err) : resolve(res))),
    );
    assert.equal(key.keyId, networkKey.keyId);
    assert.ok(Buffer.from(key.ed25519).equals(networkKey.publicKey.ed25519));
  });

  it("streams a signed header, then signed pieces whose hashes are the SHA-256 of each chunk", async () => {
    const { header: signed, pieces } = await compute(request());
    const manifest = openManifest(signed, [networkKey.publicKey]);
    assert.equal(manifest.streamId, STREAM);
    assert.equal(manifest.body.name, NAME);
    assert.equal(manifest.body.size, SIZE);
    assert.equal(manifest.body.chunkSize, CHUNK);
    assert.equal(manifest.body.version, VERSION);
    assert.equal(manifest.chunkCount, COUNT);
    assert.ok(Math.abs(manifest.body.createdMs - Date.now()) < 60_000);
    assert.equal(manifest.pieceChunks, PIECE);
    assert.equal(pieces.length, 3);
    for (let i = 0; i < COUNT; i++) {
      const piece = manifest.openPiece(pieces[manifest.pieceOf(i)]!, [networkKey.publicKey], manifest.pieceOf(i));
      const chunk = file.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, SIZE));
      assert.ok(piece.matches(i, createHash("sha256").update(chunk).digest()), `chunk ${i}`);
    }
    assert.throws(() => openManifest(signed, [trackerKey.publicKey]), /unknown key/);
  });

  it("computes several manifests queued behind maxConcurrent", async () => {
    const all = await Promise.all([compute(request()), compute(request()), compute(request())]);
    for (const m of all) {
      assert.equal(openManifest(m.header, [networkKey.publicKey]).chunkCount, COUNT);
      assert.equal(m.pieces.length, 3);
    }
  });

  it("answers INVALID_ARGUMENT for a bad request, naming what is wrong", async () => {
    await rejectsWith(compute(request({ streamId: "abc" })), grpc.status.INVALID_ARGUMENT, /stream_id/);
    await rejectsWith(compute(request({ name: "../etc/passwd" })), grpc.status.INVALID_ARGUMENT, /name/);
    await rejectsWith(compute(request({ chunkSize: 10 })), grpc.status.INVALID_ARGUMENT, /chunk_size/);
    await rejectsWith(compute(request({ sourceUrl: "ftp://x:1" })), grpc.status.INVALID_ARGUMENT, /source_url/);
    await rejectsWith(compute(request({ sourceUrl: "not a url" })), grpc.status.INVALID_ARGUMENT, /source_url/);
    await rejectsWith(compute(request({ ticket: undefined })), grpc.status.INVALID_ARGUMENT, /ticket/);
    await rejectsWith(compute(request({ pieceChunks: 20_000 })), grpc.status.INVALID_ARGUMENT, /piece_chunks/);
  });

  it("answers INVALID_ARGUMENT for bytes that are not a request", async () => {
    const raw = new grpc.Client(`127.0.0.1:${service.port}`, grpc.credentials.createInsecure());
    try {
      await rejectsWith(
        new Promise((resolve, reject) =>
          raw
            .makeServerStreamRequest(
              "/pdtp.v1.Checksum/ComputeManifest",
              (b: Buffer) => b,
              (b: Buffer) => b,
              Buffer.from([0xff, 0xff, 0xff]),
            )
            .on("data", () => {})
            .on("error", reject)
            .on("end", resolve),
        ),
        grpc.status.INVALID_ARGUMENT,
        /malformed/,
      );
    } finally {
      raw.close();
    }
  });

  it("answers FAILED_PRECONDITION when the source refuses the ticket", async () => {
    await rejectsWith(compute(request({}, Signer.generate())), grpc.status.FAILED_PRECONDITION, /403.*signature/);
  });

  it("answers UNAVAILABLE for an unreachable source", async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    await rejectsWith(
      compute(request({ sourceUrl: `http://127.0.0.1:${port}` })),
      grpc.status.UNAVAILABLE,
      /ECONNREFUSED/,
    );
  });

  it("counts manifests, hashed bytes and durations", async () => {
    const text = await registry.metrics();
    const ok = /pdtp_checksum_manifests_total\{result="ok"\} (\d+)/.exec(text);
    const bad = /pdtp_checksum_manifests_total\{result="error"\} (\d+)/.exec(text);
    assert.equal(Number(ok?.[1]), 4);
    assert.ok(Number(bad?.[1]) >= 8);
    assert.match(text, new RegExp(`pdtp_checksum_bytes_hashed_total ${SIZE * 4}\\b`));
    assert.match(text, /pdtp_checksum_duration_seconds_count 4/);
    assert.match(text, /pdtp_checksum_hash_pieces_total 12\b/);
  });
});
