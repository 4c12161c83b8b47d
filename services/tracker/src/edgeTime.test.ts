import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LiveChunkClaim } from "@distribustream/pdtp";
import { edgeTimeAfter } from "./publishLive.js";

/** Claims for chunks `first`..`first + n - 1`, cut `spacingMs` apart from `t0`. */
function claims(first: number, n: number, t0: number, spacingMs: number): LiveChunkClaim[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: first + i,
    length: 1000,
    timestampMs: t0 + i * spacingMs,
    randomAccess: false,
  }));
}

/** The edge after feeding `batches` one after another, from a stream that has no edge yet. */
function after(batches: LiveChunkClaim[][], maxChunkMs: number) {
  let edge = { edgeTimestampMs: 0, chunkMs: 0 };
  for (const b of batches) edge = edgeTimeAfter(edge, b, maxChunkMs);
  return edge;
}

describe("edgeTimeAfter: the edge's source time and a chunk's media time", () => {
  it("follows the spacing of the chunks: 200 ms chunks, and 30 ms ones cut by size", () => {
    const t0 = 1_000_000;
    assert.deepEqual(after([claims(0, 3, t0, 200), claims(3, 2, t0 + 600, 200)], 200), {
      edgeTimestampMs: t0 + 800,
      chunkMs: 200,
    });
    const fast = Array.from({ length: 20 }, (_, i) => claims(i * 2, 2, t0 + i * 60, 30));
    assert.equal(after(fast, 200).chunkMs, 30);
  });

  it("a source gap (killed for 7 s, restarted) moves the edge's time but not the chunk time", () => {
    const t0 = 1_000_000;
    const before = [claims(0, 5, t0, 200), claims(5, 2, t0 + 1000, 200)];
    const restarted = claims(9, 1, t0 + 1200 + 7000, 200);
    const edge = after([...before, restarted], 200);
    assert.equal(edge.edgeTimestampMs, t0 + 8200);
    // Counted in, the gap made it 1,560 ms here: a viewer then put chunk 10's source time 1.5 s
    // before it was cut (from chunk 11's), and skipped it as overdue while it was on its way.
    assert.equal(edge.chunkMs, 200);
    assert.equal(after([...before, restarted, claims(10, 3, t0 + 8400, 200)], 200).chunkMs, 200);
  });

  it("a batch of one chunk with no edge before it counts as the descriptor's chunk time", () => {
    assert.deepEqual(after([claims(0, 1, 5000, 200)], 250), { edgeTimestampMs: 5000, chunkMs: 250 });
  });

  it("a source clock that went back gives no negative chunk time", () => {
    const edge = after([claims(0, 3, 10_000, 200), claims(3, 1, 9_000, 200)], 200);
    assert.equal(edge.edgeTimestampMs, 9_000);
    // the step back counts as a chunk of no time: 200 * 0.8 + 0 * 0.2
    assert.equal(edge.chunkMs, 160);
  });
});
