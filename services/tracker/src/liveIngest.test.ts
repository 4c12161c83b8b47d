import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startChecksum, type RunningChecksum } from "@distribustream/checksum";
import { startDataPlane, type ChunkSource, type RunningDataPlane } from "@distribustream/data-plane";
import {
  ChecksumClient,
  LiveVerifier,
  Signer,
  type LiveChunkClaim,
  type LiveDescriptorBody,
  type SignedLiveAttestation,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { LiveIngest } from "./liveIngest.js";

const log = createLogger("test", { level: "silent" });
const STREAM = "live-ingest-1";
const FIRST = 2 ** 32 - 3;
const ticketKey = Signer.generate();
const networkKey = Signer.generate();
/** What the seeder holds: chunks FIRST .. FIRST + 7 (chunk FIRST + 8 is claimed but never held). */
const held = Array.from({ length: 8 }, (_, i) => randomBytes(1000 + i * 300));

let plane: RunningDataPlane;
let checksum: RunningChecksum;
let client: ChecksumClient;

const source: ChunkSource = {
  layout: () => ({
    kind: "live",
    name: "cam",
    span: (r) => {
      const at = (s: number) => held.slice(0, s - FIRST).reduce((a, c) => a + c.length, 0);
      return { start: at(r.first), end: at(r.last + 1) };
    },
  }),
  holds: (_id, r) => r.first >= FIRST && r.last < FIRST + held.length,
  read: (_id, start, end) => Readable.from([Buffer.concat(held).subarray(start, end)]),
};

const claim = (seq: number, ts: number, length = held[seq - FIRST]?.length ?? 500): LiveChunkClaim => ({
  seq,
  length,
  timestampMs: ts,
  randomAccess: false,
});

function ingest(onAttested: (a: SignedLiveAttestation[], c: LiveChunkClaim[]) => Promise<void>, lost: string[] = []) {
  return new LiveIngest({
    streamId: STREAM,
    checksum: client,
    ticketSigner: () => ticketKey,
    maxChunkBytes: 64 * 1024,
    source: { url: `http://127.0.0.1:${plane.port}`, peerId: "seeder-1" },
    nextSeq: FIRST,
    edgeTimestampMs: 0,
    onAttested,
    onLost: (c, reason) => lost.push(`${c[0]!.seq}+${c.length}: ${reason}`),
    log,
  });
}

describe("live ingest: a seeder's claims become attestations", () => {
  before(async () => {
    plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source,
      identity: () => ({ peerId: "seeder-1", ticketKeys: [ticketKey.publicKey] }),
      log,
    });
    checksum = await startChecksum({ host: "127.0.0.1", port: 0, signer: networkKey, log, registry: new Registry() });
    client = new ChecksumClient(`127.0.0.1:${checksum.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await checksum.drain();
    await plane.close();
  });

  it("attests chunks in order, one call at a time, batching what arrives meanwhile; a lost batch leaves a hole", async () => {
    const now = Date.now();
    const got: SignedLiveAttestation[] = [];
    const lost: string[] = [];
    let calls = 0;
    let release!: () => void;
    const firstStored = new Promise<void>((r) => (release = r));
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const ing = ingest(async (atts) => {
      calls++;
      got.push(...atts);
      if (calls === 1) release();
      if (got.length === held.length) done();
    }, lost);
    assert.equal(ing.claim([claim(FIRST, now)]), undefined);
    // while the first call is in flight, more claims arrive: they go out together
    for (let s = FIRST + 1; s < FIRST + held.length; s++)
      assert.equal(ing.claim([claim(s, now + (s - FIRST))]), undefined);
    await firstStored;
    await finished;
    assert.ok(calls <= 3, `${calls} calls for ${held.length} chunks`);
    const descriptor: LiveDescriptorBody = {
      streamId: STREAM,
      name: "cam",
      maxChunkBytes: 64 * 1024,
      maxChunkMs: 200,
      bitrate: 0,
      windowChunks: 64,
      firstSeq: FIRST,
      startMs: now,
      attestationKeyId: networkKey.keyId,
      version: 1,
    };
    const v = new LiveVerifier(descriptor, { trusted: [networkKey.publicKey] });
    got.forEach((a, i) => v.accept(v.open(a, FIRST + i), held[i]!));
    assert.equal(ing.expected, FIRST + held.length);

    // a chunk the seeder claims but does not serve is lost; the next one still goes through
    const gone = FIRST + held.length;
    ing.claim([claim(gone, now + 100)]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lost.length, 1);
    assert.match(lost[0]!, new RegExp(`^${gone}\\+1: FAILED_PRECONDITION: .*416`));
  });

  it("refuses claims that do not follow what came before, queueing none of them", () => {
    const ing = ingest(async () => {});
    const now = Date.now();
    assert.match(ing.claim([claim(FIRST + 1, now)])!, /claimed where chunk 4294967293 was expected/);
    assert.match(ing.claim([claim(FIRST, now), claim(FIRST + 2, now)])!, /where chunk 4294967294 was expected/);
    assert.equal(ing.expected, FIRST, "nothing of a refused batch is taken");
    assert.match(ing.claim([claim(FIRST, now, 70_000)])!, /outside \[1, 65536\]/);
    assert.equal(ing.claim([claim(FIRST, now)]), undefined);
    assert.match(ing.claim([claim(FIRST + 1, now - 1)])!, /dated before/);
    ing.close();
    assert.match(ing.claim([claim(FIRST + 1, now)])!, /no longer live/);
  });
});
