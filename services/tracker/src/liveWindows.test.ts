import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LiveWindows } from "./liveWindows.js";

const meta = { streamId: "s", low: 10, high: 20, ended: false, windowChunks: 30 };
const edge = (edgeTimestampMs: number, randomAccess: number[]) => ({ edgeTimestampMs, chunkMs: 500, randomAccess });

describe("LiveWindows edge state", () => {
  it("is forgotten when the replica stops following the stream, not handed out stale", () => {
    const w = new LiveWindows({ getManifest: async () => undefined });
    w.setEdge("s", edge(1_000, [12, 16]));
    assert.deepEqual(w.window(meta, 0).randomAccess, [12, 16]);
    w.forgetEdge("s");
    const after = w.window(meta, 0);
    assert.equal(after.edgeTimestampMs, 0);
    assert.deepEqual(after.randomAccess, []);
  });

  it("tells a join whether it knew the edge, heard it while waiting, or gave up", async () => {
    const w = new LiveWindows({ getManifest: async () => undefined });
    const waiting = w.edgeHeard("s", 5_000);
    const other = w.edgeHeard("t", 20);
    w.setEdge("s", edge(2_000, [18]));
    assert.equal(await waiting, "heard");
    // the wait's timer does not hold the process up by itself (a session does): this test holds it
    const [gaveUp] = await Promise.all([other, new Promise((r) => setTimeout(r, 100))]);
    assert.equal(gaveUp, "timeout");
    assert.equal(await w.edgeHeard("s", 5_000), "known");
    w.setEdge("t", edge(3_000, [])); // a late edge after a timeout wakes nothing and breaks nothing
    assert.equal(await w.edgeHeard("t", 5_000), "known");
  });
});
