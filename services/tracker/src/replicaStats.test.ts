import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { PeerRole, PublishStatus, Signer, TrackerClient, TransferOutcome, WantMode } from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore, type ReplicaStats } from "@distribustream/swarm-store";
import { startChecksumDouble, TestPeer } from "./testing/index.js";
import { startTracker, type RunningTracker } from "./index.js";
import { NO_FIGURES, topPeers, type PeerFigures, type StreamFigures } from "./replicaStats.js";
import type { Session } from "./session.js";

const CHUNK = 1024;
const NAME = "stats/a.bin";

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m as { values?: { value: number; labels: Record<string, string | number> }[] } | undefined)?.values?.find(
    (x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val),
  );
  return v?.value ?? 0;
}

describe("replica stats on the fleet channel", () => {
  const store = new MemorySwarmStore();
  const registry = new Registry();
  const summaries: ReplicaStats[] = [];
  const sub = store.subscribeEvents({
    event: () => undefined,
    fleet: (e) => summaries.push(e.stats),
    resync: () => undefined,
  });
  let checksum: Awaited<ReturnType<typeof startChecksumDouble>>;
  let tracker: RunningTracker;
  let client: TrackerClient;
  const open: TestPeer[] = [];
  const peer = () => {
    const p = new TestPeer(client);
    open.push(p);
    return p;
  };
  /** The first summary sent after `check` holds for it. */
  const summaryWhere = async (what: string, check: (s: ReplicaStats) => boolean): Promise<ReplicaStats> => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const s = summaries.findLast(check);
      if (s) return s;
      if (Date.now() > deadline) assert.fail(`no summary with ${what}; last: ${JSON.stringify(summaries.at(-1))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    await sub.watchFleet();
    checksum = await startChecksumDouble(Signer.generate());
    tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksum.port}`,
      store,
      ticketSigner: Signer.generate(),
      chunkSize: CHUNK,
      log: createLogger("stats-test", { level: "silent" }),
      registry,
    });
    client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    for (const p of open) p.call.cancel();
    await tracker.drain();
    await sub.close();
    client.close();
    checksum.close();
  });

  it("counts sessions, delivered bytes by source, completions, the busiest peers and what went wrong", async () => {
    const seeder = peer();
    const seederId = (await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100)).peerId;
    assert.equal(
      (await seeder.publish({ name: NAME, size: 40 * CHUNK, version: 1 } as never)).status,
      PublishStatus.PUBLISH_STATUS_READY,
    );
    const holder = peer();
    const holderId = (await holder.hello(PeerRole.PEER_ROLE_VIEWER, 9200)).peerId;
    holder.send({
      $case: "join",
      value: { name: NAME, mode: WantMode.WANT_MODE_BULK, have: [{ first: 0, last: 19 }], position: 0 },
    });
    await holder.next("joined");
    const fetcher = peer();
    const fetcherId = (await fetcher.hello(PeerRole.PEER_ROLE_VIEWER, 9300)).peerId;
    fetcher.send({ $case: "join", value: { name: NAME, mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 } });
    const joined = await fetcher.next("joined");
    const streamId = joined.descriptor!.streamId;

    // fetch everything: the first transfer from the holder reported bad, the rest OK
    let held = 0;
    let rejected = false;
    while (held < 40) {
      const { directives } = await fetcher.next("directives");
      const reports = directives.map((d) => {
        const bad = !rejected && d.source?.peerId === holderId;
        rejected ||= bad;
        if (!bad) held += d.range!.last - d.range!.first + 1;
        return {
          transferId: d.transferId,
          outcome: bad ? TransferOutcome.TRANSFER_OUTCOME_BAD_DATA : TransferOutcome.TRANSFER_OUTCOME_OK,
          bytes: bad ? 0 : (d.range!.last - d.range!.first + 1) * CHUNK,
          durationMs: 10,
          detail: bad ? "hash mismatch" : "",
          httpStatus: 0,
          verified: bad ? [] : [d.range!],
        };
      });
      fetcher.send({ $case: "reports", value: { reports } });
    }
    assert.ok(rejected, "the holder served something");
    fetcher.send({ $case: "position", value: { streamId, nextChunk: 40 } });

    const done = await summaryWhere("the completion", (s) =>
      s.totals.some((t) => t.name === NAME && t.completed === 1),
    );
    const peerBytes = await metric(registry, "pdtp_tracker_delivered_bytes_total", { stream: NAME, source: "peer" });
    const seederBytes = await metric(registry, "pdtp_tracker_delivered_bytes_total", {
      stream: NAME,
      source: "seeder",
    });
    assert.ok(peerBytes > 0 && seederBytes > 0);
    assert.equal(peerBytes + seederBytes, 40 * CHUNK);
    assert.deepEqual(
      done.totals.find((t) => t.name === NAME),
      { name: NAME, peerBytes, seederBytes, completed: 1 },
    );
    assert.equal(await metric(registry, "pdtp_tracker_completed_total", { stream: NAME }), 1);
    assert.equal(done.viewers, 2);
    assert.equal(done.seeders, 1);
    assert.equal(done.storeUp, true);
    assert.equal(done.checksumReachable, true);
    assert.ok(done.replicaId.length > 0 && /^127\.0\.0\.1:\d+$/.test(done.address));

    const all = summaries.filter((s) => s.sentMs >= done.sentMs - 5_000);
    const notices = all.flatMap((s) => s.notices);
    const kinds = (type: string) => notices.filter((n) => n.type === type && n.streamId === streamId);
    assert.deepEqual(
      kinds("joined")
        .map((n) => n.peerId)
        .sort(),
      [holderId, fetcherId].sort(),
    );
    assert.deepEqual(
      kinds("completed").map((n) => n.peerId),
      [fetcherId],
    );
    assert.equal(kinds("bad-chunk")[0]?.peerId, holderId, "the rejected chunk names its source");
    assert.match(kinds("bad-chunk")[0]!.detail, /hash mismatch/);

    const s = done.streams.find((x) => x.streamId === streamId)!;
    assert.equal(s.name, NAME);
    assert.equal(s.kind, "file");
    assert.equal(s.viewers, 2);
    assert.equal(s.seeders, 1);
    const byId = new Map(s.peers.map((p) => [p.peerId, p]));
    assert.equal(s.peers[0]!.peerId, holderId, "a source with bad reports comes first");
    assert.equal(byId.get(holderId)!.bad, 1);
    assert.equal(byId.get(fetcherId)!.held, 40, "the fetcher holds the whole file");
    assert.equal(byId.get(holderId)!.held, 20);
    assert.equal(byId.get(seederId)!.role, "seeder");
    assert.equal(byId.get(seederId)!.address, "127.0.0.1:9100");
    assert.equal(byId.get(fetcherId)!.agent, "test/1");
    const rates = all.flatMap((x) => x.streams.filter((y) => y.streamId === streamId).flatMap((y) => y.peers));
    assert.ok(
      rates.some((p) => p.peerId === fetcherId && p.downRate > 0),
      "the fetcher's download rate shows",
    );
    assert.ok(
      rates.some((p) => p.peerId === seederId && p.upRate > 0),
      "the seeder's upload rate shows",
    );
  });
});

describe("the busiest peers of a big swarm", () => {
  // a deterministic mix: ties on rates, banned and bad sources, local sessions without figures yet
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const session = (peerId: string) =>
    ({ peerId, role: "viewer", dataHost: "10.0.0.1", dataPort: 9000, agent: "test/1" }) as unknown as Session;
  const swarm = (n: number) => {
    const peers: { peerId: string; f: PeerFigures | undefined; local: boolean }[] = [];
    for (let i = 0; i < n; i++) {
      const peerId = `p${rand(1e9).toString(36)}-${i}`;
      const trust = rand(40) === 0 ? { served: 1, failures: 0, strikes: 0, bad: 2, banned: rand(2) === 0 } : undefined;
      const f = rand(3) === 0 ? undefined : { ...NO_FIGURES, downRate: rand(300) * 1000, upRate: rand(4) * 500, trust };
      peers.push({ peerId, f, local: f === undefined || rand(2) === 0 });
    }
    return peers;
  };
  /** The dashboard's order, by a full sort of every peer. */
  const rank = (f: PeerFigures) => (f.trust?.banned ? 0 : (f.trust?.bad ?? 0) > 0 ? 1 : 2);
  const sorted = (peers: ReturnType<typeof swarm>) =>
    [...peers].sort((a, b) => {
      const fa = a.f ?? NO_FIGURES;
      const fb = b.f ?? NO_FIGURES;
      return (
        rank(fa) - rank(fb) ||
        fb.downRate + fb.upRate - (fa.downRate + fa.upRate) ||
        Number(b.local) - Number(a.local) ||
        (a.peerId < b.peerId ? -1 : 1)
      );
    });
  const shown = (peers: ReturnType<typeof swarm>) => {
    const st: StreamFigures = { name: "big.bin", kind: "file", peers: new Map() };
    const sessions = new Map<string, Session>();
    for (const p of peers) {
      if (p.f) st.peers.set(p.peerId, p.f);
      if (p.local) sessions.set(p.peerId, session(p.peerId));
    }
    return topPeers(st, sessions);
  };

  it("are the first 24 of the whole swarm in the dashboard's order (misbehaving, busiest, local, by id), in whatever order the peers came", () => {
    const peers = swarm(5_000);
    const expected = sorted(peers)
      .slice(0, 24)
      .map((p) => p.peerId);
    assert.ok(expected.length === 24 && peers.some((p) => p.f?.trust?.banned));
    for (const [order, list] of [
      ["as they joined", peers],
      ["the best last", sorted(peers).reverse()],
      ["the best first", sorted(peers)],
    ] as const) {
      const got = shown(list);
      assert.deepEqual(
        got.map((p) => p.peerId),
        expected,
        order,
      );
      assert.ok(got[0]!.banned, `${order}: a banned source comes first`);
    }
  });

  it("are every peer of a small swarm, in the same order", () => {
    const peers = swarm(10);
    assert.deepEqual(
      shown(peers).map((p) => p.peerId),
      sorted(peers).map((p) => p.peerId),
    );
  });
});
