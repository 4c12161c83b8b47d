import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import { swarmStoreContract } from "./contract.js";
import { openSwarmStore, redisClientFor } from "./open.js";
import { RedisSwarmStore } from "./redis.js";
import { redisClusterForTests, type TestRedis } from "./testing/index.js";

const cluster: TestRedis = await redisClusterForTests();
after(() => cluster.stop());
let n = 0;

swarmStoreContract(
  "redis cluster",
  async () => new RedisSwarmStore(redisClientFor(cluster.url), { prefix: `c${process.pid}-${++n}` }),
);

describe("RedisSwarmStore on a cluster", () => {
  it("spreads streams over the masters and keeps working across slots", async () => {
    const store = await openSwarmStore(cluster.url, { prefix: `c${process.pid}-spread` });
    try {
      const ids = Array.from({ length: 12 }, (_, i) => `stream-${i}`);
      for (const id of ids) {
        await store.createStream({
          streamId: id,
          name: `n/${id}`,
          size: 4096,
          chunkSize: 1024,
          version: 1,
          kind: "file",
          createdMs: 0,
        });
        await store.markReady(id, Uint8Array.of(1), 1);
        await store.joinPeer(
          id,
          { peerId: "p", host: "h", port: 1, role: "viewer", mode: "bulk", position: 0, have: [] },
          0,
        );
      }
      assert.deepEqual((await store.listStreams()).map((s) => s.streamId).sort(), [...ids].sort());
      assert.equal((await store.expirePeers(10, 5)).length, ids.length);
      // the streams' keys live on more than one master
      const counts = await Promise.all(
        cluster.nodes.map(async ({ host, port }) => {
          const node = new Redis(port, host);
          try {
            return await node.dbsize();
          } finally {
            node.disconnect();
          }
        }),
      );
      assert.ok(counts.filter((c) => c > 0).length >= 2, `keys per master: ${counts.join(",")}`);
    } finally {
      await store.close();
    }
  });
});
