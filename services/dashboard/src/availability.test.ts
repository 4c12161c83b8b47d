import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bucketAvailability } from "./availability.js";

describe("bucketAvailability", () => {
  it("keeps one bucket per chunk when they fit", () => {
    const strip = bucketAvailability(10, 14, [
      { first: 10, last: 11, count: 2 },
      { first: 12, last: 14, count: 0 },
    ]);
    assert.deepEqual(strip, { low: 10, high: 14, bucketChunks: 1, minHolders: [2, 2, 0, 0, 0] });
  });

  it("keeps the scarcest chunk of each bucket, so one missing chunk among 100,000 still shows", () => {
    const segments = [
      { first: 0, last: 54_320, count: 5 },
      { first: 54_321, last: 54_321, count: 0 },
      { first: 54_322, last: 99_999, count: 3 },
    ];
    const strip = bucketAvailability(0, 99_999, segments);
    assert.equal(strip.bucketChunks, 100);
    assert.equal(strip.minHolders.length, 1000);
    assert.equal(strip.minHolders[543], 0, "the bucket of chunk 54,321");
    assert.equal(strip.minHolders[542], 5);
    assert.equal(strip.minHolders[544], 3);
    assert.ok(JSON.stringify(strip).length < 4096, "a few KiB whatever the chunk count");
  });

  it("counts chunks no segment covers as held by nobody, and has no bucket without chunks", () => {
    assert.deepEqual(bucketAvailability(0, 3, [{ first: 0, last: 1, count: 4 }]).minHolders, [4, 4, 0, 0]);
    assert.deepEqual(bucketAvailability(0, -1, []).minHolders, []);
    const odd = bucketAvailability(0, 1000, [{ first: 0, last: 1000, count: 1 }], 10);
    assert.equal(odd.bucketChunks, 101);
    assert.equal(odd.minHolders.length, 10, "the last bucket holds the 92 chunks left");
  });
});
