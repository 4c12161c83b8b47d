import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";
import { describeStream } from "../support/tracker.js";

/**
 * The cleanup leader SIGKILLed: the peers of its sessions stay in Redis (nobody
 * left the swarm), the other replica takes the cleanup lease and expires them,
 * and it still serves the stream.
 *
 * Timing: the tracker's cleanup lease lives 10 s (not settable from the command
 * line) and is renewed every third of that, so the survivor takes it between
 * 6.7 s and 13.3 s after the kill. The peer TTL is set to its minimum, 5 s;
 * peers were touched at most a third of it before the kill, so they are due
 * before the survivor can hold the lease, and go at its first sweep after that.
 */

const SIZE = 8 * 1024 * 1024 + 3;
const LEASE_MS = 10_000;
const PEER_TTL_S = 5;
/** Period of the peer refresh and expiry sweep: a third of the peer TTL. */
const SWEEP_MS = (PEER_TTL_S * 1000) / 3;
/** Slack for process scheduling and the 100 ms polling below. */
const SLACK_MS = 1_500;
const VIEWERS = 3;

async function isLeader(metricsUrl: string): Promise<boolean> {
  return (await metric(metricsUrl, "pdtp_tracker_cleanup_leader")) === 1;
}

describe("the cleanup leader SIGKILLed with peers in its sessions", { timeout: 90_000 }, () => {
  let dir: string;
  let redis: TestRedis;
  let sys: Services;
  const killed = new Set<Proc>();
  const viewers: Proc[] = [];
  const trackers: { proc: Proc; target: string; metricsUrl: string }[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-cleanup-leader-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/stream.bin"), randomBytes(SIZE));
    sys = new Services(dir);
    redis = await redisForTests();
    const [t1, t2, checksum, m1, m2, m3] = await freePorts(6);
    await sys.checksum(checksum!, m3!);
    for (const [port, metricsPort] of [
      [t1!, m1!],
      [t2!, m2!],
    ] as const) {
      const proc = await sys.tracker({
        port,
        checksum: checksum!,
        metricsPort,
        redis: redis.url,
        extra: ["--peer-ttl", `${PEER_TTL_S}`],
      });
      trackers.push({ proc, target: `127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` });
    }
  });

  after(async () => {
    for (const v of viewers) await v.kill("SIGKILL");
    await sys?.stop(killed);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the survivor takes the lease, expires the dead peers and still serves the stream", async () => {
    // Exactly one replica holds the lease once both have asked for it.
    let flags: boolean[] = [];
    for (let i = 0; i < 50; i++) {
      flags = await Promise.all(trackers.map((t) => isLeader(t.metricsUrl)));
      if (flags.filter(Boolean).length === 1) break;
      await sleep(100);
    }
    assert.equal(flags.filter(Boolean).length, 1, `cleanup_leader per replica: ${flags.join(",")}`);
    const leader = trackers[flags.indexOf(true)]!;
    const survivor = trackers[flags.indexOf(false)]!;

    // The seeder on the survivor, so the stream outlives the leader.
    const [data, m4] = await freePorts(2);
    await sys.seeder({ tracker: survivor.target, dataPort: data!, metricsPort: m4! });
    const source = await sha256File(join(dir, "media/stream.bin"));

    // Viewers on the leader, slow enough to be in its sessions when it dies.
    const slow = ["--max-download-rate", "1M", "--linger", "60", "-q"];
    for (let i = 0; i < VIEWERS; i++) {
      viewers.push(
        startNode(DSCLIENT, [`pdtp://${leader.target}/stream.bin`, "-o", `v${i}.bin`, ...slow], { cwd: dir }),
      );
    }
    let d = await describeStream(survivor.target, "stream.bin");
    for (let i = 0; i < 100 && d.peers < VIEWERS; i++) {
      await sleep(100);
      d = await describeStream(survivor.target, "stream.bin");
    }
    assert.deepEqual([d.peers, d.seeders], [VIEWERS, 1], "the survivor sees the leader's viewers in the swarm");
    assert.ok(await isLeader(leader.metricsUrl), "the leader still holds the lease");

    // Kill the leader: its sessions die with it and nobody leaves the swarm.
    // Then the viewers, so that no one can bring those peers back.
    killed.add(leader.proc);
    leader.proc.child.kill("SIGKILL");
    assert.equal(await leader.proc.exited, 137);
    const tKill = Date.now();
    for (const v of viewers) await v.kill("SIGKILL");

    // Watch the survivor as an operator would: its metric and its description of the stream.
    let tTakeover: number | undefined;
    let tExpired: number | undefined;
    /** Peers the survivor described at its last poll before it held the lease. */
    let peersBeforeTakeover: number | undefined;
    const deadline = tKill + LEASE_MS + LEASE_MS / 3 + SWEEP_MS + 2 * SLACK_MS;
    while (tExpired === undefined && Date.now() < deadline) {
      // peers first, then the lease: only the lease holder expires peers, so peers seen gone
      // are always followed by the lease seen held (the other order raced within one poll)
      const { peers, seeders } = await describeStream(survivor.target, "stream.bin");
      const leads = await isLeader(survivor.metricsUrl);
      const now = Date.now();
      assert.equal(seeders, 1, "the live seeder never expires");
      if (leads) tTakeover ??= now;
      else peersBeforeTakeover = peers;
      if (peers === 0) tExpired = Date.now();
      else await sleep(100);
    }
    assert.ok(tTakeover !== undefined, `the survivor never took the cleanup lease:\n${survivor.proc.stderr()}`);
    const takeover = tTakeover - tKill;
    assert.ok(takeover <= LEASE_MS + LEASE_MS / 3 + SLACK_MS, `takeover after ${takeover} ms`);
    assert.ok(tExpired !== undefined, `the dead peers never expired:\n${survivor.proc.stderr()}`);
    const expired = tExpired - tKill;
    // Due PEER_TTL_S after their last touch (at most a sweep before the kill), swept by the leader only.
    assert.ok(
      tExpired - Math.max(tTakeover, tKill + PEER_TTL_S * 1000) <= SWEEP_MS + SLACK_MS,
      `peers expired ${expired} ms after the kill, ${tExpired - tTakeover} ms after the takeover`,
    );
    // Nobody swept while no one held the lease, though the peers were due from 5 s on.
    assert.equal(peersBeforeTakeover, VIEWERS, "the peers stayed until the survivor held the lease");
    const sweptOut = survivor.proc.stdout().match(/"msg":"peer expired"/g)?.length ?? 0;
    assert.equal(sweptOut, VIEWERS, "the survivor logged each expiry");

    // A new viewer on the survivor still gets the stream's exact bytes.
    const late = startNode(DSCLIENT, [`pdtp://${survivor.target}/stream.bin`, "-o", "late.bin", "-q"], { cwd: dir });
    viewers.push(late);
    assert.equal(await late.exited, 0, late.stderr());
    assert.equal(await sha256File(join(dir, "late.bin")), source);
    console.log(
      `# cleanup leader SIGKILLed: survivor held the lease after ${takeover} ms, ` +
        `${VIEWERS} dead peers expired after ${expired} ms (peer ttl ${PEER_TTL_S} s, lease ${LEASE_MS / 1000} s)`,
    );
  });
});
