import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemorySwarmStore } from "./memory.js";
import { swarmStoreContract } from "./contract.js";
import { SegmentCounts } from "./segments.js";

swarmStoreContract("memory", async () => new MemorySwarmStore());

describe("SegmentCounts", () => {
  it("merges segments back when counts return to equal", () => {
    const c = new SegmentCounts(0, 99);
    c.add({ first: 10, last: 19 }, 1);
    c.add({ first: 15, last: 29 }, 1);
    assert.deepEqual(
      c.slice({ first: 0, last: 99 }).map((s) => [s.first, s.last, s.count]),
      [
        [0, 9, 0],
        [10, 14, 1],
        [15, 19, 2],
        [20, 29, 1],
        [30, 99, 0],
      ],
    );
    c.add({ first: 15, last: 29 }, -1);
    c.add({ first: 10, last: 19 }, -1);
    assert.equal(c.segmentCount, 1);
    c.add({ first: 90, last: 200 }, 2);
    assert.deepEqual(
      c.slice({ first: 95, last: 120 }).map((s) => [s.first, s.last, s.count]),
      [[95, 99, 2]],
    );
  });

  it("matches a per-chunk model under random updates", () => {
    const size = 64;
    const c = new SegmentCounts(0, size - 1);
    const model = new Array<number>(size).fill(0);
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const live: [number, number][] = [];
    for (let step = 0; step < 500; step++) {
      if (live.length > 0 && rnd() < 0.45) {
        const [a, b] = live.splice(Math.floor(rnd() * live.length), 1)[0]!;
        c.add({ first: a, last: b }, -1);
        for (let i = a; i <= b; i++) model[i]!--;
      } else {
        const a = Math.floor(rnd() * size);
        const b = Math.min(size - 1, a + Math.floor(rnd() * 10));
        live.push([a, b]);
        c.add({ first: a, last: b }, 1);
        for (let i = a; i <= b; i++) model[i]!++;
      }
      const flat: number[] = [];
      for (const s of c.slice({ first: 0, last: size - 1 })) for (let i = s.first; i <= s.last; i++) flat.push(s.count);
      assert.deepEqual(flat, model);
    }
  });
});
