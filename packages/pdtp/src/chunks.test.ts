import assert from "node:assert/strict";
import { test } from "node:test";
import { chunkCount, chunkSpan, rangeLength, rangeSpan, rangeWithin } from "./chunks.js";
import { RangeSet } from "./rangeSet.js";

test("chunkCount rounds up and an empty file has no chunks", () => {
  assert.equal(chunkCount(0, 1024), 0);
  assert.equal(chunkCount(1, 1024), 1);
  assert.equal(chunkCount(1024, 1024), 1);
  assert.equal(chunkCount(1025, 1024), 2);
  assert.equal(chunkCount(32 * 1024 * 1024, 256 * 1024), 128);
});

test("chunkSpan and rangeSpan clip the last chunk to the file size", () => {
  assert.deepEqual(chunkSpan(0, 2500, 1000), { start: 0, end: 1000 });
  assert.deepEqual(chunkSpan(2, 2500, 1000), { start: 2000, end: 2500 });
  assert.deepEqual(rangeSpan({ first: 1, last: 2 }, 2500, 1000), { start: 1000, end: 2500 });
  assert.equal(rangeLength({ first: 3, last: 3 }), 1);
});

test("rangeWithin rejects inverted, negative, fractional and out-of-bounds ranges", () => {
  assert.equal(rangeWithin({ first: 0, last: 9 }, 10), true);
  assert.equal(rangeWithin({ first: 0, last: 10 }, 10), false);
  assert.equal(rangeWithin({ first: 5, last: 4 }, 10), false);
  assert.equal(rangeWithin({ first: -1, last: 4 }, 10), false);
  assert.equal(rangeWithin({ first: 0.5, last: 4 }, 10), false);
  assert.equal(rangeWithin({ first: 0, last: 0 }, 0), false);
});

test("RangeSet merges adjacent and overlapping ranges and counts new chunks", () => {
  const s = new RangeSet();
  assert.equal(s.add({ first: 5, last: 9 }), 5);
  assert.equal(s.add({ first: 0, last: 2 }), 3);
  assert.equal(s.add({ first: 3, last: 4 }), 2);
  assert.deepEqual(s.ranges(), [{ first: 0, last: 9 }]);
  assert.equal(s.add({ first: 8, last: 12 }), 3);
  assert.equal(s.count, 13);
  s.add({ first: 20, last: 20 });
  assert.equal(s.toString(), "0-12,20");
});

test("RangeSet membership, gaps, intersections and removal", () => {
  const s = new RangeSet([
    { first: 2, last: 4 },
    { first: 8, last: 10 },
  ]);
  assert.equal(s.has(1), false);
  assert.equal(s.has(2), true);
  assert.equal(s.has(10), true);
  assert.equal(s.has(11), false);
  assert.equal(s.hasRange({ first: 2, last: 4 }), true);
  assert.equal(s.hasRange({ first: 3, last: 8 }), false);
  assert.deepEqual(
    [...s.gaps({ first: 0, last: 12 })],
    [
      { first: 0, last: 1 },
      { first: 5, last: 7 },
      { first: 11, last: 12 },
    ],
  );
  assert.deepEqual([...s.gaps({ first: 2, last: 4 })], []);
  assert.deepEqual(
    [...s.intersect({ first: 3, last: 9 })],
    [
      { first: 3, last: 4 },
      { first: 8, last: 9 },
    ],
  );
  assert.equal(s.firstMissing(0), 0);
  assert.equal(s.firstMissing(3), 5);
  s.remove({ first: 3, last: 9 });
  assert.equal(s.toString(), "2,10");
});

test("RangeSet agrees with a plain set under random operations", () => {
  let seed = 42;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const s = new RangeSet();
  const ref = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const a = rnd(200);
    const b = a + rnd(10);
    if (rnd(4) === 0) {
      s.remove({ first: a, last: b });
      for (let x = a; x <= b; x++) ref.delete(x);
    } else {
      s.add({ first: a, last: b });
      for (let x = a; x <= b; x++) ref.add(x);
    }
  }
  assert.equal(s.count, ref.size);
  for (let x = 0; x < 220; x++) assert.equal(s.has(x), ref.has(x), `chunk ${x}`);
  const rs = s.ranges();
  for (let i = 1; i < rs.length; i++)
    assert.ok(rs[i]!.first > rs[i - 1]!.last + 1, "ranges stay disjoint and non-adjacent");
  // intersect, gaps and firstIn of windows starting anywhere (they begin with a binary search)
  const chunksOf = (ranges: Iterable<{ first: number; last: number }>) => {
    const out: number[] = [];
    for (const r of ranges) for (let x = r.first; x <= r.last; x++) out.push(x);
    return out;
  };
  for (let i = 0; i < 500; i++) {
    const first = rnd(230);
    const w = { first, last: first + rnd(40) };
    const inside: number[] = [];
    const outside: number[] = [];
    for (let x = w.first; x <= w.last; x++) (ref.has(x) ? inside : outside).push(x);
    assert.deepEqual(chunksOf(s.intersect(w)), inside, `intersect ${w.first}-${w.last}`);
    assert.deepEqual(chunksOf(s.gaps(w)), outside, `gaps ${w.first}-${w.last}`);
    const around = s.rangeAt(w.first);
    const holding = rs.find((r) => r.first <= w.first && w.first <= r.last);
    assert.deepEqual(around, holding && { ...holding }, `rangeAt ${w.first}`);
    const firstPart = s.firstIn(w);
    assert.deepEqual(firstPart, [...s.intersect(w)][0], `firstIn ${w.first}-${w.last}`);
  }
  assert.equal(s.firstIn({ first: 5, last: 4 }), undefined);
  // windows that start before the first range, and an empty set
  const t = new RangeSet([
    { first: 10, last: 12 },
    { first: 20, last: 25 },
  ]);
  assert.equal(t.firstIn({ first: 0, last: 9 }), undefined);
  assert.deepEqual(t.firstIn({ first: 0, last: 10 }), { first: 10, last: 10 });
  assert.deepEqual(t.firstIn({ first: 13, last: 30 }), { first: 20, last: 25 });
  assert.deepEqual(
    [...t.intersect({ first: 0, last: 21 })],
    [
      { first: 10, last: 12 },
      { first: 20, last: 21 },
    ],
  );
  assert.deepEqual([...t.gaps({ first: 0, last: 11 })], [{ first: 0, last: 9 }]);
  assert.equal(new RangeSet().firstIn({ first: 0, last: 5 }), undefined);
});
