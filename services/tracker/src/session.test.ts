import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { replanDue, type JoinedStream, type ReplanTiming } from "./session.js";
import type { StreamShape } from "./streamKinds.js";

const TIMING: ReplanTiming = { maxDownloads: 4, starveMs: 2_000, tickMs: 250, replanMs: 1_000 };
const LIVE: StreamShape = { kind: "live", chunkSize: 65_536 };
const FILE: StreamShape = { kind: "file", size: 1 << 30, chunkSize: 262_144 };

/** A peer planned at time 0 in epoch 1, whose last `fruitless` plans found nothing and left it idle. */
function waiting(shape: StreamShape, fruitless: number): JoinedStream {
  return {
    streamId: "s",
    name: "cam",
    shape,
    bounds: { low: 0, high: 100 },
    plannedEpoch: 1,
    plannedMs: 0,
    fruitless,
    idle: true,
    tuningUntil: 0,
    inFlight: new Set(),
  };
}

describe("replanDue: when the schedule tick replans a peer", () => {
  it("a live viewer whose plans found nothing is due one tick after the stream changed, however many there were", () => {
    // at a broadcast's end no LiveEdge replans it: its last chunks come from this tick
    const j = waiting(LIVE, 4);
    assert.equal(replanDue(j, 2, TIMING.tickMs - 1, TIMING), false, "not before a tick");
    assert.equal(replanDue(j, 2, TIMING.tickMs, TIMING), true);
    assert.equal(replanDue(j, 1, TIMING.tickMs, TIMING), false, "not while the stream is as it was planned");
  });

  it("a file viewer whose plans found nothing backs off, doubling from one tick up to replanMs", () => {
    assert.equal(replanDue(waiting(FILE, 1), 2, 2 * TIMING.tickMs - 1, TIMING), false);
    assert.equal(replanDue(waiting(FILE, 1), 2, 2 * TIMING.tickMs, TIMING), true);
    assert.equal(replanDue(waiting(FILE, 4), 2, TIMING.replanMs - 1, TIMING), false);
    assert.equal(replanDue(waiting(FILE, 4), 2, TIMING.replanMs, TIMING), true);
  });

  it("an idle viewer of either kind is replanned once it may be starving, even if nothing changed", () => {
    for (const shape of [LIVE, FILE]) assert.equal(replanDue(waiting(shape, 4), 1, TIMING.starveMs, TIMING), true);
  });

  it("never while its download slots are all busy or it is still tuning in", () => {
    const busy = waiting(LIVE, 0);
    busy.inFlight = new Set([1, 2, 3, 4]);
    assert.equal(replanDue(busy, 2, TIMING.starveMs, TIMING), false);
    const tuning = waiting(LIVE, 0);
    tuning.tuningUntil = TIMING.starveMs + 1;
    assert.equal(replanDue(tuning, 2, TIMING.starveMs, TIMING), false);
  });
});
