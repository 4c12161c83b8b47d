import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startDataPlane, type ChunkSource, type RunningDataPlane } from "@distribustream/data-plane";
import {
  ChecksumClient,
  issueTicket,
  LiveAttestationBody,
  LiveVerifier,
  openLiveDescriptor,
  RandomAccessScanner,
  sha256,
  Signer,
  type AttestLiveChunksRequest,
  type AttestLiveChunksResponse,
  type LiveDescriptorBody,
  type SignedLiveDescriptor,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { startChecksum, type RunningChecksum } from "./index.js";

const log = createLogger("test", { level: "silent" });
const STREAM = "live-cam-1";
const FIRST = 1000;
const trackerKey = Signer.generate();
const networkKey = Signer.generate();
/** What the seeder holds, and what a lying seeder serves in place of chunk FIRST + 1. */
const chunks = [1500, 64 * 1024, 17].map((n) => randomBytes(n));
let lie: Buffer | undefined;

let plane: RunningDataPlane;
let service: RunningChecksum;
let client: ChecksumClient;
let registry: Registry;

const source: ChunkSource = {
  layout: () => ({
    kind: "live",
    name: "cam",
    span: (r) => {
      const at = (s: number) => chunks.slice(0, s - FIRST).reduce((a, c) => a + c.length, 0);
      return { start: at(r.first), end: at(r.last + 1) };
    },
  }),
  holds: (_id, r) => r.first >= FIRST && r.last < FIRST + chunks.length,
  read: (_id, start, end) => {
    const all = Buffer.concat(lie ? [chunks[0]!, lie, chunks[2]!] : chunks);
    return Readable.from([all.subarray(start, end)]);
  },
};

function request(over: Partial<AttestLiveChunksRequest> = {}): AttestLiveChunksRequest {
  const now = Date.now();
  const claims = chunks.map((c, i) => ({
    seq: FIRST + i,
    length: c.length,
    timestampMs: now - 300 + i * 100,
    randomAccess: false,
  }));
  return {
    streamId: STREAM,
    sourceUrl: `http://127.0.0.1:${plane.port}`,
    maxChunkBytes: 64 * 1024,
    ticket: issueTicket(
      {
        streamId: STREAM,
        range: { first: FIRST, last: FIRST + chunks.length - 1 },
        fetcherId: "checksum",
        serverId: "seeder",
        expiresMs: now + 60_000,
      },
      trackerKey,
    ),
    chunks: claims,
    ...over,
  };
}

const attest = (req: AttestLiveChunksRequest) =>
  new Promise<AttestLiveChunksResponse>((resolve, reject) =>
    client.attestLiveChunks(req, (err, res) => (err ? reject(err) : resolve(res!))),
  );
const describeLive = (body: LiveDescriptorBody) =>
  new Promise<SignedLiveDescriptor>((resolve, reject) =>
    client.signLiveDescriptor(body, (err, res) => (err ? reject(err) : resolve(res!))),
  );

function refused(p: Promise<unknown>, code: grpc.status, pattern: RegExp) {
  return assert.rejects(p, (e: grpc.ServiceError) => {
    assert.equal(e.code, code, `code ${e.code}: ${e.details}`);
    assert.match(e.details, pattern);
    return true;
  });
}

const descriptor: LiveDescriptorBody = {
  streamId: STREAM,
  name: "cam",
  maxChunkBytes: 64 * 1024,
  maxChunkMs: 200,
  bitrate: 2_000_000,
  windowChunks: 64,
  firstSeq: FIRST,
  startMs: Date.now(),
  attestationKeyId: "",
  version: 1,
};

describe("the checksum service attests live chunks", () => {
  before(async () => {
    registry = new Registry();
    plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source,
      identity: () => ({ peerId: "seeder", ticketKeys: [trackerKey.publicKey] }),
      log,
    });
    service = await startChecksum({ host: "127.0.0.1", port: 0, signer: networkKey, log, registry });
    client = new ChecksumClient(`127.0.0.1:${service.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await service.drain();
    await plane.close();
  });

  it("signs a descriptor naming its own key, and attestations a viewer's verifier accepts with the bytes", async () => {
    const signed = await describeLive(descriptor);
    const body = openLiveDescriptor(signed, [networkKey.publicKey]);
    assert.equal(body.attestationKeyId, networkKey.keyId);
    const res = await attest(request());
    assert.equal(res.attestations.length, 3);
    const v = new LiveVerifier(body, { trusted: [networkKey.publicKey] });
    res.attestations.forEach((a, i) => v.accept(v.open(a, FIRST + i), chunks[i]!));
    assert.ok(v.has(FIRST + 2));
    const metrics = await registry.metrics();
    assert.match(metrics, /pdtp_checksum_live_chunks_attested_total 3/);
    assert.match(metrics, /pdtp_checksum_live_descriptors_total 1/);
  });

  it("hashes what it read itself: the attestation is of the bytes the seeder served", async () => {
    lie = randomBytes(64 * 1024);
    try {
      const res = await attest(request());
      const v = new LiveVerifier(openLiveDescriptor(await describeLive(descriptor), [networkKey.publicKey]), {
        trusted: [networkKey.publicKey],
      });
      const att = v.open(res.attestations[1]!, FIRST + 1);
      assert.ok(att.sha256.equals(sha256(lie)), "the attestation is of the bytes served");
      assert.ok(!att.sha256.equals(sha256(chunks[1]!)));
    } finally {
      lie = undefined;
    }
  });

  it("refuses claims it cannot vouch for, naming what is wrong", async () => {
    const now = Date.now();
    const base = request();
    const claims = base.chunks;
    await refused(attest({ ...base, chunks: [] }), grpc.status.INVALID_ARGUMENT, /0 chunks claimed/);
    await refused(
      attest({ ...base, chunks: [claims[0]!, { ...claims[1]!, seq: FIRST + 5 }] }),
      grpc.status.INVALID_ARGUMENT,
      /does not follow/,
    );
    await refused(
      attest({ ...base, chunks: [{ ...claims[0]!, timestampMs: now + 3_600_000 }] }),
      grpc.status.INVALID_ARGUMENT,
      /ahead of this service's clock/,
    );
    await refused(
      attest({ ...base, chunks: [{ ...claims[0]!, timestampMs: now - 3_600_000 }] }),
      grpc.status.INVALID_ARGUMENT,
      /too old/,
    );
    await refused(
      attest({ ...base, chunks: [claims[0]!, { ...claims[1]!, timestampMs: claims[0]!.timestampMs - 1 }] }),
      grpc.status.INVALID_ARGUMENT,
      /dated before/,
    );
    await refused(
      attest({ ...base, chunks: [{ ...claims[0]!, length: 70_000 }] }),
      grpc.status.INVALID_ARGUMENT,
      /outside \[1, 65536\]/,
    );
    // A seeder whose chunk lengths differ from its claims is caught reading the body.
    await refused(
      attest({ ...base, chunks: [{ ...claims[0]!, length: 1499 }, claims[1]!, claims[2]!] }),
      grpc.status.UNAVAILABLE,
      /content-length/,
    );
    await refused(describeLive({ ...descriptor, windowChunks: 0 }), grpc.status.INVALID_ARGUMENT, /window/);
    await refused(describeLive({ ...descriptor, name: "" }), grpc.status.INVALID_ARGUMENT, /name/);
    // and it keeps serving
    assert.equal((await attest(request())).attestations.length, 3);
  });

  it("attests a chunk as a random access point only when claimed so and its bytes show it", async () => {
    // an MPEG-TS test pattern from ffmpeg, from its first random access point on
    const made = spawnSync(
      "ffmpeg",
      ["-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=160x120:duration=1"].concat([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "mpegts",
        "-",
      ]),
      { maxBuffer: 16 << 20 },
    );
    assert.equal(made.status, 0, made.stderr.toString());
    const [point] = new RandomAccessScanner().push(made.stdout);
    const saved = chunks[0]!;
    chunks[0] = made.stdout.subarray(point!.offset, point!.offset + saved.length);
    try {
      const base = request();
      const claims = base.chunks.map((c, i) => ({ ...c, randomAccess: i < 2 })); // chunk 1 is random bytes
      const res = await attest({ ...base, chunks: claims });
      assert.deepEqual(
        res.attestations.map((a) => LiveAttestationBody.decode(a.body).randomAccess),
        [true, false, false],
      );
      assert.match(await registry.metrics(), /pdtp_checksum_live_random_access_refused_total 1/);
      // not claimed, not attested so, whatever the bytes
      const unclaimed = await attest(request());
      assert.equal(LiveAttestationBody.decode(unclaimed.attestations[0]!.body).randomAccess, false);
    } finally {
      chunks[0] = saved;
    }
  });
});
