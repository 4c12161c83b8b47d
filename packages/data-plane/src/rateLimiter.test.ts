import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRate, RateLimiter } from "./rateLimiter.js";

test("rates parse with binary units and 0 means unlimited", () => {
  assert.equal(parseRate("8M"), 8 * 1024 * 1024);
  assert.equal(parseRate("500k"), 500 * 1024);
  assert.equal(parseRate("1.5G"), 1.5 * 1024 ** 3);
  assert.equal(parseRate("2MiB/s"), 2 * 1024 * 1024);
  assert.equal(parseRate("1048576"), 1048576);
  assert.equal(parseRate("0"), undefined);
  assert.throws(() => parseRate("fast"), /"fast" is not a rate/);
  assert.throws(() => parseRate("-1M"), /not a rate/);
});

test("a limiter holds a stream of takes to its rate after the burst", async () => {
  const rate = 4 * 1024 * 1024; // burst = 1 MiB
  const limiter = new RateLimiter(rate);
  const t0 = performance.now();
  for (let i = 0; i < 12; i++) await limiter.take(256 * 1024); // 3 MiB: 1 MiB burst + 2 MiB at 4 MiB/s
  const s = (performance.now() - t0) / 1000;
  assert.ok(s >= 0.45, `3 MiB at 4 MiB/s with a 1 MiB burst took ${s.toFixed(3)} s, expected >= 0.5 s`);
  assert.ok(s < 2, `took ${s.toFixed(3)} s`);
  assert.throws(() => new RateLimiter(0), /positive/);
});
