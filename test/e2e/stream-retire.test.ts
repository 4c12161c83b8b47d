import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DSCLIENT, freePorts, metric, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";
import { describeStream } from "../support/tracker.js";

/**
 * A stream nobody is in retires: the seeder leaves, and after
 * --stream-retire-after (1 s here; the sweep looks every second, so it goes
 * within about 2 s, 15 s allowed) no key of the stream is left in Redis and
 * the tracker no longer knows its name. The seeder started again publishes it
 * afresh and a viewer gets the same bytes.
 */

const SIZE = 3 * 1024 * 1024 + 7;

/** Keys of streams (`ds:{id}:…`) in Redis, by SCAN. */
async function streamKeys(redis: Redis): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", "ds:{*", "COUNT", 1000);
    out.push(...keys);
    cursor = next;
  } while (cursor !== "0");
  return out;
}

describe("a stream with no seeder and no viewer", { timeout: 120_000 }, () => {
  let dir: string;
  let redis: TestRedis;
  let admin: Redis;
  let sys: Services;
  let target: string;
  let trackerMetrics: string;
  let seederPorts: number[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-stream-retire-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/clip.bin"), randomBytes(SIZE));
    sys = new Services(dir);
    redis = await redisForTests();
    admin = new Redis(redis.url);
    const [tracker, checksum, m1, m2, data, m3] = await freePorts(6);
    seederPorts = [data!, m3!];
    await sys.checksum(checksum!, m2!);
    await sys.tracker({
      port: tracker!,
      checksum: checksum!,
      metricsPort: m1!,
      redis: redis.url,
      extra: ["--stream-retire-after", "1"],
    });
    target = `127.0.0.1:${tracker}`;
    trackerMetrics = `http://127.0.0.1:${m1}/metrics`;
  });

  after(async () => {
    await admin?.quit();
    await sys?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const download = async (out: string) => {
    const c = startNode(DSCLIENT, [`pdtp://${target}/clip.bin`, "-o", out, "--quiet"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, out)), await sha256File(join(dir, "media/clip.bin")));
  };

  test("retires once the seeder left, leaving no key, and is published afresh when it comes back", async () => {
    const seeder = await sys.seeder({ tracker: target, dataPort: seederPorts[0]!, metricsPort: seederPorts[1]! });
    await download("first.bin");
    assert.ok((await streamKeys(admin)).length > 0, "the stream is in Redis while its seeder is in it");
    await sleep(3000);
    assert.equal((await describeStream(target, "clip.bin")).seeders, 1, "a stream with its seeder never retires");

    sys.procs.splice(sys.procs.indexOf(seeder), 1);
    assert.equal(await seeder.kill("SIGTERM"), 0);
    let left = await streamKeys(admin);
    for (let i = 0; i < 150 && left.length > 0; i++) {
      await sleep(100);
      left = await streamKeys(admin);
    }
    assert.deepEqual(left, [], "no key of the stream is left 15 s after its seeder left");
    assert.equal(await admin.hlen("ds:names"), 0, "its name is gone");
    await assert.rejects(describeStream(target, "clip.bin"), /NOT_FOUND|not found|no stream/i);
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_streams_retired_total"), 1, "the retirement counted");

    await sys.seeder({ tracker: target, dataPort: seederPorts[0]!, metricsPort: seederPorts[1]! });
    await download("second.bin");
  });
});
