import assert from "node:assert/strict";
import { test } from "node:test";
import {
  chunksPath,
  liveChunksPath,
  liveFrameHead,
  MAX_ATTESTATION_BYTES,
  parseChunksPath,
  streamIdFor,
} from "./dataPlane.js";
import { SignedLiveAttestation } from "./gen/pdtp/v1/common.js";

test("data-plane paths parse strictly", () => {
  assert.deepEqual(parseChunksPath("/pdtp/v1/streams/abc_-1/chunks/3-7"), {
    ok: true,
    kind: "chunks",
    streamId: "abc_-1",
    range: { first: 3, last: 7 },
  });
  assert.equal(parseChunksPath("/pdtp/v1/streams/abc/chunks/7-3").ok, false);
  assert.equal(parseChunksPath("/pdtp/v1/streams/../chunks/1-2").ok, false);
  assert.equal(parseChunksPath("/pdtp/v1/streams/a/chunks/1-2/x").ok, false);
  assert.equal(parseChunksPath("/pdtp/v1/streams/a/chunks/-1-2").ok, false);
  assert.equal(parseChunksPath("/pdtp/v1/streams/a/frames/1-2").ok, false);
  assert.equal(parseChunksPath("/etc/passwd").ok, false);
});

test("live paths name their kind and round-trip, as chunk paths do", () => {
  const range = { first: 2 ** 32 - 2, last: 2 ** 32 + 3 };
  assert.equal(liveChunksPath("cam", range), "/pdtp/v1/streams/cam/live/4294967294-4294967299");
  assert.deepEqual(parseChunksPath(liveChunksPath("cam", range)), { ok: true, kind: "live", streamId: "cam", range });
  assert.deepEqual(parseChunksPath(`${chunksPath("cam", range)}?x=1`), {
    ok: true,
    kind: "chunks",
    streamId: "cam",
    range,
  });
});

test("sequence numbers of 16 digits parse up to 2^53 - 1; beyond is a bad chunk range", () => {
  const top = Number.MAX_SAFE_INTEGER; // 9007199254740991, 16 digits
  const range = { first: 10 ** 15, last: top };
  assert.deepEqual(parseChunksPath(liveChunksPath("cam", range)), { ok: true, kind: "live", streamId: "cam", range });
  assert.deepEqual(parseChunksPath(`/pdtp/v1/streams/cam/chunks/${top}-${top}`), {
    ok: true,
    kind: "chunks",
    streamId: "cam",
    range: { first: top, last: top },
  });
  const bad = { ok: false, error: "bad chunk range" };
  for (const span of [
    `${top}-9007199254740992`, // 2^53
    `${top}-9007199254740993`, // rounds to 2^53 as a number
    "9999999999999999-9999999999999999",
    "1-10000000000000000", // 17 digits
  ]) {
    assert.deepEqual(parseChunksPath(`/pdtp/v1/streams/cam/live/${span}`), bad, span);
    assert.deepEqual(parseChunksPath(`/pdtp/v1/streams/cam/chunks/${span}`), bad, span);
  }
});

test("a live frame head is the attestation's length in two bytes and the attestation", () => {
  const signed = { body: Buffer.alloc(150, 7), signature: Buffer.alloc(64, 9), keyId: "key-1" };
  const head = liveFrameHead(signed);
  const n = head.readUInt16BE(0);
  assert.equal(head.length, 2 + n);
  assert.deepEqual(SignedLiveAttestation.decode(head.subarray(2)), signed);
  assert.throws(
    () => liveFrameHead({ ...signed, body: Buffer.alloc(MAX_ATTESTATION_BYTES) }),
    /attestation of \d+ bytes, expected 1 to 512/,
  );
  assert.throws(() => liveFrameHead({ body: Buffer.alloc(0), signature: Buffer.alloc(0), keyId: "" }), RangeError);
});

test("stream ids are stable per (name, size, version) and differ otherwise", () => {
  const id = streamIdFor("a.bin", 10, 5);
  assert.equal(id, streamIdFor("a.bin", 10, 5));
  assert.match(id, /^[A-Za-z0-9_-]{22}$/);
  assert.notEqual(id, streamIdFor("a.bin", 10, 6));
  assert.notEqual(id, streamIdFor("a.bin", 11, 5));
});
