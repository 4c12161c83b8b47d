import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { startChecksum, type RunningChecksum } from "@distribustream/checksum";
import { startDataPlane, type ChunkSource, type RunningDataPlane } from "@distribustream/data-plane";
import {
  chunkCount,
  PeerRole,
  PublishStatus,
  Signer,
  StreamKind,
  streamIdFor,
  TrackerClient,
  TransferOutcome,
  WantMode,
  type LivePublish,
  type StreamDescriptor,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore, openSwarmStore, type SwarmStore } from "@distribustream/swarm-store";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { TestPeer } from "./testing/index.js";
import { startTracker, type RunningTracker } from "./index.js";

const log = createLogger("live-to-file-test", { level: "silent" });
const FIRST = 1000;
const CHUNK = 1024;
const POLICY: LivePublish = { maxChunkBytes: 4096, maxChunkMs: 200, bitrate: 0, windowChunks: 8, nextSeq: FIRST };
/** What the seeder cut: chunk FIRST + i is held[i]; the recording is all of them. */
const held = Array.from({ length: 12 }, (_, i) => randomBytes(900 + i * 31));
const recording = Buffer.concat(held);
const offset = (seq: number) => held.slice(0, seq - FIRST).reduce((a, c) => a + c.length, 0);

/**
 * A live broadcast that ends and becomes a file of the same name (its
 * recording), then a new broadcast of the name: through two tracker replicas
 * sharing one store, with the real checksum service reading the seeder's
 * real data plane.
 */
function liveToFile(kind: string, openStores: () => Promise<{ a: SwarmStore; b: SwarmStore; stop(): Promise<void> }>) {
  describe(`a live name that ends and becomes its recording, on two replicas (${kind})`, () => {
    const network = Signer.generate();
    const trackerKey = Signer.generate();
    const name = `show-${kind}.ts`;
    const version = Date.now();
    const fileStreamId = streamIdFor(name, recording.length, version);
    // the next broadcast's recording (here the same bytes, written later)
    const secondFileId = streamIdFor(name, recording.length, version + 1);
    let stores: Awaited<ReturnType<typeof openStores>>;
    let checksum: RunningChecksum;
    let plane: RunningDataPlane;
    let a: RunningTracker;
    let b: RunningTracker;
    let clientA: TrackerClient;
    let clientB: TrackerClient;
    const open: TestPeer[] = [];
    const serverIds = new Set<string>();
    const peer = (c: TrackerClient) => {
      const p = new TestPeer(c);
      open.push(p);
      return p;
    };
    const seederOn = async (c: TrackerClient) => {
      const s = peer(c);
      serverIds.add((await s.hello(PeerRole.PEER_ROLE_SEEDER, plane.port)).peerId);
      return s;
    };
    // the seeder's data plane: the live chunks of any broadcast, and the recording as a file
    const source: ChunkSource = {
      layout: (streamId) =>
        streamId === fileStreamId || streamId === secondFileId
          ? { size: recording.length, chunkSize: CHUNK, chunkCount: chunkCount(recording.length, CHUNK), name }
          : {
              kind: "live",
              name,
              span: (r) =>
                r.first >= FIRST && r.last < FIRST + held.length
                  ? { start: offset(r.first), end: offset(r.last + 1) }
                  : undefined,
            },
      holds: () => true,
      read: (_id, start, end) => Readable.from([recording.subarray(start, end)]),
    };
    const claims = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => ({
        seq: from + i,
        length: held[from + i - FIRST]!.length,
        timestampMs: Date.now(),
        randomAccess: false,
      }));
    const describeOn = (c: TrackerClient) =>
      new Promise<StreamDescriptor>((resolve, reject) =>
        c.describeStream({ name, streamId: "" }, (e, r) => (e ? reject(e) : resolve(r!))),
      );
    const attest = async (s: TestPeer, streamId: string, from: number, to: number) => {
      s.send({ $case: "liveChunks", value: { streamId, chunks: claims(from, to) } });
      for (let n = 0; n < to - from + 1;) n += (await s.next("liveAttested")).attestations.length;
    };

    let seeder: TestPeer;
    let viewer: TestPeer;
    let liveId = "";

    before(async () => {
      stores = await openStores();
      checksum = await startChecksum({ host: "127.0.0.1", port: 0, signer: network, log, registry: new Registry() });
      plane = await startDataPlane({
        host: "127.0.0.1",
        port: 0,
        source,
        // every seeder session of the test serves from this one data plane
        identity: () => ({ peerId: [...serverIds].at(-1) ?? "", ticketKeys: [trackerKey.publicKey] }),
        log,
      });
      const start = (store: SwarmStore) =>
        startTracker({
          // protocol doubles with no data plane: the connect-back probe would find none of them
          peerProbe: false,
          host: "127.0.0.1",
          port: 0,
          checksum: `127.0.0.1:${checksum.port}`,
          store,
          ticketSigner: trackerKey,
          chunkSize: CHUNK,
          log,
          registry: new Registry(),
        });
      a = await start(stores.a);
      b = await start(stores.b);
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

    it("the broadcast runs on replica A and ends; its viewer on replica B hears the end", async () => {
      seeder = await seederOn(clientA);
      const ready = await seeder.publish({ name, size: 0, version: 0, live: POLICY });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      liveId = ready.streamId;
      viewer = peer(clientB);
      await viewer.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      viewer.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, position: FIRST, have: [] } });
      assert.equal((await viewer.next("joined")).descriptor?.kind, StreamKind.STREAM_KIND_LIVE);
      await attest(seeder, liveId, FIRST, FIRST + 5);
      seeder.send({ $case: "unpublish", value: { name } });
      let edge = await viewer.next("liveEdge");
      while (!edge.window!.ended) edge = await viewer.next("liveEdge");
      assert.equal(edge.window!.edge, FIRST + 5);
    });

    it("the seeder publishes the recording under the same name: READY, and the name is a file on both replicas", async () => {
      const ready = await seeder.publish({ name, size: recording.length, version });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.equal(ready.streamId, fileStreamId);
      for (const c of [clientA, clientB]) {
        const d = await describeOn(c);
        assert.equal(d.kind, StreamKind.STREAM_KIND_ON_DEMAND);
        assert.equal(d.streamId, fileStreamId);
        assert.equal(d.size, recording.length);
      }
      // a new viewer joining the name gets the file: its signed manifest, and the seeder to fetch from
      const late = peer(clientB);
      await late.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      late.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, position: 0, have: [] } });
      const joined = await late.next("joined");
      assert.equal(joined.descriptor?.kind, StreamKind.STREAM_KIND_ON_DEMAND);
      assert.ok(joined.manifest, "a file's manifest");
      const d = await late.next("directives");
      assert.equal(d.directives[0]!.streamId, fileStreamId);
    });

    it("the live viewer still watching is not retired: it is still directed to the ended broadcast's chunks", async () => {
      // it gives up the transfers it was directed to before the name became a file: they are planned again
      const given = viewer.inbox.flatMap((m) => (m.$case === "directives" ? m.value.directives : []));
      viewer.inbox.splice(0);
      assert.ok(given.length > 0, "directed to the broadcast's chunks while it ran");
      const cancelled = TransferOutcome.TRANSFER_OUTCOME_CANCELLED;
      viewer.send({
        $case: "reports",
        value: {
          reports: given.map((x) => ({
            transferId: x.transferId,
            outcome: cancelled,
            bytes: 0,
            durationMs: 0,
            detail: "",
            verified: [],
            httpStatus: 0,
          })),
        },
      });
      const d = await viewer.next("directives");
      assert.ok(d.directives.length > 0);
      for (const x of d.directives) {
        assert.equal(x.streamId, liveId);
        assert.ok(x.range!.first >= FIRST && x.range!.last <= FIRST + 5, JSON.stringify(x.range));
      }
      assert.ok(!viewer.inbox.some((m) => m.$case === "retired"), "not told the stream was retired");
    });

    let nextId = "";
    it("a new broadcast of the name after the end is a new stream, and the name is live again", async () => {
      seeder.call.cancel();
      await seeder.ended;
      seeder = await seederOn(clientA);
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, nextSeq: FIRST + 6 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      nextId = ready.streamId;
      assert.notEqual(nextId, liveId, "not the ended broadcast");
      assert.equal(ready.live?.started, false);
      assert.equal(ready.live?.ended, false);
      assert.equal(await stores.b.streamIdByName(name), nextId);
      const d = await describeOn(clientB);
      assert.equal(d.kind, StreamKind.STREAM_KIND_LIVE);
      assert.equal(d.live?.ended, false);
      await attest(seeder, nextId, FIRST + 6, FIRST + 8);
    });

    it("a seeder restarted mid-broadcast continues the new broadcast at its edge + 1", async () => {
      seeder.call.cancel();
      await seeder.ended;
      seeder = await seederOn(clientB);
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, nextSeq: 0 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.equal(ready.streamId, nextId);
      assert.equal(ready.live?.started, true);
      assert.equal(ready.live?.edge, FIRST + 8);
    });

    it("a seeder restarted after cutting chunks that were never attested continues after them, as it says", async () => {
      // chunk FIRST + 9 was cut and claimed, but the session ended before its attestation
      seeder.send({ $case: "liveChunks", value: { streamId: nextId, chunks: claims(FIRST + 9, FIRST + 9) } });
      seeder.call.cancel();
      await seeder.ended;
      seeder = await seederOn(clientA);
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, nextSeq: FIRST + 10 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.equal(ready.streamId, nextId);
      assert.equal(ready.live?.edge, FIRST + 8);
      await attest(seeder, nextId, FIRST + 10, FIRST + 10);
      assert.ok(!seeder.inbox.some((m) => m.$case === "notice"), JSON.stringify(seeder.inbox));
      assert.equal((await stores.b.getStream(nextId))?.high, FIRST + 10);
    });

    it("after that one ended and the name became a file again, the next broadcast is a third stream", async () => {
      seeder.send({ $case: "unpublish", value: { name } });
      const file = await seeder.publish({ name, size: recording.length, version: version + 1 });
      assert.equal(file.status, PublishStatus.PUBLISH_STATUS_READY, file.detail);
      assert.equal(await stores.a.streamIdByName(name), secondFileId);
      seeder.call.cancel();
      await seeder.ended;
      seeder = await seederOn(clientA);
      const ready = await seeder.publish({ name, size: 0, version: 0, live: { ...POLICY, nextSeq: FIRST + 11 } });
      assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
      assert.ok(![liveId, nextId].includes(ready.streamId), "neither of the ended broadcasts");
      assert.equal(ready.live?.started, false);
      assert.equal(await stores.b.streamIdByName(name), ready.streamId);
    });
  });
}

liveToFile("memory", async () => {
  const store = new MemorySwarmStore();
  return { a: store, b: store, stop: () => store.close() };
});

let redis: TestRedis | undefined;
liveToFile("redis", async () => {
  redis = await redisForTests();
  const prefix = `live-file-${randomUUID().slice(0, 8)}`;
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
