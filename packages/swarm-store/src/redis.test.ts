import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { swarmStoreContract } from "./contract.js";
import { EXPIRY_BATCH, RedisSwarmStore } from "./redis.js";
import { openSwarmStore, redactUrl } from "./open.js";
import { MemorySwarmStore } from "./memory.js";
import type { Settlement } from "./store.js";
import { redisForTests, type TestRedis } from "./testing/index.js";

const server: TestRedis = await redisForTests();
after(() => server.stop());
/** A prefix of this run, so a shared REDIS_URL never sees another run's keys. */
const run = `t-${randomUUID().slice(0, 8)}`;
let n = 0;
const freshPrefix = () => `${run}-${++n}`;

swarmStoreContract("redis", async () => new RedisSwarmStore(new Redis(server.url), { prefix: freshPrefix() }));

describe("RedisSwarmStore", () => {
  let admin: Redis;
  before(() => {
    admin = new Redis(server.url);
  });
  after(async () => {
    // leave nothing behind in a shared Redis
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `${run}-*`, "COUNT", 1000);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== "0");
    await admin.quit();
  });

  const limits = { maxDownloads: 4, maxUploadsPeer: 4, maxUploadsSeeder: 8 };
  const newStream = (streamId: string) => ({
    streamId,
    name: `n/${streamId}`,
    size: 100 * 1024,
    chunkSize: 1024,
    version: 1,
    kind: "file" as const,
    createdMs: 0,
  });
  const viewer = (peerId: string, have = [{ first: 0, last: 99 }]) => ({
    peerId,
    host: "10.0.0.1",
    port: 8000,
    role: "viewer" as const,
    mode: "in_order" as const,
    position: 0,
    have,
  });

  it("retireStreams leaves no key of the stream behind, and a seeder joining meanwhile keeps it", async () => {
    const prefix = freshPrefix();
    const store = new RedisSwarmStore(new Redis(server.url), { prefix });
    try {
      const grace = 1000;
      for (const id of ["gone", "kept"]) {
        await store.createStream(newStream(id));
        await store.markReady(id, Uint8Array.of(1), 0);
        await store.putHashPiece(id, 0, Uint8Array.of(1), 4);
        await store.joinPeer(
          id,
          { peerId: "v", host: "h", port: 1, role: "viewer", mode: "bulk", position: 0, have: [{ first: 0, last: 3 }] },
          0,
        );
        await store.leavePeer(id, "v");
      }
      assert.deepEqual(await store.retireStreams(grace, grace), [], "first seen empty");
      // a seeder re-publishing "kept" between the sweeps: its join moves the epoch and fills the stream
      await store.joinPeer(
        "kept",
        { peerId: "s", host: "h", port: 1, role: "seeder", mode: "bulk", position: 0, have: [] },
        grace,
      );
      assert.deepEqual(await store.retireStreams(2 * grace, grace), ["gone"]);
      const left: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        left.push(...keys);
        cursor = next;
      } while (cursor !== "0");
      assert.deepEqual(
        left.filter((k) => k.includes("gone")),
        [],
        "no key of the retired stream",
      );
      assert.equal(await admin.zscore(`${prefix}:streams`, "gone"), null);
      assert.equal(await admin.hget(`${prefix}:names`, "n/gone"), null);
      assert.equal(await store.streamIdByName("n/kept"), "kept");
      assert.ok((await store.getPeer("kept", "s"))?.role === "seeder");
      await store.leavePeer("kept", "s");
      await store.retireStreams(4 * grace, grace);
      assert.deepEqual(await store.retireStreams(6 * grace, grace), ["kept"]);
      const all = await admin.keys(`${prefix}:*`);
      assert.deepEqual(all.sort(), [], "nothing left once every stream retired");
    } finally {
      await store.close();
    }
  });
  it("keeps every key of a stream under its hash tag, beside the few documented global keys", async () => {
    const prefix = freshPrefix();
    const store = new RedisSwarmStore(new Redis(server.url), { prefix });
    try {
      await store.createStream(newStream("abc"));
      await store.markReady("abc", Uint8Array.of(1), 1);
      await store.joinPeer("abc", viewer("a"), 0);
      await store.joinPeer("abc", viewer("b", []), 0);
      await store.addTransfer(
        {
          transferId: await store.nextTransferId(),
          streamId: "abc",
          fetcherId: "b",
          serverId: "a",
          serverRole: "viewer",
          range: { first: 0, last: 3 },
          startedMs: 0,
          expiresMs: 100,
        },
        limits,
      );
      const keys = await admin.keys(`${prefix}:*`);
      const global = keys.filter((k) => !k.startsWith(`${prefix}:{abc}:`)).sort();
      assert.deepEqual(global, [
        `${prefix}:expiry:peers`,
        `${prefix}:expiry:transfers`,
        `${prefix}:names`,
        `${prefix}:streams`,
        `${prefix}:transfer-id`,
      ]);
      assert.ok(keys.length > global.length + 5);
      await store.removeStream("abc");
      const left = await admin.keys(`${prefix}:*`);
      assert.deepEqual(left, [`${prefix}:transfer-id`], "removeStream leaves only the id counter");
    } finally {
      await store.close();
    }
  });

  for (const version of ["1", "2"] as const) {
    it(`converts a stream stored in version ${version}'s segment layout on first use, losing no count`, async () => {
      const prefix = freshPrefix();
      const store = new RedisSwarmStore(new Redis(server.url), { prefix });
      try {
        await store.createStream(newStream("old"));
        await store.joinPeer("old", viewer("a", [{ first: 10, last: 59 }]), 0);
        await store.joinPeer("old", viewer("b", [{ first: 30, last: 39 }]), 0);
        // a copy in flight: availability and held counts differ over 5-15
        await store.joinPeer("old", viewer("c", []), 0);
        const range = { first: 5, last: 15 };
        const t = { transferId: 1, streamId: "old", fetcherId: "c", serverId: "a", serverRole: "viewer" as const };
        assert.equal(await store.addTransfer({ ...t, range, startedMs: 0, expiresMs: 1e12 }, limits), "ok");
        const before = await store.availability("old", { first: 0, last: 99 });
        assert.equal(before.length, 7);
        // back to the earlier layout: version 2 kept availability and held counts in two sets of
        // "<start>:<count>" members, version 1 the starts as members and the counts in hashes, without segs
        const key = (k: string) => `${prefix}:{old}:${k}`;
        const segments = (await admin.zrange(key("avail"), "0", "-1")).map((m) => m.split(":"));
        await admin.del(key("avail"));
        for (const [z, h, at] of [
          ["avail", "availc", 1],
          ["held", "heldc", 2],
        ] as const) {
          let last: string | undefined;
          for (const seg of segments) {
            // each count's segments as that version kept them: equal neighbours merged
            const start = seg[0]!;
            if (seg[at] === last) continue;
            last = seg[at];
            if (version === "2") await admin.zadd(key(z), start, `${start}:${seg[at]!}`);
            else {
              await admin.zadd(key(z), start, start);
              await admin.hset(key(h), start, seg[at]!);
            }
          }
        }
        if (version === "2") await admin.hset(key("meta"), "segs", "2");
        else await admin.hdel(key("meta"), "segs");
        assert.deepEqual(await store.availability("old", { first: 0, last: 99 }), before);
        assert.equal(await admin.exists(key("held"), key("availc"), key("heldc")), 0, "the old keys dropped");
        assert.equal(await admin.hget(key("meta"), "segs"), "3");
        assert.deepEqual(await admin.zrange(key("avail"), "0", "-1"), [
          "0:0:0",
          "5:1:0",
          "10:2:1",
          "16:1:1",
          "30:2:2",
          "40:1:1",
          "60:0:0",
        ]);
        // and it goes on counting: b's holdings grow, a leaves
        await store.addHoldings("old", "b", [{ first: 40, last: 69 }]);
        await store.leavePeer("old", "a");
        assert.deepEqual(await store.availability("old", { first: 0, last: 99 }), [
          { first: 0, last: 29, count: 0 },
          { first: 30, last: 69, count: 1 },
          { first: 70, last: 99, count: 0 },
        ]);
        assert.equal(
          (await store.sources("old", { first: 65, last: 69 }, { exclude: "x", limit: 4, ...limits })).length,
          1,
        );
      } finally {
        await store.close();
      }
    });
  }

  it("settles the reports of calls that come while a stream's script runs in one script, as one after the other would", async () => {
    const prefix = freshPrefix();
    const store = new RedisSwarmStore(new Redis(server.url), { prefix });
    const scripts = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await admin.info("commandstats"))?.[1] ?? 0);
    try {
      // the same swarm twice: "group" settled by concurrent calls, "apart" by the same calls one after the other
      const calls = new Map<string, Settlement[][]>();
      for (const id of ["group", "apart"]) {
        await store.createStream(newStream(id));
        await store.joinPeer(id, { ...viewer("s"), role: "seeder" }, 0);
        for (const v of ["a", "b", "c", "d"]) await store.joinPeer(id, viewer(v, []), 0);
        let tid = 1;
        const add = async (f: string, server: string, first: number, last: number) => {
          const t = { transferId: tid++, streamId: id, fetcherId: f, serverId: server, serverRole: "viewer" as const };
          assert.equal(
            await store.addTransfer({ ...t, range: { first, last }, startedMs: 0, expiresMs: 1e12 }, limits),
            "ok",
          );
          return t.transferId;
        };
        const d1 = await add("d", "s", 0, 9);
        const a1 = await add("a", "s", 10, 19);
        const c1 = await add("c", "s", 15, 24);
        const b1 = await add("b", "a", 12, 13);
        const c2 = await add("c", "a", 30, 31);
        // d first (it runs alone); then a gains 10-19 and b's bad data bans a, whose gains leave the counts
        // with the rest of its holdings; c's second report names a transfer of d's
        calls.set(id, [
          [{ transferId: d1, report: { outcome: "ok" } }],
          [{ transferId: a1, report: { outcome: "ok" } }],
          [{ transferId: b1, report: { outcome: "bad_data", verified: [] } }],
          [
            { transferId: c1, report: { outcome: "ok", verified: [{ first: 15, last: 20 }] } },
            { transferId: d1, report: { outcome: "ok" } },
            { transferId: c2, report: { outcome: "failed", verified: [] } },
          ],
        ]);
      }
      const fetchers = ["d", "a", "b", "c"];
      const strict = { banAfterBad: 1, banAfterStrikes: 3 };
      const apart = [];
      for (const [i, c] of calls.get("apart")!.entries())
        apart.push(await store.settleTransfers("apart", fetchers[i]!, c, strict));
      const before = await scripts();
      const group = await Promise.all(
        calls.get("group")!.map((c, i) => store.settleTransfers("group", fetchers[i]!, c, strict)),
      );
      assert.equal((await scripts()) - before, 2, "the first call's script, then one for the three that waited");
      const asApart = (x: unknown) => JSON.stringify(x).replaceAll('"group"', '"apart"');
      assert.equal(asApart(group), JSON.stringify(apart));
      assert.equal(group[2]![0]!.trust!.banned, true);
      const state = async (id: string) => ({
        availability: await store.availability(id, { first: 0, last: 99 }),
        peers: await Promise.all(
          ["a", "b", "c", "d"].map(async (v) => (await store.getPeer(id, v))?.holdings.toString()),
        ),
        sources: (await store.sources(id, { first: 10, last: 19 }, { exclude: "x", limit: 10, ...limits })).map(
          (c) => c.peerId,
        ),
      });
      assert.deepEqual(await state("group"), await state("apart"));
      // a's chunks no longer count: 10-19 is held by c only where c verified it (15-19), and by nobody else
      assert.deepEqual((await state("group")).availability.slice(0, 4), [
        { first: 0, last: 9, count: 1 },
        { first: 10, last: 14, count: 0 },
        { first: 15, last: 20, count: 1 },
        { first: 21, last: 99, count: 0 },
      ]);
    } finally {
      await store.close();
    }
  });

  it("two replicas on one Redis see one swarm; either expires the other's peers and transfers", async () => {
    const prefix = freshPrefix();
    const a = new RedisSwarmStore(new Redis(server.url), { prefix });
    const b = new RedisSwarmStore(new Redis(server.url), { prefix });
    try {
      await a.createStream(newStream("s"));
      await a.joinPeer("s", viewer("p1"), 1000);
      await b.joinPeer("s", viewer("p2", []), 2000);
      assert.deepEqual(await b.peerCounts("s"), { peers: 2, seeders: 0 });
      // ids come in blocks from one sequence: unique over the replicas, increasing in each, even asked at once
      const ids = await Promise.all([...Array(3000)].map((_, k) => (k % 2 ? a : b).nextTransferId()));
      assert.equal(new Set(ids).size, ids.length, "no id given twice");
      for (const store of [0, 1]) {
        const own = ids.filter((_, k) => k % 2 === store);
        assert.ok(
          own.every((x, k) => k === 0 || x > own[k - 1]!),
          "each replica's ids increase",
        );
      }
      const id = await b.nextTransferId();
      const t = {
        transferId: id,
        streamId: "s",
        fetcherId: "p2",
        serverId: "p1",
        serverRole: "viewer" as const,
        range: { first: 10, last: 19 },
        startedMs: 2000,
        expiresMs: 5000,
      };
      assert.equal(await a.addTransfer(t, limits), "ok");
      assert.deepEqual(await b.availability("s", { first: 9, last: 20 }), [
        { first: 9, last: 9, count: 1 },
        { first: 10, last: 19, count: 2 },
        { first: 20, last: 20, count: 1 },
      ]);
      assert.deepEqual(await b.expireTransfers(4999), []);
      assert.deepEqual(await b.expireTransfers(5000), [t]);
      assert.deepEqual(await a.expireTransfers(9999), [], "expired once");
      // p1 idle since 1000, p2 touched at 2500: a ttl of 1000 at 2100 takes p1 only
      await a.touchPeers("s", ["p2"], 2500);
      assert.deepEqual(
        (await b.expirePeers(2100, 1000)).map((e) => e.peerId),
        ["p1"],
      );
      assert.deepEqual(await a.expirePeers(2100, 1000), []);
      assert.deepEqual(
        (await a.expirePeers(3500, 1000)).map((e) => e.peerId),
        ["p2"],
      );
      assert.equal(await admin.zcard(`${prefix}:expiry:peers`), 0, "an empty stream leaves the peer index");
      assert.equal(await admin.zcard(`${prefix}:expiry:transfers`), 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("expiry sweeps of more than a batch of transfers or peers take them all, once", async () => {
    const prefix = freshPrefix();
    const store = new RedisSwarmStore(new Redis(server.url), { prefix });
    try {
      await store.createStream(newStream("s"));
      const n = 2 * EXPIRY_BATCH + 3;
      const wide = { maxDownloads: n, maxUploadsPeer: n, maxUploadsSeeder: n };
      await store.joinPeer("s", viewer("src"), 0);
      const ids: number[] = [];
      for (let k = 0; k < n; k++) {
        await store.joinPeer("s", viewer(`f${k}`, []), 0);
        const transferId = await store.nextTransferId();
        const t = {
          transferId,
          streamId: "s",
          fetcherId: `f${k}`,
          serverId: "src",
          serverRole: "viewer" as const,
          range: { first: k % 100, last: k % 100 },
          startedMs: 0,
          expiresMs: 1000 + k,
        };
        assert.equal(await store.addTransfer(t, wide), "ok");
        ids.push(transferId);
      }
      // whole batches of expiry entries whose record is gone are dropped, not taken again and again
      const stale = [...Array(EXPIRY_BATCH)].flatMap((_, k) => [1, `${1e9 + k}`]);
      await admin.zadd(`${prefix}:{s}:xferexp`, ...stale);
      await admin.zadd(`${prefix}:{s}:seen`, ...stale.map((v, i) => (i % 2 ? `ghost${v}` : v)));
      const expired = (await store.expireTransfers(5000)).map((t) => t.transferId);
      assert.deepEqual(
        expired.sort((a, b) => a - b),
        ids,
      );
      assert.deepEqual(await store.expireTransfers(5000), [], "expired once");
      assert.equal((await store.getPeer("s", "src"))?.uploads, 0);
      assert.deepEqual(await store.availability("s", { first: 0, last: 99 }), [{ first: 0, last: 99, count: 1 }]);
      await store.touchPeers("s", ["src"], 9000);
      const gone = (await store.expirePeers(6000, 1000)).map((g) => g.peerId);
      assert.deepEqual(gone.sort(), [...Array(n).keys()].map((k) => `f${k}`).sort());
      assert.deepEqual(await store.peerCounts("s"), { peers: 1, seeders: 0 });
      assert.deepEqual(await store.expirePeers(6000, 1000), [], "expired once");
    } finally {
      await store.close();
    }
  });

  it("gives the memory store's exact availability under random holdings, transfers and settlements", async () => {
    const redis = new RedisSwarmStore(new Redis(server.url), { prefix: freshPrefix() });
    const memory = new MemorySwarmStore();
    try {
      let seed = 11;
      const rnd = (k: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return Math.floor((seed / 2 ** 31) * k);
      };
      for (const s of [redis, memory]) await s.createStream({ ...newStream("r"), size: 64 * 1024 });
      const live: { id: number; fetcher: string }[] = [];
      const outcomes = [undefined, "ok", "failed", "bad_data"] as const;
      let id = 0;
      for (let step = 0; step < 300; step++) {
        const peer = `p${rnd(8)}`;
        const roll = rnd(10);
        const first = rnd(64);
        const range = { first, last: Math.min(63, first + rnd(12)) };
        const both = async <T>(f: (s: RedisSwarmStore | MemorySwarmStore) => Promise<T>) => {
          const [x, y] = await Promise.all([f(redis), f(memory)]);
          assert.deepEqual(x, y, `step ${step}`);
          return x;
        };
        if (roll < 2) await both((s) => s.joinPeer("r", viewer(peer, [range]), step).then((j) => j.joined));
        else if (roll < 5) await both((s) => s.addHoldings("r", peer, [range]));
        else if (roll < 7) {
          const t = {
            transferId: ++id,
            streamId: "r",
            fetcherId: peer,
            serverId: `p${rnd(8)}`,
            serverRole: "viewer" as const,
            range,
            startedMs: 0,
            expiresMs: 1e12,
          };
          if ((await both((s) => s.addTransfer(t, limits))) === "ok") live.push({ id: t.transferId, fetcher: peer });
        } else if (roll < 9 && live.length > 0) {
          const { id: tid, fetcher } = live.splice(rnd(live.length), 1)[0]!;
          if (rnd(2) === 0) await both((s) => s.takeTransfer("r", tid).then((t) => t?.transferId));
          else {
            // settled: some or all of the range verified, any outcome (bans included, with this policy)
            const verified = rnd(3) === 0 ? undefined : [{ first: range.first, last: range.first + rnd(3) }];
            const report = { ...(verified ? { verified } : {}), outcome: outcomes[rnd(4)] };
            const settled = await both((s) =>
              s.settleTransfer("r", tid, fetcher, report, { banAfterBad: 2, banAfterStrikes: 3 }),
            );
            if (settled) await both((s) => s.getPeer("r", settled.transfer.serverId));
          }
        } else await both((s) => s.leavePeer("r", peer).then((d) => d.length));
        await both((s) => s.availability("r", { first: 0, last: 63 }));
      }
    } finally {
      await redis.close();
      await memory.close();
    }
  });

  it("moves a live window exactly like the memory store under random holdings, transfers and bounds", async () => {
    const redis = new RedisSwarmStore(new Redis(server.url), { prefix: freshPrefix() });
    const memory = new MemorySwarmStore();
    try {
      let seed = 23;
      const rnd = (k: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return Math.floor((seed / 2 ** 31) * k);
      };
      const stream = { streamId: "w", name: "live", chunkSize: 1024, version: 1, kind: "live", windowChunks: 24 };
      for (const s of [redis, memory]) await s.createStream({ ...stream, kind: "live", createdMs: 0 });
      const inFlight: number[] = [];
      let id = 0;
      let edge = -1;
      let dropped = 0;
      let low = 0;
      for (let step = 0; step < 300; step++) {
        const both = async <T>(f: (s: RedisSwarmStore | MemorySwarmStore) => Promise<T>) => {
          const [x, y] = await Promise.all([f(redis), f(memory)]);
          assert.deepEqual(x, y, `step ${step}`);
          return x;
        };
        const peer = `p${rnd(8)}`;
        const roll = rnd(12);
        const first = Math.max(0, low - 3 + rnd(Math.max(1, edge - low + 8)));
        const range = { first, last: first + rnd(8) };
        if (roll < 2) await both((s) => s.joinPeer("w", viewer(peer, [range]), step).then((j) => j.joined));
        else if (roll < 5) await both((s) => s.addHoldings("w", peer, [range]));
        else if (roll < 7) {
          const t = {
            transferId: ++id,
            streamId: "w",
            fetcherId: peer,
            serverId: `p${rnd(8)}`,
            serverRole: "viewer" as const,
            range: { first, last: Math.min(range.last, edge) },
            startedMs: 0,
            expiresMs: 1e12,
          };
          if ((await both((s) => s.addTransfer(t, limits))) === "ok") inFlight.push(t.transferId);
        } else if (roll < 8 && inFlight.length > 0) {
          const tid = inFlight.splice(rnd(inFlight.length), 1)[0]!;
          await both((s) => s.takeTransfer("w", tid).then((t) => t?.transferId));
        } else if (roll < 10) {
          edge += 1 + rnd(6);
          await both((s) => s.raiseHigh("w", edge));
        } else if (roll < 11) {
          const to = Math.max(low + rnd(8), edge + 1 - stream.windowChunks);
          const r = await both((s) => s.raiseLow("w", to));
          low = Math.max(low, to);
          dropped += r.dropped.length;
        } else await both((s) => s.leavePeer("w", peer).then((d) => d.length));
        await both((s) => s.getStream("w").then((m) => [m?.low, m?.high]));
        await both((s) => s.availability("w", { first: 0, last: edge + 10 }));
        await both((s) => s.getPeer("w", peer).then((p) => p && [p.holdings.ranges(), p.uploads, p.downloads]));
        await both((s) => s.fetcherView("w", peer).then((v) => [v.low, v.high, v.epoch > 0, v.transfers]));
      }
      assert.ok(edge > 100 && dropped > 0, `the window moved (edge ${edge}) and dropped transfers (${dropped})`);
    } finally {
      await redis.close();
      await memory.close();
    }
  });

  it("reads availability windows of thousands of segments exactly", async () => {
    const store = new RedisSwarmStore(new Redis(server.url), { prefix: freshPrefix() });
    try {
      await store.createStream({ ...newStream("big"), size: 3000 * 1024 });
      const have = Array.from({ length: 1500 }, (_, i) => ({ first: 2 * i, last: 2 * i }));
      await store.joinPeer("big", viewer("odd", have), 0);
      const segs = await store.availability("big", { first: 1, last: 2999 });
      assert.equal(segs.length, 2999);
      segs.forEach((s, i) => assert.deepEqual(s, { first: i + 1, last: i + 1, count: i % 2 === 0 ? 0 : 1 }));
      assert.equal(await store.addHoldings("big", "odd", [{ first: 0, last: 2999 }]), 1500);
      assert.deepEqual(await store.availability("big", { first: 0, last: 2999 }), [{ first: 0, last: 2999, count: 1 }]);
    } finally {
      await store.close();
    }
  });

  it("rejects use after close", async () => {
    const store = new RedisSwarmStore(new Redis(server.url), { prefix: freshPrefix() });
    await store.close();
    await assert.rejects(store.getStream("x"), /closed/);
    await assert.rejects(store.availability("x", { first: 0, last: 1 }), /closed/);
  });
});

describe("openSwarmStore", () => {
  it("opens the memory store without a URL and Redis with one", async () => {
    const mem = await openSwarmStore();
    assert.ok(mem instanceof MemorySwarmStore);
    await mem.close();
    const store = await openSwarmStore(server.url, { prefix: freshPrefix() });
    assert.ok(store instanceof RedisSwarmStore);
    assert.equal(await store.streamCount(), 0);
    await store.close();
  });

  it("names the accepted forms for a bad URL and never shows a password", async () => {
    await assert.rejects(openSwarmStore("http://user:secret@host"), (e: Error) => {
      assert.match(e.message, /redis:\/\/, rediss:\/\/, redis\+cluster:\/\//);
      assert.doesNotMatch(e.message, /secret/);
      return true;
    });
    assert.equal(redactUrl("redis://u:pw@h:1"), "redis://u:***@h:1");
  });
});
