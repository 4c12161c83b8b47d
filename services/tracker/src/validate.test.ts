import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PublicError } from "@distribustream/runtime";
import { checkRanges } from "./validate.js";

describe("checkRanges", () => {
  const problem = (ranges: { first: number; last: number }[]) => {
    try {
      checkRanges(ranges, { low: 0, high: 9 }, "Have.ranges");
      return undefined;
    } catch (err) {
      assert.ok(err instanceof PublicError);
      return err.message;
    }
  };

  it("accepts ranges inside the stream and names the first bad one", () => {
    assert.equal(problem([]), undefined);
    assert.equal(
      problem([
        { first: 0, last: 9 },
        { first: 3, last: 3 },
      ]),
      undefined,
    );
    assert.equal(
      problem([
        { first: 0, last: 1 },
        { first: 5, last: 4 },
      ]),
      "Have.ranges: range 5-4 has first > last",
    );
    assert.equal(problem([{ first: 2, last: 10 }]), "Have.ranges: range 2-10 is beyond the stream's 10 chunks");
    assert.equal(problem([{ first: 0.5, last: 3 }]), "Have.ranges: range 0.5-3 is not a range of chunk numbers");
    assert.equal(problem([{ first: -1, last: 3 }]), "Have.ranges: range -1-3 is not a range of chunk numbers");
  });

  it("names the bounds of a window that does not start at chunk 0", () => {
    assert.throws(() => checkRanges([{ first: 5, last: 25 }], { low: 10, high: 30 }, "Have.ranges"), {
      message: "Have.ranges: range 5-25 is outside the stream's chunks 10-30",
    });
    assert.doesNotThrow(() => checkRanges([{ first: 10, last: 30 }], { low: 10, high: 30 }, "Have.ranges"));
  });
});
