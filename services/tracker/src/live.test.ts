import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startChecksum, type RunningChecksum } from "@distribustream/checksum";
import { startDataPlane, type ChunkSource, type RunningDataPlane } from "@distribustream/data-plane";
import {
  LiveVerifier,
  openLiveDescriptor,
  PeerRole,
  PublishStatus,
  RandomAccessScanner,
  Signer,
  StreamKind,
  TrackerClient,
  TransferOutcome,
  WantMode,
  type LivePublish,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore, openSwarmStore, type SwarmStore } from "@distribustream/swarm-store";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { TestPeer } from "./testing/index.js";
import { startTracker, type RunningTracker } from "./index.js";
import { TUNE_IN_WAIT_MS } from "./session.js";

const log = createLogger("live-test", { level: "silent" });
const FIRST = 2 ** 32 - 3;
const WINDOW = 4;
const POLICY: LivePublish = {
  maxChunkBytes: 64 * 1024,
  maxChunkMs: 200,
  bitrate: 0,
  windowChunks: WINDOW,
  nextSeq: FIRST,
};
/** MPEG-TS from its first random access point on (an ffmpeg test pattern). */
const transportStream = (() => {
  const made = spawnSync(
    "ffmpeg",
    ["-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=160x120:duration=1"].concat([
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-f",
      "mpegts",
      "-",
    ]),
    { maxBuffer: 16 << 20 },
  );
  assert.equal(made.status, 0, made.stderr.toString());
  const [point] = new RandomAccessScanner().push(made.stdout);
  return made.stdout.subarray(point!.offset);
})();
/** Chunks FIRST + i that begin at a random access point; FIRST + 2 is claimed so but is not. */
const RANDOM_ACCESS = new Set([1, 4, 8]);
/** What the seeder cut: chunk FIRST + i is held[i]. */
const held = Array.from({ length: 24 }, (_, i) =>
  RANDOM_ACCESS.has(i) ? transportStream.subarray(0, 1000 + i * 37) : randomBytes(1000 + i * 37),
);
const all = Buffer.concat(held);
const offset = (seq: number) => held.slice(0, seq - FIRST).reduce((a, c) => a + c.length, 0);

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m as { values?: { value: number; labels: Record<string, string | number> }[] } | undefined)?.values?.find(
    (x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val),
  );
  return v?.value ?? 0;
}

/**
 * A live broadcast through two tracker replicas sharing one store: the
 * seeder on replica A, the viewer on replica B, the real checksum service
 * reading the seeder's real data plane.
 */
function liveScenario(
  kind: string,
  openStores: () => Promise<{ a: SwarmStore; b: SwarmStore; stop(): Promise<void> }>,
) {
  describe(`live broadcast, seeder and viewer on two replicas (${kind})`, () => {
    const network = Signer.generate();
    const trackerKey = Signer.generate();
    const registryA = new Registry();
    const registryB = new Registry();
    let stores: Awaited<ReturnType<typeof openStores>>;
    let checksum: RunningChecksum;
    let plane: RunningDataPlane;
    let a: RunningTracker;
    let b: RunningTracker;
    let clientA: TrackerClient;
    let clientB: TrackerClient;
    let seederId = "";
    const open: TestPeer[] = [];
    const peer = (c: TrackerClient) => {
      const p = new TestPeer(c);
      open.push(p);
      return p;
    };
    const source: ChunkSource = {
      layout: () => ({
        kind: "live",
        name: "cam",
        span: (r) =>
          r.first >= FIRST && r.last < FIRST + held.length
            ? { start: offset(r.first), end: offset(r.last + 1) }
            : undefined,
      }),
      holds: (_id, r) => r.first >= FIRST && r.last < FIRST + held.length,
      read: (_id, start, end) => Readable.from([all.subarray(start, end)]),
    };
    const name = `live/cam-${kind}`;
    let seeder: TestPeer;
    let viewer: TestPeer;
    let streamId = "";
    let verifier: LiveVerifier;
    const claims = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => ({
        seq: from + i,
        length: held[from + i - FIRST]!.length,
        timestampMs: t0 + (from + i - FIRST) * 200,
        randomAccess: RANDOM_ACCESS.has(from + i - FIRST) || from + i === FIRST + 2,
      }));
    const t0 = Date.now();

    before(async () => {
      stores = await openStores();
      checksum = await startChecksum({ host: "127.0.0.1", port: 0, signer: network, log, registry: new Registry() });
      plane = await startDataPlane({
        host: "127.0.0.1",
        port: 0,
        source,
        identity: () => ({ peerId: seederId, ticketKeys: [trackerKey.publicKey] }),
        log,
      });
      const start = (store: SwarmStore, registry: Registry) =>
        startTracker({
          // protocol doubles with no data plane: the connect-back probe would find none of them
          peerProbe: false,
          host: "127.0.0.1",
          port: 0,
          checksum: `127.0.0.1:${checksum.port}`,
          store,
          ticketSigner: trackerKey,
          chunkSize: 1024,
          log,
          registry,
        });
      a = await start(stores.a, registryA);
      b = await start(stores.b, registryB);
      clientA = new TrackerClient(`127.0.0.1:${a.port}`, grpc.credentials.createInsecure());
      clientB = new TrackerClient(`127.0.0.1:${b.port}`, grpc.credentials.createInsecure());
    });

    after(async () => {
      for (const p of open) p.call.cancel();
      await a.drain();
      await b.drain();
      clientA.close();
      clientB.close();
      await plane.close();
      await checksum.drain();
      await stores.stop();
    });

    it("a live publish is READY with its window, not started yet", async () => {
      seeder = peer(clientA);
      seederId = (await seeder.hello(PeerRole.PEER_ROLE_SEEDER, plane.port)).peerId;
      const ready = await seeder.publish({ name, size: 0, version: 0, live: POLICY });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      streamId = ready.streamId;
      assert.equal(ready.chunkSize, POLICY.maxChunkBytes);
      assert.equal(ready.live?.started, false);
      assert.equal(ready.live?.windowChunks, WINDOW);
      const meta = await stores.a.getStream(streamId);
      assert.equal(meta?.kind, "live");
      assert.equal(meta?.status, "ready");
    });

    it("refuses a live publish with a bad policy, naming the setting", async () => {
      const s = peer(clientA);
      await s.hello(PeerRole.PEER_ROLE_SEEDER, plane.port);
      s.send({
        $case: "publish",
        value: { name: "live/bad", size: 0, version: 0, live: { ...POLICY, windowChunks: 1 } },
      });
      const status = await s.ended;
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
      assert.match(status.details, /live\.window_chunks 1 is outside \[2, /);
    });

    it("a viewer on the other replica joins: Joined with the live descriptor signed by the network key", async () => {
      viewer = peer(clientB);
      await viewer.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      viewer.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, position: FIRST, have: [] } });
      const joined = await viewer.next("joined");
      assert.equal(joined.descriptor?.kind, StreamKind.STREAM_KIND_LIVE);
      assert.equal(joined.descriptor?.streamId, streamId);
      assert.equal(joined.descriptor?.live?.windowChunks, WINDOW);
      assert.equal(joined.manifest, undefined);
      const body = openLiveDescriptor(joined.live!, [network.publicKey]);
      assert.equal(body.firstSeq, FIRST);
      assert.equal(body.attestationKeyId, network.keyId);
      verifier = new LiveVerifier(body, { trusted: [network.publicKey] });
    });

    it("claims become LiveAttested to the seeder and a LiveEdge to the viewer; directives stay within the window", async () => {
      seeder.send({ $case: "liveChunks", value: { streamId, chunks: claims(FIRST, FIRST + 2) } });
      const got = await seeder.next("liveAttested");
      assert.equal(got.streamId, streamId);
      assert.equal(got.attestations.length, 3);
      got.attestations.forEach((att, i) => verifier.accept(verifier.open(att, FIRST + i), held[i]!));
      let edge = await viewer.next("liveEdge");
      while (edge.window!.edge < FIRST + 2) edge = await viewer.next("liveEdge");
      assert.deepEqual(
        { low: edge.window!.low, edge: edge.window!.edge, started: edge.window!.started, ended: edge.window!.ended },
        { low: FIRST, edge: FIRST + 2, started: true, ended: false },
      );
      assert.equal(edge.window!.edgeTimestampMs, t0 + 400);
      assert.equal(edge.window!.chunkMs, 200);
      // attested by the checksum service on the seeder's replica, heard by the viewer's
      assert.deepEqual(edge.window!.randomAccess, [FIRST + 1], "the random access point, not the false claim");
      const d = await viewer.next("directives");
      for (const x of d.directives) {
        assert.ok(x.range!.first >= FIRST && x.range!.last <= FIRST + 2, JSON.stringify(x.range));
        assert.equal(x.source?.peerId, seederId);
      }
      assert.equal(await metric(registryA, "pdtp_tracker_live_chunks_attested_total", { stream: name }), 3);
    });

    it("a viewer joining afresh (position 0, nothing held) is planned from the Position it tunes in at, not the window's low end", async () => {
      const late = peer(clientB);
      await late.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      late.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, position: 0, have: [] } });
      await late.next("joined");
      late.send({ $case: "position", value: { streamId, nextChunk: FIRST + 2 } });
      const d = await late.next("directives");
      assert.ok(d.directives.length > 0);
      for (const x of d.directives)
        assert.ok(x.range!.first >= FIRST + 2, `from the position: ${JSON.stringify(x.range)}`);
      late.close();
      await late.ended;
    });

    it("a viewer joining afresh that never says where it tuned in is planned once the wait is over", async () => {
      const quiet = peer(clientA);
      await quiet.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      quiet.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, position: 0, have: [] } });
      await quiet.next("joined");
      const d = await quiet.next("directives", TUNE_IN_WAIT_MS + 4_000);
      assert.ok(d.directives.length > 0);
      for (const x of d.directives)
        assert.ok(x.range!.first >= FIRST && x.range!.last <= FIRST + 2, JSON.stringify(x.range));
      quiet.close();
      await quiet.ended;
    });

    it("the window moves and stays bounded: nothing below low is kept", async () => {
      seeder.send({ $case: "liveChunks", value: { streamId, chunks: claims(FIRST + 3, FIRST + 9) } });
      let n = 0;
      while (n < 7) n += (await seeder.next("liveAttested")).attestations.length;
      const meta = await stores.b.getStream(streamId);
      assert.equal(meta?.high, FIRST + 9);
      assert.equal(meta?.low, FIRST + 9 - WINDOW + 1);
      const holder = await stores.b.getPeer(streamId, seederId);
      assert.deepEqual(holder?.holdings.ranges(), [{ first: FIRST + 6, last: FIRST + 9 }]);
      const below = await stores.b.availability(streamId, { first: FIRST, last: FIRST + 5 });
      assert.deepEqual(below, []);
      let edge = await viewer.next("liveEdge");
      while (edge.window!.edge < FIRST + 9) edge = await viewer.next("liveEdge");
      assert.equal(edge.window!.low, FIRST + 6);
      assert.deepEqual(edge.window!.randomAccess, [FIRST + 8], "only those within the window");
      const described = await new Promise<{ live?: { randomAccess: number[] } }>((resolve, reject) =>
        clientB.describeStream({ name, streamId: "" }, (e, r) => (e ? reject(e) : resolve(r!))),
      );
      assert.deepEqual(described.live?.randomAccess, [FIRST + 8], "DescribeStream on the other replica too");
    });

    it("a viewer's rejected chunks are counted per stream and reason; unknown reasons are ignored", async () => {
      viewer.send({
        $case: "position",
        value: {
          streamId,
          nextChunk: FIRST,
          live: { delaysMs: [120], skipped: 0, rejected: { replayed: 2, "bad-data": 1, "no-such-reason": 7 } },
        },
      });
      const counted = () =>
        metric(registryB, "pdtp_tracker_live_chunks_rejected_total", { stream: name, reason: "replayed" });
      for (let i = 0; i < 100 && (await counted()) < 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await counted(), 2);
      assert.equal(
        await metric(registryB, "pdtp_tracker_live_chunks_rejected_total", { stream: name, reason: "bad-data" }),
        1,
      );
      const all = (await registryB.getMetricsAsJSON()).find(
        (m) => m.name === "pdtp_tracker_live_chunks_rejected_total",
      );
      const reasons = (all as { values: { labels: { reason?: string } }[] }).values.map((v) => v.labels.reason);
      assert.ok(!reasons.includes("no-such-reason"), `reasons: ${reasons.join(",")}`);
    });

    it("a 416 from the live seeder (its attestations still on their way) is retried, never a ban", async () => {
      const banned = () => metric(registryB, "pdtp_tracker_sources_banned_total", { reason: "bad_data" });
      const before = await banned();
      for (let refused = 0; refused < 4;) {
        const fromSeeder = (await viewer.next("directives")).directives.filter((d) => d.source?.peerId === seederId);
        viewer.send({
          $case: "reports",
          value: {
            reports: fromSeeder.map((d) => ({
              transferId: d.transferId,
              outcome: TransferOutcome.TRANSFER_OUTCOME_REFUSED,
              bytes: 0,
              durationMs: 1,
              detail: "peer answered 416: range not held",
              httpStatus: 416,
              verified: [],
            })),
          },
        });
        refused += fromSeeder.length;
      }
      const again = (await viewer.next("directives")).directives;
      assert.ok(
        again.some((d) => d.source?.peerId === seederId),
        "the seeder is still directed to: it is the broadcast's only source",
      );
      assert.equal(await banned(), before);
    });

    it("a claim out of sequence gets a Notice, and the session goes on", async () => {
      seeder.send({ $case: "liveChunks", value: { streamId, chunks: claims(FIRST + 12, FIRST + 12) } });
      const n = await seeder.next("notice");
      assert.match(n.message, new RegExp(`chunk ${FIRST + 12} claimed where chunk ${FIRST + 10} was expected`));
    });

    it("a seeder restarted with the same settings continues the same stream at edge + 1", async () => {
      seeder.call.cancel();
      await seeder.ended;
      seeder = peer(clientA);
      seederId = (await seeder.hello(PeerRole.PEER_ROLE_SEEDER, plane.port)).peerId;
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, nextSeq: 0 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.equal(ready.streamId, streamId);
      assert.equal(ready.live?.started, true);
      assert.equal(ready.live?.edge, FIRST + 9);
      seeder.send({ $case: "liveChunks", value: { streamId, chunks: claims(FIRST + 10, FIRST + 11) } });
      assert.equal((await seeder.next("liveAttested")).attestations.length, 2);
      assert.equal((await stores.a.getStream(streamId))?.high, FIRST + 11);
    });

    it("Unpublish ends the broadcast: the viewer gets a LiveEdge with ended and the last chunk as edge", async () => {
      seeder.send({ $case: "liveChunks", value: { streamId, chunks: claims(FIRST + 12, FIRST + 13) } });
      seeder.send({ $case: "unpublish", value: { name } });
      let edge = await viewer.next("liveEdge");
      while (!edge.window!.ended) edge = await viewer.next("liveEdge");
      assert.equal(edge.window!.edge, FIRST + 13);
      const meta = await stores.a.getStream(streamId);
      assert.equal(meta?.kind === "live" && meta.ended, true);
    });

    it("other settings make a new stream id, and the name points at it", async () => {
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, windowChunks: 8 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.notEqual(ready.streamId, streamId);
      assert.equal(await stores.b.streamIdByName(name), ready.streamId);
      const described = await new Promise<{ live?: { windowChunks: number } }>((resolve, reject) =>
        clientB.describeStream({ name, streamId: "" }, (e, r) => (e ? reject(e) : resolve(r!))),
      );
      assert.equal(described.live?.windowChunks, 8);
    });

    it("one seeder per live name across replicas: another data address is refused until the first seeder's session ends", async () => {
      const other = peer(clientB);
      await other.hello(PeerRole.PEER_ROLE_SEEDER, plane.port + 1);
      const refused = await other.publish({ name, size: 0, version: 0, live: POLICY });
      assert.equal(refused.status, PublishStatus.PUBLISH_STATUS_REJECTED);
      assert.match(refused.detail, /is being broadcast by another seeder/);
      seeder.call.cancel();
      await seeder.ended;
      let ready = refused;
      for (let i = 0; i < 50 && ready.status !== PublishStatus.PUBLISH_STATUS_READY; i++) {
        await new Promise((r) => setTimeout(r, 50));
        ready = await other.publish({ name, size: 0, version: 0, live: POLICY });
      }
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
    });
  });
}

liveScenario("memory", async () => {
  const store = new MemorySwarmStore();
  return { a: store, b: store, stop: () => store.close() };
});

let redis: TestRedis | undefined;
liveScenario("redis", async () => {
  redis = await redisForTests();
  const prefix = `live-${randomUUID().slice(0, 8)}`;
  const a = await openSwarmStore(redis.url, { prefix });
  const b = await openSwarmStore(redis.url, { prefix });
  return {
    a,
    b,
    stop: async () => {
      await a.close();
      await b.close();
      await redis?.stop();
    },
  };
});
