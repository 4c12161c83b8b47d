import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { LiveHoldings } from "./liveHoldings.js";

const base = 2 ** 32 - 3;
const data = Array.from({ length: 12 }, (_, i) => randomBytes(10 + i));
const head = (seq: number) => Buffer.from(`head-${seq}`);
const put = (h: LiveHoldings, k: number) => h.put(base + k, data[k]!, 1000 + k, head(base + k));

test("chunks arriving out of order make runs that merge as the gaps fill, across 2^32", () => {
  const h = new LiveHoldings(100);
  for (const k of [5, 6, 0, 1, 3, 9]) assert.equal(put(h, k), true);
  assert.equal(put(h, 5), false, "held already");
  assert.deepEqual(h.ranges(), [
    { first: base, last: base + 1 },
    { first: base + 3, last: base + 3 },
    { first: base + 5, last: base + 6 },
    { first: base + 9, last: base + 9 },
  ]);
  assert.equal(h.holds({ first: base, last: base + 3 }), false);
  put(h, 2);
  put(h, 4);
  assert.deepEqual(h.ranges(), [
    { first: base, last: base + 6 },
    { first: base + 9, last: base + 9 },
  ]);
  assert.equal(h.holds({ first: base, last: base + 6 }), true);
  assert.equal(h.count, 8);
  const frames = h.attested({ first: base + 2, last: base + 4 })!;
  assert.deepEqual(
    frames,
    [2, 3, 4].flatMap((k) => [head(base + k), data[k]]),
    "frames: each chunk's head then its bytes",
  );
  assert.deepEqual(h.chunk(base + 4), { data: data[4], timestampMs: 1004 });
  assert.deepEqual(h.head(base + 6), head(base + 6));
  assert.deepEqual(h.heldIn({ first: base + 5, last: base + 10 }), [
    { first: base + 5, last: base + 6 },
    { first: base + 9, last: base + 9 },
  ]);
});

test("runs below the window are dropped; each run keeps at most the window's chunks", () => {
  const h = new LiveHoldings(3);
  for (const k of [0, 1, 2, 3, 4]) put(h, k);
  assert.deepEqual(h.ranges(), [{ first: base + 2, last: base + 4 }], "the run keeps its last 3");
  put(h, 7);
  put(h, 8);
  h.dropBelow(base + 6);
  assert.deepEqual(h.ranges(), [{ first: base + 7, last: base + 8 }]);
  assert.equal(h.has(base + 3), false);
  assert.equal(h.bytes, data[7]!.length + data[8]!.length);
  h.dropBelow(base + 20);
  assert.deepEqual(h.ranges(), []);
  assert.equal(h.attested({ first: base + 7, last: base + 7 }), undefined);
});
