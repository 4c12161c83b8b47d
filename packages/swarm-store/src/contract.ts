import assert from "node:assert/strict";
import { describe, it, beforeEach, afterEach } from "node:test";
import type { ChunkRange } from "@distribustream/pdtp";
import type {
  AddTransferResult,
  NewFileStream,
  NewLiveStream,
  PeerJoin,
  SettledTransfer,
  Settlement,
  SlotLimits,
  StreamEvent,
  SwarmStore,
  TransferRecord,
  TransferSettlement,
  TrustPolicy,
} from "./store.js";
import type { FleetEvent } from "./fleet.js";

/**
 * The SwarmStore conformance suite (chihaya's storage tests): every
 * implementation must pass it. `makeStore` gives a fresh, empty store for each
 * test; the suite closes it afterwards. Imported from
 * "@distribustream/swarm-store/contract" (it needs node:test), never from the
 * production entry point.
 */
export function swarmStoreContract(name: string, makeStore: () => Promise<SwarmStore>): void {
  describe(`SwarmStore contract: ${name}`, () => {
    let store: SwarmStore;
    beforeEach(async () => {
      store = await makeStore();
    });
    afterEach(async () => {
      await store.close();
    });

    const stream = (over: Partial<NewFileStream> = {}): NewFileStream => ({
      streamId: "s1",
      name: "movies/a.mp4",
      size: 10 * 1024 + 5,
      chunkSize: 1024,
      version: 1,
      kind: "file",
      createdMs: 1000,
      ...over,
    });
    const peer = (peerId: string, over: Partial<PeerJoin> = {}): PeerJoin => ({
      peerId,
      host: "10.0.0.1",
      port: 8000,
      role: "viewer",
      mode: "in_order",
      position: 0,
      have: [],
      ...over,
    });
    const limits: SlotLimits = { maxDownloads: 2, maxUploadsPeer: 2, maxUploadsSeeder: 3 };
    const policy: TrustPolicy = { banAfterBad: 3, banAfterStrikes: 3 };
    let nextId = 1;
    const transfer = (fetcherId: string, serverId: string, range: ChunkRange, over: Partial<TransferRecord> = {}) => ({
      transferId: nextId++,
      streamId: "s1",
      fetcherId,
      serverId,
      serverRole: "viewer" as const,
      range,
      startedMs: 0,
      expiresMs: 10_000,
      ...over,
    });
    const counts = async (first: number, last: number) =>
      (await store.availability("s1", { first, last })).map((s) => [s.first, s.last, s.count]);

    it("creates a stream once, accepted, with its chunk count", async () => {
      const m = await store.createStream(stream());
      assert.equal(m.status, "accepted");
      assert.ok(m.kind === "file");
      assert.equal(m.chunkCount, 11);
      assert.equal(await store.getManifest("s1"), undefined);
      const again = await store.createStream(stream({ name: "other" }));
      assert.equal(again.name, "movies/a.mp4", "an existing stream is not changed");
      assert.deepEqual(await store.getStream("s1"), m);
      assert.equal(await store.getStream("nope"), undefined);
      assert.equal(await store.streamIdByName("movies/a.mp4"), undefined, "not ready yet");
      assert.deepEqual(await store.listStreams(), []);
      assert.equal(await store.streamCount(), 0);
    });

    it("an empty file has no chunks", async () => {
      const m = await store.createStream(stream({ size: 0 }));
      assert.ok(m.kind === "file");
      assert.equal(m.chunkCount, 0);
      assert.deepEqual(await store.availability("s1", { first: 0, last: 10 }), []);
    });

    it("markReady stores the manifest, points the name and replaces an older version", async () => {
      await store.createStream(stream());
      assert.deepEqual(await store.markReady("s1", Uint8Array.of(1, 2, 3), 5000), { replaced: undefined });
      const m = await store.getStream("s1");
      assert.equal(m?.status, "ready");
      assert.deepEqual([...((await store.getManifest("s1")) ?? [])], [1, 2, 3]);
      assert.equal("manifest" in (m ?? {}), false, "the meta does not carry the manifest");
      assert.equal(m?.readyMs, 5000);
      assert.equal(await store.streamIdByName("movies/a.mp4"), "s1");

      await store.createStream(stream({ streamId: "s2", version: 2 }));
      await store.createStream(stream({ streamId: "s3", name: "b" }));
      await store.markReady("s3", Uint8Array.of(9), 5000);
      assert.deepEqual(await store.markReady("s2", Uint8Array.of(4), 6000), { replaced: "s1" });
      assert.equal(await store.streamIdByName("movies/a.mp4"), "s2");
      assert.deepEqual(
        (await store.listStreams()).map((s) => s.streamId),
        ["s3", "s2"],
      );
      assert.equal(await store.streamCount(), 2);
      assert.equal((await store.getStream("s1"))?.status, "ready", "the old version stays for its peers");
      await assert.rejects(store.markReady("nope", Uint8Array.of(1), 0));
    });

    it("stores hash pieces as they come, raising the hashed frontier and the epoch", async () => {
      await store.createStream(stream());
      assert.equal((await store.getStream("s1"))?.hashedChunks, 0);
      assert.equal((await store.getStream("s1"))?.failure, "");
      const epoch = await store.streamEpoch("s1");
      assert.equal(await store.putHashPiece("s1", 0, Uint8Array.of(0, 0xff), 4), true);
      await store.markReady("s1", Uint8Array.of(1), 1);
      assert.ok((await store.streamEpoch("s1")) > epoch, "fetchers waiting for hashes are replanned");
      assert.equal((await store.getStream("s1"))?.hashedChunks, 4);
      assert.equal((await store.fetcherView("s1", "nobody")).hashedChunks, 4);
      const big = new Uint8Array(64 * 1024).map((_, i) => i % 251);
      assert.equal(await store.putHashPiece("s1", 1, big, 8), true);
      assert.equal(await store.putHashPiece("s1", 0, Uint8Array.of(0, 0xff), 4), true, "a piece stored again");
      assert.equal((await store.getStream("s1"))?.hashedChunks, 8, "the frontier never goes back");
      assert.equal(await store.putHashPiece("s1", 3, Uint8Array.of(3), 11), true);
      const pieces = await store.getHashPieces("s1", 0, 10);
      assert.equal(pieces.length, 2, "consecutive pieces only: piece 2 is missing");
      assert.deepEqual([...pieces[0]!], [0, 0xff]);
      assert.ok(Buffer.from(pieces[1]!).equals(Buffer.from(big)), "bytes come back intact");
      assert.deepEqual(
        (await store.getHashPieces("s1", 3, 1)).map((p) => [...p]),
        [[3]],
      );
      assert.deepEqual(await store.getHashPieces("s1", 2, 2), []);
      assert.deepEqual(await store.getHashPieces("nope", 0, 2), []);
      assert.equal(await store.putHashPiece("nope", 0, Uint8Array.of(1), 1), false);
    });

    it("failStream keeps a failed stream with its reason, drops its pieces and its name", async () => {
      await store.createStream(stream());
      await store.putHashPiece("s1", 0, Uint8Array.of(1), 4);
      await store.markReady("s1", Uint8Array.of(1), 1);
      await store.joinPeer("s1", peer("a"), 0);
      const epoch = await store.streamEpoch("s1");
      await store.failStream("s1", "source went away");
      await store.failStream("nope", "x");
      const m = await store.getStream("s1");
      assert.equal(m?.status, "failed");
      assert.equal(m?.failure, "source went away");
      const view = await store.fetcherView("s1", "a");
      assert.equal(view.failure, "source went away");
      assert.ok(view.epoch > epoch);
      assert.ok(view.peer, "its peers stay until they leave");
      assert.deepEqual(await store.getHashPieces("s1", 0, 1), []);
      assert.equal(await store.putHashPiece("s1", 1, Uint8Array.of(1), 8), false, "nothing more is stored");
      assert.equal(await store.streamIdByName("movies/a.mp4"), undefined);
      assert.deepEqual(await store.listStreams(), []);
      await store.removeStream("s1");
      assert.equal(await store.getStream("s1"), undefined);
    });

    it("retireStreams forgets a stream once nobody was in it for the grace period", async () => {
      const grace = 60_000;
      await store.createStream(stream());
      await store.markReady("s1", Uint8Array.of(1), 1000);
      await store.putHashPiece("s1", 0, Uint8Array.of(1), 4);
      await store.joinPeer("s1", peer("seed", { role: "seeder" }), 1000);
      let t = 1000 + grace;
      assert.deepEqual(await store.retireStreams(t, grace), [], "a stream with a seeder stays");
      await store.leavePeer("s1", "seed");
      t += grace;
      assert.deepEqual(await store.retireStreams(t, grace), [], "first seen empty: the grace starts");
      t += grace - 1;
      assert.deepEqual(await store.retireStreams(t, grace), [], "within the grace it stays");
      assert.equal(await store.streamIdByName("movies/a.mp4"), "s1");
      t += 1;
      assert.deepEqual(await store.retireStreams(t, grace), ["s1"]);
      assert.equal(await store.getStream("s1"), undefined);
      assert.equal(await store.streamIdByName("movies/a.mp4"), undefined);
      assert.equal(await store.getManifest("s1"), undefined);
      assert.deepEqual(await store.getHashPieces("s1", 0, 1), []);
      assert.equal(await store.streamCount(), 0);
      assert.deepEqual(await store.retireStreams(t + 10 * grace, grace), [], "retired once");
      // published again afterwards: a fresh stream, joinable
      await store.createStream(stream({ createdMs: t }));
      await store.markReady("s1", Uint8Array.of(2), t);
      assert.equal((await store.joinPeer("s1", peer("seed", { role: "seeder" }), t)).joined, true);
      assert.deepEqual(await store.retireStreams(t + 3 * grace, grace), []);
      assert.equal(await store.streamIdByName("movies/a.mp4"), "s1");
    });

    it("retireStreams restarts the grace when a peer came and went meanwhile", async () => {
      const grace = 60_000;
      await store.createStream(stream());
      await store.markReady("s1", Uint8Array.of(1), 1000);
      let t = 1000 + grace;
      assert.deepEqual(await store.retireStreams(t, grace), [], "first seen empty");
      await store.joinPeer("s1", peer("a"), t);
      await store.leavePeer("s1", "a");
      t += grace;
      assert.deepEqual(await store.retireStreams(t, grace), [], "the join moved the epoch: seen empty afresh");
      t += grace;
      assert.deepEqual(await store.retireStreams(t, grace), ["s1"]);
      // a name pointing at a newer version is left alone
      await store.createStream(stream({ createdMs: t }));
      await store.markReady("s1", Uint8Array.of(1), t);
      await store.createStream(stream({ streamId: "s2", version: 2, createdMs: t }));
      await store.markReady("s2", Uint8Array.of(1), t);
      await store.joinPeer("s2", peer("b"), t);
      await store.retireStreams(t + grace, grace);
      assert.deepEqual(await store.retireStreams(t + 2 * grace, grace), ["s1"]);
      assert.equal(await store.streamIdByName("movies/a.mp4"), "s2");
      assert.ok(await store.getStream("s2"));
    });

    it("removeStream forgets the stream and its name", async () => {
      await store.createStream(stream());
      await store.markReady("s1", Uint8Array.of(1), 1);
      await store.putHashPiece("s1", 0, Uint8Array.of(1), 4);
      await store.joinPeer("s1", peer("a"), 0);
      await store.removeStream("s1");
      await store.removeStream("s1");
      assert.equal(await store.getStream("s1"), undefined);
      assert.equal(await store.streamIdByName("movies/a.mp4"), undefined);
      assert.equal(await store.getPeer("s1", "a"), undefined);
      assert.deepEqual(await store.listStreams(), []);
      assert.equal(await store.streamCount(), 0);
      assert.equal(await store.getManifest("s1"), undefined);
      assert.deepEqual(await store.getHashPieces("s1", 0, 1), []);
    });

    it("joins peers, counts viewers and seeders, and ignores unknown streams", async () => {
      assert.deepEqual(await store.joinPeer("s1", peer("a"), 0), { joined: false, dropped: [] });
      await store.createStream(stream());
      assert.deepEqual(await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 3 }] }), 100), {
        joined: true,
        dropped: [],
      });
      assert.equal(
        (await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 100)).joined,
        true,
      );
      assert.deepEqual(await store.peerCounts("s1"), { peers: 1, seeders: 1 });
      assert.deepEqual(await store.peerCounts("nope"), { peers: 0, seeders: 0 });
      const a = await store.getPeer("s1", "a");
      assert.equal(a?.holdings.toString(), "0-3");
      assert.equal(a?.lastSeenMs, 100);
      assert.equal(a?.downloads, 0);
      assert.equal(a?.banned, false);
      assert.deepEqual(await counts(0, 10), [
        [0, 3, 1],
        [4, 10, 0],
      ]);
    });

    it("rejoining replaces the record and its holdings, and resolves the transfers it drops", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 5 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      const t = transfer("b", "a", { first: 0, last: 1 });
      assert.equal(await store.addTransfer(t, limits), "ok");
      const again = await store.joinPeer("s1", peer("a", { have: [{ first: 8, last: 9 }], mode: "bulk" }), 1);
      assert.equal(again.joined, true);
      assert.deepEqual(
        again.dropped.map((x) => x.transferId),
        [t.transferId],
      );
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 0);
      assert.deepEqual(await store.transfersOf("s1", "b"), []);
      await store.leavePeer("s1", "b");
      assert.equal((await store.getPeer("s1", "a"))?.holdings.toString(), "8-9");
      assert.equal((await store.getPeer("s1", "a"))?.mode, "bulk");
      assert.deepEqual(await store.peerCounts("s1"), { peers: 1, seeders: 0 });
      assert.deepEqual(await counts(0, 10), [
        [0, 7, 0],
        [8, 9, 1],
        [10, 10, 0],
      ]);
    });

    it("addHoldings counts only new chunks and keeps availability exact", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 2, last: 3 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      assert.equal(await store.addHoldings("s1", "a", [{ first: 0, last: 5 }]), 4);
      assert.equal(await store.addHoldings("s1", "a", [{ first: 0, last: 5 }]), 0);
      assert.equal(await store.addHoldings("s1", "b", [{ first: 4, last: 10 }]), 7);
      assert.equal(await store.addHoldings("s1", "ghost", [{ first: 4, last: 4 }]), 0);
      assert.deepEqual(await counts(0, 10), [
        [0, 3, 1],
        [4, 5, 2],
        [6, 10, 1],
      ]);
      assert.deepEqual(await counts(3, 4), [
        [3, 3, 1],
        [4, 4, 2],
      ]);
    });

    it("seeder holdings are not counted in availability", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.addHoldings("s1", "s", [{ first: 0, last: 10 }]);
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
    });

    it("peers that serve nobody (port 0) are not counted, as holders or as fetchers", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("leech", { port: 0, have: [{ first: 0, last: 3 }] }), 0);
      await store.addHoldings("s1", "leech", [{ first: 4, last: 5 }]);
      const t = transfer("leech", "s", { first: 6, last: 7 }, { serverRole: "seeder" });
      assert.equal(await store.addTransfer(t, limits), "ok");
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
      await store.takeTransfer("s1", t.transferId);
      await store.leavePeer("s1", "leech");
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
    });

    it("leavePeer removes holdings and every transfer from or to the peer", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      await store.joinPeer("s1", peer("c"), 0);
      const t1 = transfer("b", "a", { first: 0, last: 1 });
      const t2 = transfer("c", "a", { first: 2, last: 3 });
      const t3 = transfer("a", "b", { first: 5, last: 5 });
      await store.addHoldings("s1", "b", [{ first: 5, last: 5 }]);
      for (const t of [t1, t2, t3]) assert.equal(await store.addTransfer(t, limits), "ok");
      const dropped = await store.leavePeer("s1", "a");
      assert.deepEqual(dropped.map((t) => t.transferId).sort(), [t1.transferId, t2.transferId, t3.transferId].sort());
      assert.equal(await store.getPeer("s1", "a"), undefined);
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 0);
      assert.equal((await store.getPeer("s1", "b"))?.uploads, 0);
      assert.deepEqual(await counts(0, 10), [
        [0, 4, 0],
        [5, 5, 1],
        [6, 10, 0],
      ]);
      assert.deepEqual(await store.leavePeer("s1", "a"), []);
      assert.deepEqual(await store.leavePeer("nope", "a"), []);
    });

    it("addTransfer enforces presence, bans and slot limits atomically", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      for (const f of ["f1", "f2", "f3", "f4"]) await store.joinPeer("s1", peer(f), 0);
      assert.equal(await store.addTransfer(transfer("f1", "ghost", { first: 0, last: 0 }), limits), "unknown-peer");
      assert.equal(await store.addTransfer(transfer("ghost", "a", { first: 0, last: 0 }), limits), "unknown-peer");
      assert.equal(await store.addTransfer(transfer("f1", "a", { first: 0, last: 0 }), limits), "ok");
      assert.equal(await store.addTransfer(transfer("f1", "a", { first: 1, last: 1 }), limits), "ok");
      assert.equal(await store.addTransfer(transfer("f1", "s", { first: 2, last: 2 }), limits), "fetcher-busy");
      assert.equal(await store.addTransfer(transfer("f2", "a", { first: 2, last: 2 }), limits), "server-busy");
      // a seeder has its own, larger limit
      for (const f of ["f2", "f3", "f4"]) {
        assert.equal(
          await store.addTransfer(transfer(f, "s", { first: 3, last: 3 }, { serverRole: "seeder" }), limits),
          "ok",
        );
      }
      assert.equal(
        await store.addTransfer(transfer("f4", "s", { first: 4, last: 4 }, { serverRole: "seeder" }), limits),
        "server-busy",
      );
      const a = await store.getPeer("s1", "a");
      assert.equal(a?.uploads, 2);
      assert.equal((await store.getPeer("s1", "f1"))?.downloads, 2);
      // availability counts viewers' holdings (a) plus copies in flight
      assert.deepEqual(await counts(0, 4), [
        [0, 1, 2],
        [2, 2, 1],
        [3, 3, 4],
        [4, 4, 1],
      ]);
      for (let i = 0; i < 3; i++) await store.recordSourceOutcome("s1", "s", "bad_data", policy);
      assert.equal(await store.addTransfer(transfer("f4", "s", { first: 5, last: 5 }), limits), "banned");
    });

    it("takeTransfer frees slots and availability once", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      const t = transfer("b", "a", { first: 2, last: 4 });
      await store.addTransfer(t, limits);
      assert.deepEqual(
        (await store.transfersOf("s1", "b")).map((x) => x.transferId),
        [t.transferId],
      );
      assert.deepEqual(await store.transfersOf("s1", "a"), []);
      assert.deepEqual(await store.fetcherView("s1", "b"), {
        epoch: await store.streamEpoch("s1"),
        low: 0,
        high: 10,
        hashedChunks: 0,
        failure: "",
        peer: await store.getPeer("s1", "b"),
        transfers: [t],
      });
      assert.deepEqual(await store.fetcherView("s1", "nobody"), {
        epoch: await store.streamEpoch("s1"),
        low: 0,
        high: 10,
        hashedChunks: 0,
        failure: "",
        peer: undefined,
        transfers: [],
      });
      assert.equal(await store.takeTransfer("s1", t.transferId, "a"), undefined, "a serves it, b fetches it");
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 1, "a wrong fetcher changes nothing");
      const got = await store.takeTransfer("s1", t.transferId, "b");
      assert.deepEqual(got, t);
      assert.equal(await store.takeTransfer("s1", t.transferId), undefined);
      assert.equal(await store.takeTransfer("nope", t.transferId), undefined);
      assert.equal((await store.getPeer("s1", "a"))?.uploads, 0);
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 0);
      assert.deepEqual(await counts(0, 10), [[0, 10, 1]]);
      assert.deepEqual(await store.transfersOf("s1", "b"), []);
    });

    it("settleTransfer leaves the stream as takeTransfer, addHoldings and recordSourceOutcome in a row would", async () => {
      const banAtOnce: TrustPolicy = { banAfterBad: 1, banAfterStrikes: 1 };
      const cases: [string, TransferSettlement, TrustPolicy][] = [
        ["the whole range, ok", { outcome: "ok" }, policy],
        [
          "part of it, failed",
          {
            verified: [
              { first: 0, last: 2 },
              { first: 4, last: 4 },
              { first: 9, last: 10 },
            ],
            outcome: "failed",
          },
          policy,
        ],
        ["nothing, bad data that bans the server", { verified: [], outcome: "bad_data" }, banAtOnce],
        ["the whole range, cancelled", {}, policy],
      ];
      const within = (range: ChunkRange, verified: readonly ChunkRange[] | undefined) =>
        (verified ?? [range])
          .map((v) => ({ first: Math.max(v.first, range.first), last: Math.min(v.last, range.last) }))
          .filter((v) => v.first <= v.last);
      // b fetches 2-6 from seeder a, c (serving nobody, so not counted) 0-4; b already holds 1-3 of it
      const setup = async (streamId: string) => {
        await store.createStream(stream({ streamId, name: `n/${streamId}` }));
        await store.joinPeer(streamId, peer("a", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
        await store.joinPeer(streamId, peer("b", { have: [{ first: 1, last: 3 }] }), 0);
        await store.joinPeer(streamId, peer("c", { port: 0 }), 0);
        const ts = [
          transfer("b", "a", { first: 2, last: 6 }, { streamId, serverRole: "seeder" }),
          transfer("c", "a", { first: 0, last: 4 }, { streamId, serverRole: "seeder" }),
        ];
        for (const t of ts) assert.equal(await store.addTransfer(t, limits), "ok");
        return ts;
      };
      const state = async (streamId: string) => ({
        availability: await store.availability(streamId, { first: 0, last: 10 }),
        peers: await Promise.all(["a", "b", "c"].map((id) => store.getPeer(streamId, id))),
        inFlight: (await store.transfersOf(streamId, "b")).length + (await store.transfersOf(streamId, "c")).length,
        // viewers are offered only where one holds something (the held counts)
        sources: (await store.sources(streamId, { first: 4, last: 6 }, { exclude: "x", limit: 10, ...limits }))
          .map((c) => c.peerId)
          .sort(),
      });
      for (const [k, [what, report, rules]] of cases.entries()) {
        const fused = await setup(`x${k}`);
        const epoch = await store.streamEpoch(`x${k}`);
        const settled = await Promise.all(
          fused.map((t) => store.settleTransfer(`x${k}`, t.transferId, t.fetcherId, report, rules)),
        );
        const stepwise = await setup(`y${k}`);
        const expected = [];
        for (const [i, t] of stepwise.entries()) {
          assert.deepEqual(await store.takeTransfer(`y${k}`, t.transferId, t.fetcherId), t);
          const added = await store.addHoldings(`y${k}`, t.fetcherId, within(t.range, report.verified));
          const after = report.outcome
            ? await store.recordSourceOutcome(`y${k}`, t.serverId, report.outcome, rules)
            : undefined;
          expected.push({ transfer: fused[i], added, ...(after ? { trust: after } : {}) });
        }
        assert.deepEqual(settled, expected, what);
        assert.deepEqual(await state(`x${k}`), await state(`y${k}`), what);
        assert.ok((await store.streamEpoch(`x${k}`)) > epoch, `${what}: the epoch grows`);
      }
      // spot checks of what both gave: b gained 4-6 of the whole range (the seeder a and c do not count); a was banned by bad data
      assert.deepEqual(
        (await store.availability("x0", { first: 0, last: 10 })).map((x) => [x.first, x.last, x.count]),
        [
          [0, 0, 0],
          [1, 6, 1],
          [7, 10, 0],
        ],
      );
      assert.equal((await store.getPeer("x2", "a"))?.banned, true);
      assert.deepEqual(
        (await store.availability("x2", { first: 0, last: 10 })).map((x) => [x.first, x.last, x.count]),
        [
          [0, 0, 0],
          [1, 3, 1],
          [4, 10, 0],
        ],
      );
    });

    it("chunks told held while their transfer is in flight are offered at once and counted once it is settled", async () => {
      // b fetches 2-6 from the seeder a and tells 2-3 held before the range ends (dsclient does for a seeder's range)
      await store.createStream(stream({ streamId: "mid", name: "n/mid" }));
      await store.joinPeer("mid", peer("a", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("mid", peer("b"), 0);
      const t = transfer("b", "a", { first: 2, last: 6 }, { streamId: "mid", serverRole: "seeder" });
      assert.equal(await store.addTransfer(t, limits), "ok");
      const counts = async () =>
        (await store.availability("mid", { first: 0, last: 10 })).map((x) => [x.first, x.last, x.count]);
      const offered = async (range: ChunkRange) =>
        (await store.sources("mid", range, { exclude: "x", limit: 10, ...limits })).map((c) => c.peerId).sort();
      assert.deepEqual(await offered({ first: 2, last: 3 }), ["a"]);
      assert.equal(await store.addHoldings("mid", "b", [{ first: 2, last: 3 }]), 2);
      assert.deepEqual(await offered({ first: 2, last: 3 }), ["a", "b"], "b serves what it told, mid-transfer");
      const settled = await store.settleTransfer("mid", t.transferId, "b", { outcome: "ok" }, policy);
      assert.equal(settled?.added, 3, "only 4-6 were new at the report");
      assert.deepEqual(
        await counts(),
        [
          [0, 1, 0],
          [2, 6, 1],
          [7, 10, 0],
        ],
        "one holder for each chunk of the range: the copy in flight is not counted twice",
      );
      assert.deepEqual((await store.getPeer("mid", "b"))?.holdings.ranges(), [{ first: 2, last: 6 }]);
    });

    it("settleTransfer settles only a transfer the peer fetches, once", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      const t = transfer("b", "a", { first: 2, last: 4 });
      await store.addTransfer(t, limits);
      const epoch = await store.streamEpoch("s1");
      assert.equal(await store.settleTransfer("s1", t.transferId, "a", { outcome: "ok" }, policy), undefined);
      assert.equal(await store.settleTransfer("nope", t.transferId, "b", { outcome: "ok" }, policy), undefined);
      assert.equal(await store.streamEpoch("s1"), epoch, "a wrong fetcher changes nothing");
      assert.equal((await store.getPeer("s1", "a"))?.served, 0);
      assert.deepEqual(await store.settleTransfer("s1", t.transferId, "b", { outcome: "ok" }, policy), {
        transfer: t,
        added: 3,
        trust: { served: 1, failures: 0, strikes: 0, bad: 0, banned: false },
      });
      assert.equal(
        await store.settleTransfer("s1", t.transferId, "b", { outcome: "ok" }, policy),
        undefined,
        "settled once",
      );
      assert.equal((await store.getPeer("s1", "a"))?.uploads, 0);
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 0);
      assert.deepEqual(await counts(0, 10), [
        [0, 1, 1],
        [2, 4, 2],
        [5, 10, 1],
      ]);
    });

    it("expireTransfers removes exactly the due transfers", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      const early = transfer("b", "a", { first: 0, last: 0 }, { expiresMs: 100 });
      const late = transfer("b", "a", { first: 1, last: 1 }, { expiresMs: 200 });
      await store.addTransfer(early, limits);
      await store.addTransfer(late, limits);
      assert.deepEqual(await store.expireTransfers(99), []);
      assert.deepEqual(
        (await store.expireTransfers(100)).map((t) => t.transferId),
        [early.transferId],
      );
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 1);
      assert.deepEqual(
        (await store.expireTransfers(1000)).map((t) => t.transferId),
        [late.transferId],
      );
    });

    it("nextTransferId increases strictly", async () => {
      const a = await store.nextTransferId();
      const b = await store.nextTransferId();
      const c = await store.nextTransferId();
      assert.ok(a > 0 && b > a && c > b);
    });

    it("touchPeers and expirePeers expire idle peers with their transfers", async () => {
      await store.createStream(stream());
      await store.createStream(stream({ streamId: "s2", name: "b" }));
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("b"), 0);
      await store.joinPeer("s2", peer("c"), 0);
      const t = transfer("b", "a", { first: 0, last: 0 });
      await store.addTransfer(t, limits);
      assert.deepEqual(await store.touchPeers("s1", ["b", "ghost"], 500), ["ghost"]);
      assert.equal((await store.getPeer("s1", "b"))?.lastSeenMs, 500);
      assert.equal(await store.getPeer("s1", "ghost"), undefined, "a touch adds nobody");
      assert.deepEqual(await store.touchPeers("nope", ["b"], 500), ["b"], "unknown stream: nobody is there");
      assert.deepEqual(await store.touchPeers("s1", [], 500), []);
      const gone = await store.expirePeers(1000, 1000);
      assert.deepEqual(gone.map((g) => `${g.streamId}/${g.peerId}`).sort(), ["s1/a", "s2/c"]);
      const a = gone.find((g) => g.peerId === "a");
      assert.deepEqual(
        a?.transfers.map((x) => x.transferId),
        [t.transferId],
      );
      assert.equal(a?.role, "viewer");
      assert.notEqual(await store.getPeer("s1", "b"), undefined);
      assert.equal((await store.getPeer("s1", "b"))?.downloads, 0);
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
      assert.deepEqual(
        (await store.expirePeers(1500, 1000)).map((g) => g.peerId),
        ["b"],
      );
    });

    it("recordSourceOutcome keeps trust counters and bans after N bad reports", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      assert.deepEqual(await store.recordSourceOutcome("s1", "a", "ok", policy), {
        served: 1,
        failures: 0,
        strikes: 0,
        bad: 0,
        banned: false,
      });
      await store.recordSourceOutcome("s1", "a", "failed", policy);
      await store.recordSourceOutcome("s1", "a", "bad_data", policy);
      assert.equal((await store.recordSourceOutcome("s1", "a", "bad_data", policy))?.banned, false);
      assert.deepEqual(await store.recordSourceOutcome("s1", "a", "bad_data", policy), {
        served: 1,
        failures: 1,
        strikes: 1,
        bad: 3,
        banned: true,
      });
      assert.equal(await store.recordSourceOutcome("s1", "ghost", "ok", policy), undefined);
      assert.equal((await store.getPeer("s1", "a"))?.banned, true);
      // a banned peer's copies no longer count as available
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
      await store.addHoldings("s1", "a", [{ first: 0, last: 10 }]);
      await store.leavePeer("s1", "a");
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
    });

    it("banHost: viewers joining from a banned host join banned until the ban ends; seeders and other hosts do not", async () => {
      await store.createStream(stream());
      await store.banHost("s1", "10.0.0.66", 5_000);
      await store.banHost("s1", "10.0.0.66", 2_000); // an earlier end does not shorten the ban
      await store.banHost("nosuch", "10.0.0.66", 5_000); // ignored
      const all = [{ first: 0, last: 10 }];
      await store.joinPeer("s1", peer("evil", { host: "10.0.0.66", have: all }), 4_000);
      await store.joinPeer("s1", peer("fine", { host: "10.0.0.67", have: [{ first: 0, last: 4 }] }), 4_000);
      await store.joinPeer("s1", peer("seed", { host: "10.0.0.66", role: "seeder", have: all }), 4_000);
      assert.equal((await store.getPeer("s1", "evil"))?.banned, true);
      assert.equal((await store.getPeer("s1", "fine"))?.banned, false);
      assert.equal((await store.getPeer("s1", "seed"))?.banned, false);
      // its claimed holdings count nowhere, and it is never offered as a source
      assert.deepEqual(await counts(0, 10), [
        [0, 4, 1],
        [5, 10, 0],
      ]);
      const offered = await store.sources("s1", { first: 0, last: 10 }, { exclude: "x", limit: 10, ...limits });
      assert.ok(!offered.some((c) => c.peerId === "evil"));
      assert.equal(await store.addTransfer(transfer("fine", "evil", { first: 5, last: 5 }), limits), "banned");
      // after the ban ends, a new session from the host joins like any other
      await store.joinPeer("s1", peer("later", { host: "10.0.0.66" }), 5_001);
      assert.equal((await store.getPeer("s1", "later"))?.banned, false);
    });

    it("recordSourceOutcome bans a viewer after N failures in a row, never a seeder", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("f"), 0);
      const epoch = await store.streamEpoch("s1");
      // an OK in between resets the run
      await store.recordSourceOutcome("s1", "a", "failed", policy);
      await store.recordSourceOutcome("s1", "a", "failed", policy);
      assert.equal((await store.recordSourceOutcome("s1", "a", "ok", policy))?.strikes, 0);
      await store.recordSourceOutcome("s1", "a", "failed", policy);
      assert.equal((await store.recordSourceOutcome("s1", "a", "failed", policy))?.banned, false);
      assert.deepEqual(await counts(0, 10), [[0, 10, 1]]);
      assert.equal(await store.streamEpoch("s1"), epoch, "trust counters alone do not change the epoch");
      assert.deepEqual(await store.recordSourceOutcome("s1", "a", "failed", policy), {
        served: 1,
        failures: 5,
        strikes: 3,
        bad: 0,
        banned: true,
      });
      assert.ok((await store.streamEpoch("s1")) > epoch, "a ban changes the epoch");
      // its claims no longer count, so the seeder is the one to ask
      assert.deepEqual(await counts(0, 10), [[0, 10, 0]]);
      const q = { exclude: "f", limit: 10, maxUploadsPeer: 2, maxUploadsSeeder: 2 };
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 10 }, q)).map((c) => c.peerId),
        ["s"],
      );
      assert.equal(await store.addTransfer(transfer("f", "a", { first: 0, last: 0 }), limits), "banned");
      for (let i = 0; i < 5; i++) await store.recordSourceOutcome("s1", "s", "failed", policy);
      assert.equal((await store.getPeer("s1", "s"))?.banned, false, "failures alone never ban a seeder");
      // rejoining starts afresh
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 1);
      assert.equal((await store.getPeer("s1", "a"))?.banned, false);
      assert.deepEqual(await counts(0, 10), [[0, 10, 1]]);
    });

    it("addTransfers and settleTransfers do what the single calls do, one after the other", async () => {
      // two streams with the same swarm and the same random steps: one through single calls, one through batches
      let seed = 7;
      const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const below = (n: number) => Math.floor(random() * n);
      const pick = <T>(xs: readonly T[]): T => xs[below(xs.length)]!;
      const N = 40;
      const viewers = ["v0", "v1", "v2", "v3", "v4", "v5"];
      const wide: SlotLimits = { maxDownloads: 4, maxUploadsPeer: 3, maxUploadsSeeder: 6 };
      for (const id of ["one", "all"]) {
        await store.createStream(stream({ streamId: id, name: `movies/${id}.mp4`, size: N * 1024 }));
        await store.joinPeer(id, peer("s", { role: "seeder", have: [{ first: 0, last: N - 1 }] }), 0);
        seed = 7;
        for (const v of viewers) {
          const first = below(N);
          const have = random() < 0.3 ? [] : [{ first, last: Math.min(N - 1, first + below(8)) }];
          await store.joinPeer(id, peer(v, { have, port: v === "v5" ? 0 : 8000 }), 0);
        }
      }
      const state = async (id: string, everyChunk: boolean) => ({
        availability: await store.availability(id, { first: 0, last: N - 1 }),
        peers: await Promise.all(
          ["s", ...viewers].map(async (v) => {
            const p = await store.getPeer(id, v);
            return p && { ...p, holdings: p.holdings.toString() };
          }),
        ),
        // each chunk's sources (none but seeders where no viewer holds it), a viewer with an upload
        // counted busy: what the held counts and the servers' loads decide
        sources: !everyChunk
          ? []
          : await Promise.all(
              Array.from({ length: N }, async (_, c) =>
                (
                  await store.sources(
                    id,
                    { first: c, last: c },
                    { exclude: "x", limit: 10, ...wide, maxUploadsPeer: 1 },
                  )
                )
                  .map((x) => `${x.peerId}:${x.holdings.toString()}:${x.uploads}:${x.bad}:${x.strikes}`)
                  .sort(),
              ),
            ),
      });
      // as JSON, with the stream named alike
      const asOne = (x: unknown): unknown => JSON.parse(JSON.stringify(x).replaceAll('"all"', '"one"'));
      const seen = { added: 0, settled: 0, batches: 0, gained: 0, bans: 0 };
      const add = async (step: string, batch: TransferRecord[]) => {
        const one: AddTransferResult[] = [];
        for (const t of batch) one.push(await store.addTransfer({ ...t, streamId: "one" }, wide));
        const all = await store.addTransfers(
          batch.map((t) => ({ ...t, streamId: "all" })),
          wide,
        );
        assert.deepEqual(all, one, `${step}: added`);
        seen.added += one.filter((r) => r === "ok").length;
      };
      const settle = async (step: string, fetcher: string, settlements: Settlement[], strict: TrustPolicy) => {
        // one by one as settleTransfer is defined: takeTransfer, addHoldings, recordSourceOutcome
        const one: (SettledTransfer | undefined)[] = [];
        for (const { transferId, report } of settlements) {
          const t = await store.takeTransfer("one", transferId, fetcher);
          if (!t) {
            one.push(undefined);
            continue;
          }
          const r = t.range;
          const verified = (report.verified ?? [r]).flatMap((v) => {
            const within = { first: Math.max(v.first, r.first), last: Math.min(v.last, r.last) };
            return within.first <= within.last ? [within] : [];
          });
          const done: SettledTransfer = { transfer: t, added: await store.addHoldings("one", fetcher, verified) };
          const trust = report.outcome && (await store.recordSourceOutcome("one", t.serverId, report.outcome, strict));
          if (trust) done.trust = trust;
          one.push(done);
        }
        const all = await store.settleTransfers("all", fetcher, settlements, strict);
        assert.deepEqual(asOne(all), asOne(one), `${step}: settled`);
        seen.batches += 1;
        seen.settled += one.filter(Boolean).length;
        seen.gained += one.reduce((n, x) => n + (x?.added ?? 0), 0);
        seen.bans += one.filter((x) => x?.trust?.banned && x.trust.bad + x.trust.strikes > 0).length;
      };
      const same = async (step: string, everyChunk = true) =>
        assert.deepEqual(asOne(await state("all", everyChunk)), asOne(await state("one", everyChunk)), step);
      // a peer serving itself (no plan does, the store allows it), banned by the last report of a batch
      // whose first gave it chunks: none of its chunks counts any more
      await add("self", [
        transfer("v0", "s", { first: 20, last: 23 }, { transferId: 900 }),
        transfer("v0", "v0", { first: 30, last: 31 }, { transferId: 901 }),
      ]);
      await settle(
        "self",
        "v0",
        [
          { transferId: 900, report: { outcome: "ok" } },
          { transferId: 901, report: { outcome: "bad_data" } },
        ],
        {
          banAfterBad: 1,
          banAfterStrikes: 1,
        },
      );
      await same("self");
      let id = 1000;
      for (let step = 0; step < 120; step++) {
        const busy = [];
        for (const v of viewers) if ((await store.transfersOf("one", v)).length > 1) busy.push(v);
        if (busy.length === 0 || random() < 0.4) {
          const fetcher = pick(viewers);
          const batch = Array.from({ length: 1 + below(4) }, () => {
            const first = below(N);
            const last = random() < 0.05 ? N : Math.min(N - 1, first + below(6));
            const server = pick(["s", "s", "s", ...viewers, fetcher, "gone"]);
            return transfer(fetcher, server, { first, last }, { transferId: id++ });
          });
          await add(`step ${step}`, batch);
        } else {
          const fetcher = pick(busy);
          const mine = await store.transfersOf("one", fetcher);
          const settlements: Settlement[] = mine.map((t) => {
            const outcome = pick([undefined, "ok", "ok", "ok", "ok", "failed", "bad_data"] as const);
            // the whole range, part of it or nothing (and now and then chunks around it)
            const f = t.range.first + below(t.range.last - t.range.first + 2) - (random() < 0.2 ? 1 : 0);
            const verified = random() < 0.4 ? undefined : [{ first: Math.max(0, f), last: f + below(3) }];
            return {
              transferId: t.transferId,
              report: { ...(outcome ? { outcome } : {}), ...(verified ? { verified } : {}) },
            };
          });
          // reports of transfers it does not fetch, or named twice, settle nothing
          if (random() < 0.3) settlements.push({ transferId: 999_999, report: {} }, settlements[0]!);
          await settle(
            `step ${step}`,
            fetcher,
            settlements,
            random() < 0.1 ? { banAfterBad: 1, banAfterStrikes: 1 } : policy,
          );
        }
        await same(`step ${step}`, step % 4 === 0);
      }
      // the steps did what they are for
      assert.ok(seen.added > 60 && seen.settled > 60 && seen.gained > 60 && seen.bans > 0, JSON.stringify(seen));
      assert.ok(seen.settled / seen.batches > 2, JSON.stringify(seen));
      await assert.rejects(
        store.addTransfers(
          [transfer("v0", "s", { first: 0, last: 0 }), transfer("v1", "s", { first: 1, last: 1 })],
          wide,
        ),
        /one fetcher in one stream/,
      );
    });

    it("planInputs reads a window's availability and sources as the two calls do", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      const held: Record<string, [number, number]> = { a: [6, 7], b: [2, 2], c: [9, 10] };
      for (const [id, [first, last]] of Object.entries(held))
        await store.joinPeer("s1", peer(id, { have: [{ first, last }] }), 0);
      await store.joinPeer("s1", peer("f"), 0);
      // a copy in flight counts in availability, not as a holder: sources still skip chunk 4 alone
      await store.addTransfer(transfer("f", "s", { first: 4, last: 4 }), limits);
      const q = { exclude: "f", limit: 10, maxUploadsPeer: 2, maxUploadsSeeder: 2 };
      for (let first = 0; first <= 10; first++) {
        for (let last = first; last <= 11; last++) {
          const window = { first, last };
          const got = await store.planInputs("s1", window, q);
          assert.deepEqual(
            got.availability,
            await store.availability("s1", window),
            `availability of ${first}-${last}`,
          );
          const holders = Object.keys(held).filter((id) => held[id]![0] <= last && held[id]![1] >= first);
          assert.deepEqual(
            got.sources.map((c) => c.peerId).sort(),
            ["s", ...holders].sort(),
            `sources of ${first}-${last}`,
          );
        }
      }
      assert.deepEqual(await store.planInputs("nope", { first: 0, last: 10 }, q), { availability: [], sources: [] });
    });

    it("sources returns eligible holders clipped to the window, within the limit", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 3 }] }), 0);
      await store.joinPeer("s1", peer("b", { have: [{ first: 6, last: 9 }] }), 0);
      await store.joinPeer("s1", peer("c", { have: [{ first: 2, last: 2 }], port: 0 }), 0);
      await store.joinPeer("s1", peer("f"), 0);
      await store.joinPeer("s1", peer("bad", { have: [{ first: 0, last: 10 }] }), 0);
      for (let i = 0; i < 3; i++) await store.recordSourceOutcome("s1", "bad", "bad_data", policy);
      const q = { exclude: "f", limit: 10, maxUploadsPeer: 1, maxUploadsSeeder: 2 };
      const got = await store.sources("s1", { first: 2, last: 5 }, q);
      assert.deepEqual(got.map((c) => `${c.peerId}:${c.holdings.toString()}:${c.role}`).sort(), [
        "a:2-3:viewer",
        "s:2-5:seeder",
      ]);
      assert.deepEqual(
        (await store.sources("s1", { first: 2, last: 5 }, { ...q, exclude: "a" })).map((c) => c.peerId),
        ["s"],
      );
      // a busy peer is left out
      await store.addTransfer(transfer("f", "a", { first: 0, last: 0 }), limits);
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 3 }, q)).map((c) => c.peerId),
        ["s"],
      );
      // no viewer but a banned one holds chunk 10
      assert.deepEqual(
        (await store.sources("s1", { first: 10, last: 10 }, q)).map((c) => c.peerId),
        ["s"],
      );
      // the limit applies to viewers; seeders come on top
      await store.joinPeer("s1", peer("d", { have: [{ first: 0, last: 10 }] }), 0);
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 10 }, { ...q, limit: 1 })).map((c) => c.role).sort(),
        ["seeder", "viewer"],
      );
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 10 }, { ...q, limit: 0 })).map((c) => c.peerId),
        ["s"],
        "limit 0: the seeders only",
      );
      assert.deepEqual(await store.sources("nope", { first: 0, last: 10 }, q), []);
    });

    it("sources looks at a bounded, moving slice of a big swarm and always offers the seeders", async () => {
      await store.createStream(stream());
      for (let i = 0; i < 200; i++) await store.joinPeer("s1", peer(`v${i}`), 0);
      const holders = ["v20", "v90", "v150", "v199"];
      for (const h of holders) await store.addHoldings("s1", h, [{ first: 0, last: 10 }]);
      await store.joinPeer("s1", peer("s", { role: "seeder", have: [{ first: 0, last: 10 }] }), 0);
      const q = { exclude: "f", limit: 2, maxUploadsPeer: 2, maxUploadsSeeder: 2 };
      const seen = new Set<string>();
      for (let call = 0; call < 200 / (4 * q.limit) + 1; call++) {
        const got = await store.sources("s1", { first: 0, last: 10 }, q);
        assert.ok(
          got.some((c) => c.peerId === "s"),
          "a seeder is offered whatever the sample",
        );
        const viewers = got.filter((c) => c.role === "viewer");
        assert.ok(viewers.length <= q.limit);
        // at most 4 x limit viewers are looked at per call, so no call finds them all
        assert.ok(viewers.length < holders.length);
        for (const v of viewers) seen.add(v.peerId);
      }
      assert.deepEqual([...seen].sort(), [...holders].sort(), "successive calls cover the whole swarm");
    });

    it("sources finds the few free servers of a big, busy swarm", async () => {
      await store.createStream(stream());
      const all = { have: [{ first: 0, last: 10 }] };
      for (let i = 0; i < 300; i++) await store.joinPeer("s1", peer(`v${i}`, all), 0);
      await store.joinPeer("s1", peer("f"), 0);
      await store.joinPeer("s1", peer("g"), 0);
      const slots = { maxDownloads: 1000, maxUploadsPeer: 1, maxUploadsSeeder: 1 };
      const free = new Set(["v7", "v100", "v222"]);
      let id = 1;
      for (let i = 0; i < 300; i++) {
        if (free.has(`v${i}`)) continue;
        const t = { ...transfer("f", `v${i}`, { first: 0, last: 0 }), transferId: id++ };
        assert.equal(await store.addTransfer(t, slots), "ok");
      }
      const q = { exclude: "g", limit: 8, maxUploadsPeer: 1, maxUploadsSeeder: 1 };
      const got = await store.sources("s1", { first: 0, last: 10 }, q);
      assert.deepEqual(got.map((c) => c.peerId).sort(), [...free].sort(), "every free server, no busy one");
      // a transfer that ends frees its server again
      assert.ok(await store.takeTransfer("s1", 1));
      assert.equal((await store.sources("s1", { first: 0, last: 10 }, q)).length, 4);
      // peers that hold nothing, or are banned, are not offered
      for (let i = 0; i < 3; i++) await store.recordSourceOutcome("s1", "v7", "bad_data", policy);
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 10 }, q)).map((c) => c.peerId).sort(),
        ["v0", "v100", "v222"].sort(),
      );
    });

    it("streamEpoch grows when a plan may have new options, not when a transfer starts", async () => {
      assert.equal(await store.streamEpoch("s1"), 0);
      await store.createStream(stream());
      const e0 = await store.streamEpoch("s1");
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      const e1 = await store.streamEpoch("s1");
      assert.ok(e1 > e0, "join");
      await store.joinPeer("s1", peer("b"), 0);
      const e2 = await store.streamEpoch("s1");
      const t = transfer("b", "a", { first: 0, last: 0 });
      await store.addTransfer(t, limits);
      await store.setPosition("s1", "b", 1);
      await store.touchPeers("s1", ["a"], 5);
      assert.equal(await store.streamEpoch("s1"), e2, "start, position and touch");
      await store.addHoldings("s1", "b", [{ first: 5, last: 5 }]);
      const e3 = await store.streamEpoch("s1");
      assert.ok(e3 > e2, "holdings");
      await store.addHoldings("s1", "b", [{ first: 5, last: 5 }]);
      assert.equal(await store.streamEpoch("s1"), e3, "nothing new held");
      await store.takeTransfer("s1", t.transferId);
      const e4 = await store.streamEpoch("s1");
      assert.ok(e4 > e3, "transfer ended");
      await store.leavePeer("s1", "b");
      assert.ok((await store.streamEpoch("s1")) > e4, "leave");
    });

    it("a lease has one holder: others are refused while it renews, and take it once it expires", async () => {
      const ttl = 300;
      assert.equal(await store.acquireLease("cleanup", "r1", ttl), true);
      assert.equal(await store.acquireLease("cleanup", "r2", ttl), false);
      assert.equal(await store.acquireLease("other", "r2", ttl), true, "leases are independent");
      // r1 renews every ttl/3 for more than two ttls: r2 never gets it
      const until = Date.now() + 2.5 * ttl;
      while (Date.now() < until) {
        assert.equal(await store.acquireLease("cleanup", "r1", ttl), true, "the holder renews");
        assert.equal(await store.acquireLease("cleanup", "r2", ttl), false, "refused while renewed");
        await new Promise((r) => setTimeout(r, ttl / 3));
      }
      // r1 stops renewing: r2 takes over after the ttl, and r1 is refused
      await new Promise((r) => setTimeout(r, ttl + 50));
      assert.equal(await store.acquireLease("cleanup", "r2", ttl), true, "taken after expiry");
      assert.equal(await store.acquireLease("cleanup", "r1", ttl), false);
    });

    it("a released lease is free at once; only its holder can release it", async () => {
      assert.equal(await store.acquireLease("cleanup", "r1", 10_000), true);
      await store.releaseLease("cleanup", "r2");
      assert.equal(await store.acquireLease("cleanup", "r2", 10_000), false, "r2 cannot release r1's lease");
      await store.releaseLease("cleanup", "r1");
      assert.equal(await store.acquireLease("cleanup", "r2", 10_000), true);
      await store.ping(1000);
    });

    it("setPosition updates the output position", async () => {
      await store.createStream(stream());
      await store.joinPeer("s1", peer("a"), 0);
      await store.setPosition("s1", "a", 7);
      await store.setPosition("s1", "ghost", 7);
      assert.equal((await store.getPeer("s1", "a"))?.position, 7);
    });

    /** Polls until `check` holds (events travel asynchronously), failing after 3 s. */
    const eventually = async (what: string, check: () => boolean) => {
      const start = Date.now();
      while (!check()) {
        if (Date.now() - start > 3_000) assert.fail(`${what}: not within 3 s`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    it("events reach the subscriptions watching their stream, and only those", async () => {
      const got: Array<[string, string, StreamEvent]> = [];
      const a = store.subscribeEvents({ event: (id, e) => got.push(["a", id, e]), resync: () => undefined });
      const b = store.subscribeEvents({ event: (id, e) => got.push(["b", id, e]), resync: () => undefined });
      try {
        await a.watch("s1");
        await a.watch("s1"); // idempotent: still one delivery
        await b.watch("s2");
        assert.deepEqual([...a.watching], ["s1"]);
        const cancel: StreamEvent = { type: "cancel", transferIds: [7, 9], fetcherIds: ["f1", "f2"] };
        await store.publishEvent("s1", cancel);
        await store.publishEvent("s2", { type: "joined", peerId: "p", role: "viewer" });
        await store.publishEvent("s3", { type: "left", peerIds: ["p"] });
        await eventually("both events delivered", () => got.length >= 2);
        await new Promise((r) => setTimeout(r, 100));
        const sorted = [...got].sort((x, y) => (x[0] < y[0] ? -1 : 1));
        assert.deepEqual(sorted, [
          ["a", "s1", cancel],
          ["b", "s2", { type: "joined", peerId: "p", role: "viewer" }],
        ]);

        got.length = 0;
        await a.unwatch("s1");
        await a.unwatch("s1");
        await b.watch("s1");
        await store.publishEvent("s1", { type: "holdings", peerIds: ["q"], chunks: 3 });
        await eventually("event delivered to the new watcher", () => got.length >= 1);
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(got, [["b", "s1", { type: "holdings", peerIds: ["q"], chunks: 3 }]]);
        assert.deepEqual([...a.watching], []);
      } finally {
        await a.close();
        await b.close();
      }
      got.length = 0;
      await store.publishEvent("s1", { type: "left", peerIds: ["q"] });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got, [], "a closed subscription delivers nothing");
    });

    it("fleet events reach the subscriptions watching the fleet channel, and only those", async () => {
      const stats = (replicaId: string): FleetEvent => ({
        type: "replica-stats",
        stats: {
          replicaId,
          address: "127.0.0.1:6086",
          startedMs: 1,
          sentMs: 2,
          intervalMs: 1000,
          viewers: 3,
          seeders: 1,
          directivesPerSecond: 12.5,
          storeLatencyMs: 0.4,
          storeUp: true,
          cleanupLeader: true,
          checksumReachable: true,
          unreachablePeers: 0,
          streams: [
            {
              streamId: "s1",
              name: "a.bin",
              kind: "file",
              viewers: 3,
              seeders: 1,
              delayHistogram: [],
              peers: [
                {
                  peerId: "p",
                  local: true,
                  role: "viewer",
                  address: "10.0.0.1:8000",
                  agent: "dsclient/0.1.0",
                  downRate: 100,
                  upRate: 50,
                  held: 4,
                  served: 2,
                  failures: 0,
                  bad: 1,
                  banned: false,
                  delayMs: -1,
                },
              ],
            },
          ],
          totals: [{ name: "a.bin", peerBytes: 10, seederBytes: 5, completed: 1 }],
          seederSessions: [],
          notices: [{ atMs: 3, streamId: "s1", type: "completed", peerId: "p", detail: "" }],
          noticesDropped: 0,
        },
      });
      const got: Array<[string, FleetEvent]> = [];
      const streamEvents: StreamEvent[] = [];
      const a = store.subscribeEvents({
        event: (_, e) => streamEvents.push(e),
        fleet: (e) => got.push(["a", e]),
        resync: () => undefined,
      });
      const b = store.subscribeEvents({
        event: () => undefined,
        fleet: (e) => got.push(["b", e]),
        resync: () => undefined,
      });
      try {
        await a.watchFleet();
        await a.watchFleet(); // idempotent: still one delivery
        await a.watch("s1");
        await store.publishFleetEvent(stats("r1"));
        await eventually("fleet event delivered", () => got.length >= 1);
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(got, [["a", stats("r1")]], "only the watcher of the fleet channel hears it");
        assert.deepEqual(streamEvents, [], "a fleet event is no stream event");

        got.length = 0;
        await a.unwatchFleet();
        await b.watchFleet();
        await store.publishFleetEvent(stats("r2"));
        await eventually("fleet event delivered to the new watcher", () => got.length >= 1);
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(got, [["b", stats("r2")]]);
      } finally {
        await a.close();
        await b.close();
      }
      got.length = 0;
      await store.publishFleetEvent(stats("r3"));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(got, [], "a closed subscription delivers nothing");
    });

    it("storeInfo names the kind of store", async () => {
      const info = await store.storeInfo();
      assert.ok(["memory", "redis", "redis-cluster"].includes(info.kind), info.kind);
      assert.ok(info.nodes >= 1);
      if (info.kind !== "memory") {
        assert.ok((info.usedMemoryBytes ?? 0) > 0, "a Redis reports the memory it uses");
        assert.match(info.version, /^\d+\.\d+/);
      }
    });

    // ---- chunk bounds: a live stream's moving window ---------------------------

    const live = (over: Partial<NewLiveStream> = {}): NewLiveStream => ({
      streamId: "s1",
      name: "live/a",
      chunkSize: 1024,
      version: 1,
      kind: "live",
      windowChunks: 50,
      createdMs: 1000,
      ...over,
    });
    const held = async (peerId: string, streamId = "s1") =>
      (await store.getPeer(streamId, peerId))?.holdings.ranges().map((r) => [r.first, r.last]);
    const anyone = { exclude: "", limit: 10, maxUploadsPeer: 2, maxUploadsSeeder: 3 };

    it("a file's bounds are 0 to its last chunk; an empty file's are 0 and -1", async () => {
      assert.deepEqual(
        [await store.createStream(stream()), await store.createStream(stream({ streamId: "e", size: 0 }))].map((m) => [
          m.kind,
          m.low,
          m.high,
        ]),
        [
          ["file", 0, 10],
          ["file", 0, -1],
        ],
      );
      await store.joinPeer("s1", peer("a", { have: [{ first: 5, last: 99 }] }), 0);
      assert.deepEqual(await held("a"), [[5, 10]], "holdings clipped to the bounds");
      assert.equal(await store.addTransfer(transfer("a", "a", { first: 9, last: 11 }), limits), "out-of-bounds");
    });

    it("a live stream starts with no chunks; raiseHigh moves its edge, marks it ended, bumps the epoch", async () => {
      const m = await store.createStream(live());
      assert.ok(m.kind === "live");
      assert.deepEqual([m.low, m.high, m.ended, m.windowChunks], [0, -1, false, 50]);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 5 }] }), 0);
      assert.deepEqual(await held("a"), [], "nothing to hold before the edge moves");
      assert.deepEqual(await counts(0, 10), []);
      const e0 = await store.streamEpoch("s1");
      assert.equal(await store.raiseHigh("s1", 9), true);
      assert.ok((await store.streamEpoch("s1")) > e0, "fetchers are replanned");
      assert.deepEqual(await counts(0, 20), [[0, 9, 0]]);
      assert.equal(await store.addHoldings("s1", "a", [{ first: 0, last: 20 }]), 10);
      assert.deepEqual(await counts(0, 20), [[0, 9, 1]]);
      assert.equal(await store.raiseHigh("s1", 19), true);
      assert.deepEqual(
        await counts(0, 30),
        [
          [0, 9, 1],
          [10, 19, 0],
        ],
        "new chunks count 0",
      );
      const e1 = await store.streamEpoch("s1");
      assert.equal(await store.raiseHigh("s1", 5), false, "high never goes down");
      assert.equal(await store.raiseHigh("s1", 19), false);
      assert.equal(await store.streamEpoch("s1"), e1);
      assert.equal(await store.raiseHigh("s1", 19, true), true);
      assert.equal(await store.raiseHigh("s1", 19, true), false);
      const after = await store.getStream("s1");
      assert.ok(after?.kind === "live");
      assert.deepEqual([after.low, after.high, after.ended], [0, 19, true]);
      assert.deepEqual([(await store.fetcherView("s1", "a")).low, (await store.fetcherView("s1", "a")).high], [0, 19]);
      assert.equal(await store.raiseHigh("nope", 5), false);
    });

    it("raiseLow drops holdings, availability and transfers below the new low and leaves the rest", async () => {
      await store.createStream(live());
      await store.raiseHigh("s1", 99);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 29 }] }), 0);
      await store.joinPeer("s1", peer("b", { have: [{ first: 10, last: 59 }] }), 0);
      await store.joinPeer("s1", peer("c", { have: [{ first: 50, last: 99 }] }), 0);
      await store.joinPeer("s1", peer("d", { have: [{ first: 0, last: 5 }] }), 0);
      await store.joinPeer("s1", peer("sd", { role: "seeder", have: [{ first: 0, last: 99 }] }), 0);
      await store.joinPeer("s1", peer("f1"), 0);
      await store.joinPeer("s1", peer("f2"), 0);
      const below = transfer("f1", "a", { first: 0, last: 4 });
      const straddling = transfer("f2", "b", { first: 15, last: 24 });
      const above = transfer("f1", "c", { first: 60, last: 64 });
      for (const t of [below, straddling, above]) assert.equal(await store.addTransfer(t, limits), "ok");
      const e0 = await store.streamEpoch("s1");

      assert.deepEqual(await store.raiseLow("s1", 20), { raised: true, dropped: [below] });
      assert.ok((await store.streamEpoch("s1")) > e0);
      const m = await store.getStream("s1");
      assert.deepEqual([m?.low, m?.high], [20, 99]);
      assert.deepEqual(await held("a"), [[20, 29]]);
      assert.deepEqual(await held("b"), [[20, 59]]);
      assert.deepEqual(await held("c"), [[50, 99]], "above the bound: untouched");
      assert.deepEqual(await held("d"), []);
      assert.deepEqual(await held("sd"), [[20, 99]]);
      assert.deepEqual(
        await counts(0, 99),
        [
          [20, 24, 3],
          [25, 29, 2],
          [30, 49, 1],
          [50, 64, 2],
          [65, 99, 1],
        ],
        "counts start at the new low; the straddling transfer counts from it on",
      );
      assert.deepEqual(
        (await store.transfersOf("s1", "f1")).map((t) => t.transferId),
        [above.transferId],
      );
      assert.equal((await store.getPeer("s1", "a"))?.uploads, 0, "the dropped transfer's slot is free");
      assert.equal(await store.takeTransfer("s1", below.transferId), undefined);
      assert.deepEqual(await store.takeTransfer("s1", straddling.transferId), straddling);
      assert.deepEqual(await counts(0, 29), [[20, 29, 2]], "taking it frees exactly what it counted");
      assert.deepEqual(await store.sources("s1", { first: 0, last: 19 }, anyone), [], "nothing below the bounds");
      assert.deepEqual(
        (await store.sources("s1", { first: 0, last: 25 }, anyone))
          .map((c) => [c.peerId, c.holdings.ranges().map((r) => [r.first, r.last])])
          .sort(),
        [
          ["a", [[20, 25]]],
          ["b", [[20, 25]]],
          ["sd", [[20, 25]]],
        ],
      );
    });

    it("raiseLow never lowers low, is idempotent, and leaves unknown streams and files alone", async () => {
      await store.createStream(live());
      await store.raiseHigh("s1", 30);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 30 }] }), 0);
      assert.equal((await store.raiseLow("s1", 10)).raised, true);
      const e = await store.streamEpoch("s1");
      assert.deepEqual(await store.raiseLow("s1", 10), { raised: false, dropped: [] });
      assert.deepEqual(await store.raiseLow("s1", 5), { raised: false, dropped: [] });
      assert.equal((await store.getStream("s1"))?.low, 10);
      assert.equal(await store.streamEpoch("s1"), e, "a no-op does not bump the epoch");
      assert.deepEqual(await held("a"), [[10, 30]]);
      assert.deepEqual(await store.raiseLow("nope", 5), { raised: false, dropped: [] });
      assert.equal(await store.getStream("nope"), undefined);

      await store.createStream(stream({ streamId: "f" }));
      await store.joinPeer("f", peer("a", { have: [{ first: 0, last: 10 }] }), 0);
      assert.deepEqual(await store.raiseLow("f", 5), { raised: false, dropped: [] });
      assert.equal(await store.raiseHigh("f", 20), false);
      const f = await store.getStream("f");
      assert.deepEqual([f?.low, f?.high], [0, 10], "a file's bounds are fixed");
      assert.deepEqual(await held("a", "f"), [[0, 10]]);
      assert.deepEqual(
        (await store.availability("f", { first: 0, last: 10 })).map((s) => [s.first, s.last, s.count]),
        [[0, 10, 1]],
      );
    });

    it("after raiseLow, joins, holdings and transfers are clipped to (or refused outside) the new bounds", async () => {
      await store.createStream(live());
      await store.raiseHigh("s1", 99);
      await store.raiseLow("s1", 20);
      await store.joinPeer("s1", peer("g", { have: [{ first: 0, last: 30 }] }), 0);
      await store.joinPeer("s1", peer("f"), 0);
      assert.deepEqual(await held("g"), [[20, 30]]);
      assert.equal(
        await store.addHoldings("s1", "g", [
          { first: 0, last: 25 },
          { first: 40, last: 45 },
        ]),
        6,
      );
      for (const range of [
        { first: 10, last: 15 },
        { first: 15, last: 25 },
        { first: 95, last: 100 },
      ]) {
        assert.equal(
          await store.addTransfer(transfer("f", "g", range), limits),
          "out-of-bounds",
          JSON.stringify(range),
        );
      }
      assert.equal(await store.addTransfer(transfer("f", "g", { first: 20, last: 25 }), limits), "ok");
      assert.deepEqual(await counts(0, 99), [
        [20, 25, 2],
        [26, 30, 1],
        [31, 39, 0],
        [40, 45, 1],
        [46, 99, 0],
      ]);
    });

    it("chunk numbers stay exact up to 2^53 - 1, odd ones too: bounds, holdings, availability, sources, transfers", async () => {
      const top = Number.MAX_SAFE_INTEGER;
      await store.createStream(live());
      await store.raiseHigh("s1", top);
      await store.raiseLow("s1", top - 99);
      await store.joinPeer("s1", peer("a"), 0);
      await store.joinPeer("s1", peer("b"), 0);
      const a = [
        { first: top - 45, last: top - 45 },
        { first: top - 3, last: top },
      ];
      assert.equal(await store.addHoldings("s1", "a", a), 5);
      assert.deepEqual(await held("a"), [
        [top - 45, top - 45],
        [top - 3, top],
      ]);
      assert.deepEqual(await counts(top - 47, top), [
        [top - 47, top - 46, 0],
        [top - 45, top - 45, 1],
        [top - 44, top - 4, 0],
        [top - 3, top, 1],
      ]);
      const t = transfer("b", "a", { first: top - 1, last: top });
      assert.equal(await store.addTransfer(t, limits), "ok");
      assert.deepEqual(await store.transfersOf("s1", "b"), [t]);
      assert.deepEqual((await store.fetcherView("s1", "b")).transfers, [t]);
      assert.deepEqual(await counts(top - 3, top), [
        [top - 3, top - 2, 1],
        [top - 1, top, 2],
      ]);
      const [source] = await store.sources("s1", { first: top - 46, last: top - 2 }, { ...anyone, exclude: "b" });
      assert.deepEqual(
        source?.holdings.ranges().map((r) => [r.first, r.last]),
        [
          [top - 45, top - 45],
          [top - 3, top - 2],
        ],
      );
      await store.setPosition("s1", "b", top - 45);
      assert.equal((await store.getPeer("s1", "b"))?.position, top - 45);
      // a peer holding many chunks already: its count plus a chunk number passes 2^53
      await store.joinPeer("s1", peer("c", { have: [{ first: top - 90, last: top - 50 }] }), 0);
      assert.equal(await store.addHoldings("s1", "c", [{ first: top - 3, last: top - 3 }]), 1);
      assert.deepEqual(await held("c"), [
        [top - 90, top - 50],
        [top - 3, top - 3],
      ]);
      const m = await store.getStream("s1");
      assert.deepEqual([m?.low, m?.high], [top - 99, top]);
    });

    it("raiseLow past the edge empties the window until high catches up", async () => {
      await store.createStream(live());
      await store.raiseHigh("s1", 9);
      await store.joinPeer("s1", peer("a", { have: [{ first: 0, last: 9 }] }), 0);
      assert.equal((await store.raiseLow("s1", 15)).raised, true);
      assert.deepEqual(await held("a"), []);
      assert.deepEqual(await counts(0, 30), []);
      assert.deepEqual(await store.sources("s1", { first: 0, last: 30 }, anyone), []);
      assert.equal(await store.raiseHigh("s1", 20), true);
      assert.deepEqual(await counts(0, 30), [[15, 20, 0]]);
      assert.equal(await store.addHoldings("s1", "a", [{ first: 0, last: 17 }]), 3);
      assert.deepEqual(await counts(0, 30), [
        [15, 17, 1],
        [18, 20, 0],
      ]);
      const m = await store.getStream("s1");
      assert.deepEqual([m?.low, m?.high], [15, 20]);
    });
  });
}
