import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseStreamEvent } from "./store.js";

describe("parseStreamEvent", () => {
  it("reads every event type back from its JSON", () => {
    const events = [
      { type: "cancel", transferIds: [1, 2], fetcherIds: ["a", "b"] },
      { type: "joined", peerId: "p", role: "viewer" },
      { type: "left", peerIds: ["p", "q"] },
      { type: "holdings", peerIds: ["p"], chunks: 12 },
      { type: "published", name: "movies/a.mp4" },
      { type: "retired", name: "movies/a.mp4", by: "newid" },
      {
        type: "live",
        low: 2 ** 40,
        high: 2 ** 40 + 9,
        ended: false,
        edgeTimestampMs: 1_700_000_000_000,
        chunkMs: 200,
        randomAccess: [2 ** 40 + 2, 2 ** 40 + 7],
      },
    ] as const;
    for (const e of events) assert.deepEqual(parseStreamEvent(JSON.stringify(e)), e);
  });

  it("refuses what is not an event, so a stray publisher on the channel cannot confuse a replica", () => {
    for (const text of [
      "",
      "not json",
      "null",
      "42",
      JSON.stringify({ type: "nope" }),
      JSON.stringify({ type: "cancel", transferIds: [1], fetcherIds: [] }),
      JSON.stringify({ type: "cancel", transferIds: [1.5], fetcherIds: ["a"] }),
      JSON.stringify({ type: "joined", peerId: "p", role: "admin" }),
      JSON.stringify({ type: "left", peerIds: "p" }),
      JSON.stringify({ type: "holdings", peerIds: ["p"], chunks: "3" }),
      JSON.stringify({ type: "published" }),
      JSON.stringify({ type: "retired", name: "x" }),
      JSON.stringify({ type: "live", low: 1, high: 2, ended: "no", edgeTimestampMs: 0, chunkMs: 0 }),
      JSON.stringify({ type: "live", low: 1, high: 2.5, ended: false, edgeTimestampMs: 0, chunkMs: 0 }),
      JSON.stringify({ type: "live", low: 1, high: 2, ended: false, edgeTimestampMs: 0, chunkMs: 0, randomAccess: 1 }),
      JSON.stringify({
        type: "live",
        low: 1,
        high: 2,
        ended: false,
        edgeTimestampMs: 0,
        chunkMs: 0,
        randomAccess: ["1"],
      }),
    ]) {
      assert.equal(parseStreamEvent(text), undefined, text);
    }
  });

  it("reads a live event of a replica that sends no random access points as having none", () => {
    const older = { type: "live", low: 1, high: 2, ended: false, edgeTimestampMs: 5, chunkMs: 200 };
    assert.deepEqual(parseStreamEvent(JSON.stringify(older)), { ...older, randomAccess: [] });
  });
});
