import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisClusterForTests, redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DSCLIENT, freePorts, metric, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * Two tracker replicas on one real Redis — standalone, then a local
 * 3-master Redis Cluster — any replica serves any peer, and peers of one
 * replica fetch from peers of the other.
 */
for (const [kind, open] of [
  ["standalone", redisForTests],
  ["a 3-master cluster", redisClusterForTests],
] as const) {
  describe(`two tracker replicas sharing swarm state in Redis (${kind})`, { timeout: 180_000 }, () => {
    let dir: string;
    let redis: TestRedis;
    let sys: Services;
    let trackers: number[];
    let trackerMetrics: string[];
    const size = 24 * 1024 * 1024 + 17;
    const name = `shared-${kind === "standalone" ? "s" : "c"}.bin`;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "ds-replicas-"));
      mkdirSync(join(dir, "media"));
      writeFileSync(join(dir, `media/${name}`), randomBytes(size));
      sys = new Services(dir);
      redis = await open();
      const [t1, t2, checksum, data, m1, m2, m3, m4] = await freePorts(8);
      trackers = [t1!, t2!];
      trackerMetrics = [`http://127.0.0.1:${m1}/metrics`, `http://127.0.0.1:${m2}/metrics`];
      await sys.checksum(checksum!, m3!);
      await sys.tracker({ port: t1!, checksum: checksum!, metricsPort: m1!, redis: redis.url });
      await sys.tracker({ port: t2!, checksum: checksum!, metricsPort: m2!, redis: redis.url });
      await sys.seeder({ tracker: `127.0.0.1:${t1}`, dataPort: data!, metricsPort: m4! });
    });

    after(async () => {
      await sys?.stop();
      await redis?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test("six clients, three on each replica, all get identical bytes and cross replicas for them", async () => {
      const source = await sha256File(join(dir, `media/${name}`));
      // lingering until the slowest is done, so no source leaves while its bytes are being reported
      const limit = ["--max-download-rate", "16M", "--max-upload-rate", "16M", "--linger", "5"];
      const clients = [0, 1, 2, 3, 4, 5].map((i) =>
        startNode(DSCLIENT, [`pdtp://127.0.0.1:${trackers[i % 2]}/${name}`, "-o", `c${i}.bin`, "-q", ...limit], {
          cwd: dir,
        }),
      );
      const codes = await Promise.all(clients.map((c) => c.exited));
      codes.forEach((code, i) => assert.equal(code, 0, clients[i]!.stderr()));
      for (let i = 0; i < 6; i++) assert.equal(await sha256File(join(dir, `c${i}.bin`)), source, `c${i}.bin`);
      // The replica without the seeder fed its three clients mostly from peers.
      const fromPeers = await metric(trackerMetrics[1]!, "pdtp_tracker_delivered_bytes_total", { source: "peer" });
      const fromSeeder = await metric(trackerMetrics[1]!, "pdtp_tracker_delivered_bytes_total", { source: "seeder" });
      assert.ok(fromPeers > 0, "clients of replica 2 fetched from peers");
      assert.ok(
        fromPeers + fromSeeder >= 3 * size,
        `replica 2 accounted ${fromPeers} bytes from peers and ${fromSeeder} from the seeder for 3 x ${size}`,
      );
      for (const [i, url] of trackerMetrics.entries()) {
        const remote = await metric(url, "pdtp_tracker_remote_peer_bytes_total");
        assert.ok(remote > 0, `clients of replica ${i + 1} fetched from peers connected to the other replica`);
      }
    });

    test("either replica describes the stream", async () => {
      for (const port of trackers) {
        const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${port}/nope.bin`, "-q"], { cwd: dir });
        assert.equal(await c.exited, 3);
      }
    });
  });
}
