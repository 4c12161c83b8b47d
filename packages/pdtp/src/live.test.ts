import assert from "node:assert/strict";
import { test } from "node:test";
import { LiveDescriptorBody } from "./gen/pdtp/v1/common.js";
import { Signer } from "./keys.js";
import {
  LiveChunkError,
  LiveDescriptorError,
  LiveVerifier,
  MAX_LIVE_SEQ,
  openLiveDescriptor,
  sha256,
  signLiveAttestation,
  signLiveDescriptor,
  type LiveRejection,
} from "./live.js";

const NOW = 1_800_000_000_000;
const network = Signer.generate();

function descriptor(over: Partial<LiveDescriptorBody> = {}): LiveDescriptorBody {
  return {
    streamId: "live-1",
    name: "cam",
    maxChunkBytes: 64 * 1024,
    maxChunkMs: 250,
    bitrate: 2_000_000,
    windowChunks: 8,
    firstSeq: 100,
    startMs: NOW - 10_000,
    attestationKeyId: network.keyId,
    version: 1,
    ...over,
  };
}

function chunk(seq: number, data: Buffer, over: { streamId?: string; ts?: number; signer?: Signer } = {}) {
  return signLiveAttestation(
    {
      streamId: over.streamId ?? "live-1",
      seq,
      timestampMs: over.ts ?? NOW - 1000 + seq,
      length: data.length,
      sha256: sha256(data),
      randomAccess: false,
    },
    over.signer ?? network,
  );
}

function verifier(d = descriptor()) {
  return new LiveVerifier(d, { trusted: [network.publicKey], now: () => NOW });
}

function rejected(fn: () => unknown): LiveRejection {
  try {
    fn();
  } catch (err) {
    if (err instanceof LiveChunkError) return err.reason;
    throw err;
  }
  assert.fail("accepted");
}

test("a signed live descriptor opens with the network key and refuses tampering and absurd numbers", () => {
  const signed = signLiveDescriptor(descriptor(), network);
  const body = openLiveDescriptor(signed, [network.publicKey]);
  assert.equal(body.firstSeq, 100);
  assert.equal(body.windowChunks, 8);
  const flipped = { ...signed, body: Buffer.from(signed.body) };
  flipped.body[3]! ^= 1;
  assert.throws(() => openLiveDescriptor(flipped, [network.publicKey]), /signature does not verify/);
  assert.throws(() => openLiveDescriptor(signed, [Signer.generate().publicKey]), /unknown key/);
  for (const [over, msg] of [
    [{ windowChunks: 0 }, /window/],
    [{ maxChunkMs: 0 }, /chunk time/],
    [{ maxChunkBytes: 1 }, /chunk size/],
    [{ attestationKeyId: "" }, /attestation key/],
  ] as const) {
    assert.throws(
      () => openLiveDescriptor(signLiveDescriptor(descriptor(over), network), [network.publicKey]),
      (e) => {
        assert.ok(e instanceof LiveDescriptorError);
        assert.match(e.message, msg);
        return true;
      },
    );
  }
});

test("chunks in order verify, are accepted, and move the edge", () => {
  const v = verifier();
  for (let seq = 100; seq < 105; seq++) {
    const data = Buffer.from(`chunk ${seq}`);
    const att = v.open(chunk(seq, data), seq);
    assert.equal(att.seq, seq);
    v.accept(att, data);
    assert.ok(v.has(seq));
  }
  assert.deepEqual(v.window, { low: 100, edge: 104 });
});

test("each kind of bad live chunk is refused with its reason", () => {
  const v = verifier();
  v.advance(110, 104);
  const data = Buffer.from("the real chunk");
  v.accept(v.open(chunk(105, data), 105), data);
  const stranger = Signer.generate();
  assert.equal(
    rejected(() => v.open(chunk(106, data, { signer: stranger }), 106)),
    "bad-signature",
  );
  const forged = chunk(106, data);
  forged.signature = Buffer.from(forged.signature);
  forged.signature[0]! ^= 1;
  assert.equal(
    rejected(() => v.open(forged, 106)),
    "bad-signature",
  );
  assert.equal(
    rejected(() => v.open(chunk(106, data, { streamId: "live-2" }), 106)),
    "other-stream",
  );
  assert.equal(
    rejected(() => v.open(chunk(105, data), 106)),
    "replayed",
    "an older chunk in place of the asked one",
  );
  assert.equal(
    rejected(() => v.open(chunk(105, data), 105)),
    "replayed",
    "a chunk already accepted",
  );
  assert.equal(
    rejected(() => v.open(chunk(107, data), 106)),
    "reordered",
    "a later chunk in place of the asked one",
  );
  assert.equal(
    rejected(() => v.open(chunk(103, data), 103)),
    "outside-window",
    "below the window",
  );
  assert.equal(
    rejected(() => v.open(chunk(200, data), 200)),
    "outside-window",
    "far beyond the edge",
  );
  assert.equal(
    rejected(() => v.open(chunk(106, data, { ts: NOW - 3_600_000 }), 106)),
    "stale",
  );
  assert.equal(
    rejected(() => v.open(chunk(106, data, { ts: NOW + 3_600_000 }), 106)),
    "stale",
    "dated ahead",
  );
  assert.equal(
    rejected(() => v.open(chunk(106, data, { ts: NOW - 1000 + 104 }), 106)),
    "reordered",
    "dated before the chunk that precedes it",
  );
  const att = v.open(chunk(106, data), 106);
  assert.equal(
    rejected(() => v.accept(att, Buffer.from("the fake chunk"))),
    "bad-data",
  );
  assert.equal(
    rejected(() => v.accept(att, Buffer.from("short"))),
    "bad-data",
  );
  v.accept(att, data);
  assert.ok(v.has(106));
});

test("the window moves: chunks below it are forgotten and refused", () => {
  const v = verifier();
  for (let seq = 100; seq < 110; seq++) {
    const data = Buffer.from([seq]);
    v.accept(v.open(chunk(seq, data), seq), data);
  }
  v.advance(120);
  assert.deepEqual(v.window, { low: 113, edge: 120 }, "the window keeps windowChunks chunks behind the edge");
  assert.equal(v.has(109), false);
  assert.equal(
    rejected(() => v.open(chunk(112, Buffer.from([1])), 112)),
    "outside-window",
  );
  v.advance(119, 90);
  assert.deepEqual(v.window, { low: 113, edge: 120 }, "neither bound goes back");
});

test("sequence numbers run across 2^32 and up to the last one, 2^53 - 2, without a stall", () => {
  for (const first of [2 ** 32 - 100, MAX_LIVE_SEQ - 100]) {
    const v = verifier(descriptor({ firstSeq: first }));
    for (let seq = first; seq <= Math.min(first + 200, MAX_LIVE_SEQ); seq++) {
      const data = Buffer.from(String(seq));
      v.accept(v.open(chunk(seq, data, { ts: NOW - 500 }), seq), data);
      v.advance(seq);
    }
    assert.ok(v.has(Math.min(first + 200, MAX_LIVE_SEQ)));
  }
  const v = verifier(descriptor({ firstSeq: MAX_LIVE_SEQ - 1 }));
  assert.equal(
    rejected(() => v.open(chunk(MAX_LIVE_SEQ + 1, Buffer.from("x")), MAX_LIVE_SEQ + 1)),
    "outside-window",
  );
});
