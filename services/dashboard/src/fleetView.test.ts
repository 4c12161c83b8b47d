import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { FleetPeer, ReplicaStats } from "@distribustream/swarm-store";
import { delayQuantile, FleetView } from "./fleetView.js";

const peer = (peerId: string, over: Partial<FleetPeer> = {}): FleetPeer => ({
  peerId,
  local: false,
  role: "viewer",
  address: "",
  agent: "",
  downRate: 0,
  upRate: 0,
  held: -1,
  served: 0,
  failures: 0,
  bad: 0,
  banned: false,
  delayMs: -1,
  ...over,
});

const summary = (replicaId: string, over: Partial<ReplicaStats> = {}): ReplicaStats => ({
  replicaId,
  address: `${replicaId}:6086`,
  startedMs: 0,
  sentMs: 60_000,
  intervalMs: 1000,
  viewers: 2,
  seeders: 0,
  directivesPerSecond: 10,
  storeLatencyMs: 0.5,
  storeUp: true,
  cleanupLeader: false,
  checksumReachable: true,
  unreachablePeers: 0,
  streams: [],
  totals: [],
  seederSessions: [],
  notices: [],
  noticesDropped: 0,
  ...over,
});

describe("FleetView", () => {
  it("sums the alive replicas' figures and merges a peer's rates over the replicas that credit it", () => {
    const v = new FleetView();
    v.heard(
      summary("a", {
        totals: [{ name: "x.bin", peerBytes: 300, seederBytes: 100, completed: 1 }],
        streams: [
          {
            streamId: "s",
            name: "x.bin",
            kind: "file",
            viewers: 2,
            seeders: 1,
            delayHistogram: [],
            peers: [
              peer("p1", { local: true, address: "10.0.0.1:8000", agent: "dsclient/1", downRate: 100, held: 7 }),
              peer("p2", { upRate: 40 }),
            ],
          },
        ],
      }),
      1000,
    );
    v.heard(
      summary("b", {
        totals: [{ name: "x.bin", peerBytes: 50, seederBytes: 50, completed: 2 }],
        streams: [
          {
            streamId: "s",
            name: "x.bin",
            kind: "file",
            viewers: 1,
            seeders: 0,
            delayHistogram: [],
            peers: [peer("p2", { local: true, address: "10.0.0.2:8000", downRate: 10, upRate: 60, bad: 1 })],
          },
        ],
      }),
      1000,
    );
    assert.deepEqual(v.totalsByName(1500).get("x.bin"), { peerBytes: 350, seederBytes: 150, completed: 3 });
    const s = v.stream("s", 1500);
    assert.equal(s.viewers, 3);
    assert.deepEqual(
      s.peers.map((p) => [p.peerId, p.downRate, p.upRate, p.address, p.replicaId, p.held]),
      [
        ["p2", 10, 100, "10.0.0.2:8000", "b", null], // a source with bad reports first
        ["p1", 100, 0, "10.0.0.1:8000", "a", 7],
      ],
    );
  });

  it("shows a replica gone after 3 of its intervals of silence, and stops counting its current figures", () => {
    const v = new FleetView();
    v.heard(summary("a", { totals: [{ name: "x", peerBytes: 1, seederBytes: 0, completed: 0 }] }), 0);
    v.heard(summary("b"), 2500);
    assert.deepEqual(
      v.replicaRows(3000).map((r) => [r.replicaId, r.alive]),
      [
        ["a", true],
        ["b", true],
      ],
    );
    const rows = v.replicaRows(3001);
    assert.deepEqual(
      rows.map((r) => [r.replicaId, r.alive, r.viewers]),
      [
        ["b", true, 2],
        ["a", false, 0],
      ],
    );
    assert.equal(v.viewersByStream(3001).size, 0);
    assert.deepEqual(v.replicaRows(10 * 60_000), [], "forgotten after minutes of silence");
  });

  it("keeps what a replica delivered after it is gone and forgotten; a summary's names add to the earlier ones", () => {
    const v = new FleetView();
    const t = (name: string, peerBytes: number, completed: number) => ({ name, peerBytes, seederBytes: 10, completed });
    v.heard(summary("a", { totals: [t("x", 100, 1), t("y", 5, 0)] }), 0);
    v.heard(summary("a", { totals: [t("x", 300, 2)] }), 1000); // y unchanged, so not sent again
    v.heard(summary("b", { totals: [t("x", 50, 1)] }), 1000);
    assert.deepEqual(v.totalsByName(1500).get("x"), { peerBytes: 350, seederBytes: 20, completed: 3 });
    assert.deepEqual(v.totalsByName(1500).get("y"), { peerBytes: 5, seederBytes: 10, completed: 0 });
    // a dies; b goes on
    v.heard(summary("b", { totals: [t("x", 70, 2)] }), 9000);
    assert.deepEqual(
      v.replicaRows(9000).map((r) => [r.replicaId, r.alive]),
      [
        ["b", true],
        ["a", false],
      ],
    );
    assert.deepEqual(v.totalsByName(9000).get("x"), { peerBytes: 370, seederBytes: 20, completed: 4 });
    // minutes later a is forgotten, its totals are not
    v.heard(summary("b", { totals: [t("x", 80, 3)] }), 6 * 60_000);
    assert.deepEqual(
      v.replicaRows(6 * 60_000).map((r) => r.replicaId),
      ["b"],
    );
    assert.deepEqual(v.totalsByName(6 * 60_000).get("x"), { peerBytes: 380, seederBytes: 20, completed: 5 });
    assert.deepEqual(v.totalsByName(6 * 60_000).get("y"), { peerBytes: 5, seederBytes: 10, completed: 0 });
  });

  it("keeps the latest notices, newest first, by stream", () => {
    const v = new FleetView();
    const n = (atMs: number, streamId: string) => ({
      atMs,
      streamId,
      type: "joined" as const,
      peerId: "p",
      detail: "",
    });
    v.heard(summary("a", { notices: [n(1, "s"), n(2, "t")] }), 0);
    v.heard(summary("a", { notices: [n(3, "s")] }), 1000);
    assert.deepEqual(
      v.recentNotices(10, "s").map((x) => x.atMs),
      [3, 1],
    );
    assert.deepEqual(
      v.recentNotices(2).map((x) => x.atMs),
      [3, 2],
    );
  });
});

describe("delayQuantile", () => {
  it("interpolates inside the bucket the quantile falls in", () => {
    // buckets: <=100, <=200, <=300 ...: 2 viewers at <=100 ms, 2 at 100-200 ms
    assert.equal(delayQuantile([2, 2], 0.5), 100);
    assert.equal(delayQuantile([2, 2], 0.75), 150);
    assert.equal(delayQuantile([0, 0, 4], 0.95), 295);
    assert.equal(delayQuantile([], 0.5), null);
  });
});
