import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";

/**
 * Two tracker replicas on one real Redis: any replica serves any peer, and
 * peers of one replica fetch from peers of the other.
 */
describe("two tracker replicas sharing swarm state in Redis", { timeout: 180_000 }, () => {
  let dir: string;
  let redis: TestRedis;
  const procs: Proc[] = [];
  let trackers: number[];
  let trackerMetrics: string[];
  const size = 24 * 1024 * 1024 + 17;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-replicas-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/shared.bin"), randomBytes(size));
    redis = await redisForTests();
    const [t1, t2, checksum, data, m1, m2, m3, m4] = await freePorts(8);
    trackers = [t1!, t2!];
    trackerMetrics = [`http://127.0.0.1:${m1}/metrics`, `http://127.0.0.1:${m2}/metrics`];
    const start = (args: string[]) => {
      const p = startNode(DISTRIBUSTREAM, [...args, "--log-level", "info"], { cwd: dir });
      procs.push(p);
      return p;
    };
    await start(["checksum", "--port", `${checksum}`, "--metrics-port", `${m3}`]).waitFor(/checksum service listening/);
    // The first replica creates the shared ticket key; the second loads it (a Secret in Kubernetes).
    for (const [i, port] of trackers.entries()) {
      await start([
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        `${port}`,
        "--redis",
        redis.url,
        "--checksum",
        `127.0.0.1:${checksum}`,
        "--metrics-port",
        `${[m1, m2][i]}`,
      ]).waitFor(/tracker listening/);
    }
    await start([
      "seeder",
      "--tracker",
      `127.0.0.1:${t1}`,
      "--media",
      "media",
      "--data-host",
      "127.0.0.1",
      "--data-port",
      `${data}`,
      "--metrics-port",
      `${m4}`,
    ]).waitFor(/published: ready/, 30_000);
  });

  after(async () => {
    for (const p of procs.reverse()) assert.equal(await p.kill("SIGTERM"), 0, p.stderr());
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("six clients, three on each replica, all get identical bytes and cross replicas for them", async () => {
    const source = await sha256File(join(dir, "media/shared.bin"));
    const limit = ["--max-download-rate", "16M", "--max-upload-rate", "16M", "--linger", "2"];
    const clients = [0, 1, 2, 3, 4, 5].map((i) =>
      startNode(DSCLIENT, [`pdtp://127.0.0.1:${trackers[i % 2]}/shared.bin`, "-o", `c${i}.bin`, "-q", ...limit], {
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
    assert.ok(fromPeers + fromSeeder >= 3 * size, "replica 2 accounted its clients' bytes");
  });

  test("either replica describes the stream", async () => {
    for (const port of trackers) {
      const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${port}/nope.bin`, "-q"], { cwd: dir });
      assert.equal(await c.exited, 3);
    }
  });
});
