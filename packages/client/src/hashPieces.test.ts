import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import {
  ManifestError,
  openManifest,
  signManifest,
  signPieces,
  Signer,
  type SignedHashPiece,
} from "@distribustream/pdtp";
import { HashPieceCache, PieceUnavailable } from "./hashPieces.js";

const network = Signer.generate();
const chunks = 100;
const hashOf = (i: number) => createHash("sha256").update(`chunk ${i}`).digest();
const header = signManifest(
  { streamId: "s1", name: "a.bin", size: chunks * 1024, chunkSize: 1024, createdMs: 1, version: 1, pieceChunks: 10 },
  network,
);
const manifest = openManifest(header, [network.publicKey]);
const pieces = signPieces(header, Buffer.concat(Array.from({ length: chunks }, (_, i) => hashOf(i))), network);

function cache(
  maxBytes: number,
  serve: (first: number, count: number) => SignedHashPiece[] = (f, c) => pieces.slice(f, f + c),
) {
  const calls: [number, number][] = [];
  const c = new HashPieceCache(
    manifest,
    () => [network.publicKey],
    async (first, count) => {
      calls.push([first, count]);
      await new Promise((r) => setImmediate(r));
      return serve(first, count);
    },
    maxBytes,
  );
  return { c, calls };
}

test("a chunk's piece is fetched once for all who ask at once, and verifies the chunk", async () => {
  const { c, calls } = cache(1 << 20);
  const got = await Promise.all([c.pieceFor(12), c.pieceFor(15), c.pieceFor(19, 35)]);
  assert.ok(got.every((p) => p.index === 1));
  assert.ok(got[0]!.matches(12, hashOf(12)));
  assert.ok(!got[0]!.matches(12, hashOf(13)));
  assert.deepEqual(calls, [[1, 1]], "one call; the later askers wait for it");
  await c.prefetch(20, 45);
  assert.deepEqual(calls.at(-1), [2, 3], "a range's missing pieces in one call");
  assert.equal(c.size, 4);
});

test("memory stays bounded: the least recently used pieces go", async () => {
  const { c, calls } = cache(3 * 320);
  for (let i = 0; i < chunks; i += 10) await c.pieceFor(i);
  assert.equal(c.size, 3, "3 pieces of 10 hashes fit in 960 bytes");
  await c.pieceFor(95);
  const before = calls.length;
  await c.pieceFor(0);
  assert.equal(calls.length, before + 1, "an evicted piece is fetched again");
});

test("a missing piece is PieceUnavailable; a piece of the wrong place is a ManifestError", async () => {
  await assert.rejects(cache(1 << 20, () => []).c.pieceFor(5), PieceUnavailable);
  await assert.rejects(
    cache(1 << 20, (f) => [pieces[f + 1]!]).c.pieceFor(5),
    (e: unknown) => e instanceof ManifestError && e.message === "hash piece 0 is piece 1 of the stream",
  );
});
