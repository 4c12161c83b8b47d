import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay, type Backoff } from "./backoff.js";

const lowest = () => 0;
const highest = () => 1 - Number.EPSILON;

test("steps double from the base up to the cap; step 0 is no wait", () => {
  const b: Backoff = { baseMs: 500, maxMs: 4000, jitter: "none" };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(b, n)),
    [0, 500, 1000, 2000, 4000, 4000, 4000],
  );
  assert.equal(backoffDelay(b, 10_000), 4000, "no overflow far along");
});

test("full jitter stays in [0, d) and spread jitter in [d/2, 3d/2)", () => {
  const full: Backoff = { baseMs: 250, maxMs: 10_000, jitter: "full" };
  const spread: Backoff = { baseMs: 500, maxMs: 4000, jitter: "spread" };
  for (let step = 1; step <= 12; step++) {
    const d = Math.min(10_000, 250 * 2 ** (step - 1));
    assert.equal(backoffDelay(full, step, lowest), 0);
    assert.ok(backoffDelay(full, step, highest) < d);
    const s = Math.min(4000, 500 * 2 ** (step - 1));
    assert.equal(backoffDelay(spread, step, lowest), s / 2);
    assert.ok(backoffDelay(spread, step, highest) < (3 * s) / 2);
  }
  // with Math.random: within the bounds, and not all the same
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const w = backoffDelay(full, 3);
    assert.ok(w >= 0 && w < 1000, `${w} in [0, 1000)`);
    seen.add(w);
  }
  assert.ok(seen.size > 100, "jittered");
});
