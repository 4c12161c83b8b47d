import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * A viewer behind NAT: it runs in a network namespace whose firewall drops
 * every incoming SYN (outgoing connections only), joined to the host by a
 * veth pair; the tracker, seeder, dashboard and another viewer run outside on
 * the host end of the veth. The tracker's connect-back probe finds the
 * viewer's data port unreachable: it downloads, nobody is ever directed to
 * it, and the metrics and the dashboard count it.
 */

const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  const probe = run("ip", ["netns", "list"]);
  if (probe.error || probe.status !== 0) return `\`ip netns\` is unavailable: ${probe.error?.message ?? probe.stderr}`;
  return false;
}

const NS = `dsnat-${process.pid}`;
/** A /30 of its own on the veth: nothing leaves the machine. */
const NET = `10.213.${process.pid % 250}`;
const HOST_IP = `${NET}.1`;
const NS_IP = `${NET}.2`;
const VETH = `dsn${process.pid % 100000}`;

function sh(args: string[]): void {
  const r = run(args[0]!, args.slice(1));
  if (r.error || r.status !== 0) throw new Error(`${args.join(" ")} failed: ${r.error?.message ?? r.stderr}`);
}

function setUpNamespace(): void {
  sh(["ip", "netns", "add", NS]);
  sh(["ip", "link", "add", `${VETH}a`, "type", "veth", "peer", "name", `${VETH}b`]);
  sh(["ip", "link", "set", `${VETH}b`, "netns", NS]);
  sh(["ip", "addr", "add", `${HOST_IP}/30`, "dev", `${VETH}a`]);
  sh(["ip", "link", "set", `${VETH}a`, "up"]);
  sh(["ip", "netns", "exec", NS, "ip", "addr", "add", `${NS_IP}/30`, "dev", `${VETH}b`]);
  sh(["ip", "netns", "exec", NS, "ip", "link", "set", `${VETH}b`, "up"]);
  sh(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
  // outgoing connections only: a SYN that opens a connection to it is dropped (a NAT with no port mapping)
  const fw = run("ip", ["netns", "exec", NS, "iptables", "-A", "INPUT", "-p", "tcp", "--syn", "-j", "DROP"]);
  if (fw.error || fw.status !== 0) {
    throw new Error(`iptables in the namespace failed (apt-get install iptables): ${fw.error?.message ?? fw.stderr}`);
  }
}

function tearDownNamespace(): void {
  // the veth pair goes with the namespace; the host end is removed too in case the move failed
  run("ip", ["link", "del", `${VETH}a`]);
  run("ip", ["netns", "del", NS]);
}

/** dsclient inside the namespace (`ip netns exec`), its output recorded. */
function viewerInNamespace(args: string[], cwd: string): Proc {
  const child = spawn("ip", ["netns", "exec", NS, process.execPath, DSCLIENT, ...args], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const exited = new Promise<number>((r) => child.on("exit", (code, signal) => r(code ?? (signal ? 128 : 0))));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: () => Promise.reject(new Error("not used")),
    async kill(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

const skip = skipReason();

describe("a viewer behind NAT", { timeout: 120_000, skip }, () => {
  let dir: string;
  let redis: TestRedis;
  let sys: Services;
  let natViewer: Proc | undefined;
  let trackerMetrics: string;
  let dashboard: string;
  let tracker: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-nat-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/nat.bin"), randomBytes(3 * 1024 * 1024 + 77));
    tearDownNamespace(); // what a killed earlier run of this PID left
    setUpNamespace();
    redis = await redisForTests();
    sys = new Services(dir);
    const [pdtp, checksum, data, m1, m2, m3, dash] = await freePorts(7);
    tracker = `${HOST_IP}:${pdtp}`;
    trackerMetrics = `http://127.0.0.1:${m2}/metrics`;
    dashboard = `http://127.0.0.1:${dash}`;
    await sys.checksum(checksum!, m1!);
    const t = sys.start(
      ["tracker", "--host", HOST_IP, "--port", `${pdtp}`, "--checksum", `127.0.0.1:${checksum}`].concat(
        ["--metrics-port", `${m2}`, "--redis", redis.url, "--insecure-open-seeding"],
        process.env.NAT_TEST_SKIP_PROBE ? ["--skip-peer-probe"] : [],
      ),
    );
    await t.waitFor(/tracker listening/);
    const seeder = sys.start(
      ["seeder", "--tracker", tracker, "--media", "media", "--data-host", HOST_IP].concat([
        "--data-port",
        `${data}`,
        "--metrics-port",
        `${m3}`,
      ]),
    );
    await seeder.waitFor(/published: ready/, 30_000);
    const d = sys.start(["dashboard", "--redis", redis.url, "--port", `${dash}`]);
    await d.waitFor(/dashboard/i);
  });

  after(async () => {
    try {
      await natViewer?.kill("SIGKILL");
      await sys?.stop();
    } finally {
      tearDownNamespace();
      await redis?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  test("downloads, is never a source, and is counted as unreachable", async () => {
    const url = `pdtp://${tracker}/nat.bin`;
    const want = await sha256File(join(dir, "media/nat.bin"));
    // the NATed viewer first, lingering with the whole file: without the probe it is the source the planner prefers
    mkdirSync(join(dir, "a"));
    natViewer = viewerInNamespace(
      [url, "-o", "nat.bin", "-q", "--linger", "60", "--log-level", "info"],
      join(dir, "a"),
    );
    const deadline = Date.now() + 60_000;
    while (!/download complete/.test(natViewer.stderr())) {
      assert.ok(Date.now() < deadline, `the NATed viewer did not complete:\n${natViewer.stderr()}`);
      assert.equal(natViewer.child.exitCode, null, `the NATed viewer exited:\n${natViewer.stderr()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await sha256File(join(dir, "a/nat.bin")), want, "the NATed viewer's file");
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_unreachable_peers"), 1);
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_peer_probes_total", { result: "unreachable" }), 1);

    // a viewer outside: every byte it gets must come from the seeder, and it is never sent to the NATed one
    mkdirSync(join(dir, "b"));
    const outside = startNode(DSCLIENT, [url, "-o", "nat.bin", "-q", "--log-level", "info"], { cwd: join(dir, "b") });
    assert.equal(await outside.exited, 0, outside.stderr());
    assert.equal(await sha256File(join(dir, "b/nat.bin")), want, "the outside viewer's file");
    assert.ok(!outside.stderr().includes(NS_IP), `the outside viewer never heard of ${NS_IP}:\n${outside.stderr()}`);
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_peer_probes_total", { result: "reachable" }), 1);
    // without the probe the outside viewer is sent to the NATed one: 3 transfers fail or time out, then the ban
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_transfers_failed_total"), 0, "no directed transfer failed");
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_sources_banned_total"), 0);
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_delivered_bytes_total", { source: "peer" }), 0);

    // the dashboard's stats JSON, from the replicas' summaries (about once a second)
    let stats: { totals: { unreachablePeers: number }; fleet: { replicas: { unreachablePeers: number }[] } };
    const until = Date.now() + 15_000;
    for (;;) {
      stats = (await (await fetch(`${dashboard}/api/stats.json`)).json()) as typeof stats;
      if (stats.totals.unreachablePeers === 1 || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(stats.totals.unreachablePeers, 1, JSON.stringify(stats.totals));
    assert.deepEqual(
      stats.fleet.replicas.map((r) => r.unreachablePeers),
      [1],
    );
  });
});
