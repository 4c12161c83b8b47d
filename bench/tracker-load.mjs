#!/usr/bin/env node
// Tracker capacity with simulated peers (issue 5, scenario tracker-capacity; issue 3, performance):
//   node bench/tracker-load.mjs [--peers N] [--replicas 1|2] [--seconds S] [--mib M] [--rate R] [--prefill F]
//                               [--sessions-per-connection N]
// Starts a real redis-server, a checksum service, 1 or 2 tracker replicas on that Redis and a real
// seeder of one M MiB file (default 64), waits until the stream is READY, then opens N simulated
// viewer Sessions (round-robin over the replicas, 100 per 100 ms, 50 to an HTTP/2 connection unless
// --sessions-per-connection says otherwise; a real viewer has a connection of its own). A viewer says Hello with a fake
// data port, joins the stream in BULK mode and answers each directive with an OK report whose
// verified range is the directive's range. No data moves: with --rate 0 (the default) reports go back
// at once, so the tracker schedules and writes to Redis at full speed (a stress test); with --rate R
// each viewer behaves as if its download link carried R MiB/s (a directive's report comes when its
// bytes would have arrived, transfers queued on the link), which is the load of a real swarm, and
// `linkUtilisation` says how busy the tracker kept the viewers' links (1 = never waiting for it).
// --prefill F: each viewer joins already holding a random fraction F of the stream (in 16-chunk
// blocks), as in a swarm past its start, so the figures measure the tracker rather than how fast
// the first copies leave the seeder. A viewer that holds every chunk Leaves and Joins again, so the load
// lasts the whole measurement. Figures (JSON on stdout) are taken over S seconds after the ramp:
// sessions held, directives/s, reports/s, CPU seconds per tracker process, Redis commands per
// directive, completions. Every process started here is stopped by its PID; all on 127.0.0.1.
// --dashboard: a `distribustream dashboard` process on the same Redis as well; after the tracker's
// measurement, its CPU and the Redis commands it sends (MONITOR, counted by its own connections) are
// measured over S seconds with no browser open, then with --browsers SSE clients (half on the streams
// page, half on the stream's page) reading its updates: its cost must not grow with the browsers.
// --minutes M --churn F (soak, `npm run bench -- soak`): instead of the capacity figures, M minutes in
// which a fraction F of the sessions leaves every second (Leave, then a half-close) and as many new
// ones join; every 10 s the tracker's RSS and heap, Redis used_memory and its key count are sampled
// (slopes by least squares over the samples after the first fifth). Then every viewer leaves: the
// tracker's transfer accounting must balance (started = done + failed by reason: no directive lost),
// and the keyspace is SCANned for what is left, with the seeder still in and again after it left.
import { spawn, execFileSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { randomBytes, randomFillSync } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort } from "./lib/util.mjs";
/* global AbortController */
import { performance } from "node:perf_hooks";
import { credentials } from "@grpc/grpc-js";
import {
  PeerMessage,
  PeerRole,
  TrackerClient,
  TransferOutcome,
  WantMode,
  DEFAULT_CHUNK_SIZE,
} from "@distribustream/pdtp";

const root = fileURLToPath(new URL("..", import.meta.url));
const DS = join(root, "cmd/distribustream/bin/distribustream.js");
const MiB = 1024 * 1024;
const STREAM = "bench.bin";

const { values: opt } = parseArgs({
  options: {
    peers: { type: "string", default: "500" },
    replicas: { type: "string", default: "1" },
    seconds: { type: "string", default: "20" },
    mib: { type: "string", default: "64" },
    rate: { type: "string", default: "0" },
    prefill: { type: "string", default: "0" },
    dashboard: { type: "boolean", default: false },
    browsers: { type: "string", default: "10" },
    minutes: { type: "string", default: "0" },
    churn: { type: "string", default: "0.01" },
    "tracker-cpus": { type: "string", default: "0" },
    "sessions-per-connection": { type: "string", default: "50" },
  },
});
const PEERS = Number(opt.peers);
const REPLICAS = Number(opt.replicas);
const SECONDS = Number(opt.seconds);
const FILE_MIB = Number(opt.mib);
const RATE = Number(opt.rate) * MiB; // bytes per second per viewer; 0: instant
const PREFILL = Number(opt.prefill);
const DASHBOARD = opt.dashboard;
const BROWSERS = Number(opt.browsers);
const MINUTES = Number(opt.minutes);
const CHURN = Number(opt.churn);
const TRACKER_CPUS = Number(opt["tracker-cpus"]); // each replica's CPU cap in cores (a cgroup); 0: none
// viewer sessions sharing one HTTP/2 connection: a real viewer has one of its own (1), which costs the
// tracker a connection's memory per session; 50 keeps the load generator's file descriptors few
const SESSIONS_PER_CONNECTION = Number(opt["sessions-per-connection"]);
if (
  !(PEERS > 0) ||
  ![1, 2].includes(REPLICAS) ||
  !(SECONDS > 0) ||
  !(FILE_MIB > 0) ||
  !(RATE >= 0) ||
  !(PREFILL >= 0 && PREFILL < 1) ||
  !(Number.isInteger(BROWSERS) && BROWSERS >= 0) ||
  !(MINUTES >= 0) ||
  !(CHURN >= 0 && CHURN < 1) ||
  !(TRACKER_CPUS >= 0) ||
  !(Number.isInteger(SESSIONS_PER_CONNECTION) && SESSIONS_PER_CONNECTION >= 1)
) {
  console.error(
    "usage: tracker-load.mjs [--peers N>0] [--replicas 1|2] [--seconds S>0] [--mib M>0] [--rate MiB/s>=0] [--prefill 0<=F<1] [--dashboard [--browsers N]] [--minutes M --churn 0<=F<1] [--tracker-cpus CORES] [--sessions-per-connection N>=1]",
  );
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- processes --------------------------------------------------------------

const procs = [];

/** Spawns a process whose output is kept (last 64 KiB) and can be waited on for a line. */
function start(name, cmd, args, cwd) {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const waiters = [];
  const onData = (d) => {
    out = (out + d).slice(-65536);
    for (const w of [...waiters]) if (w.re.test(out)) w.done();
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const exited = new Promise((r) => child.on("exit", (code, sig) => r(code ?? sig)));
  const p = {
    name,
    child,
    pid: child.pid,
    exited,
    output: () => out,
    waitFor(re, ms = 30_000) {
      return new Promise((resolve, reject) => {
        if (re.test(out)) return resolve();
        const t = setTimeout(() => reject(new Error(`${name}: no ${re} within ${ms} ms\n${out.slice(-4000)}`)), ms);
        const w = {
          re,
          done: () => {
            clearTimeout(t);
            waiters.splice(waiters.indexOf(w), 1);
            resolve();
          },
        };
        waiters.push(w);
        void exited.then((code) => {
          clearTimeout(t);
          reject(new Error(`${name} exited (${code}) before ${re}\n${out.slice(-4000)}`));
        });
      });
    },
  };
  procs.push(p);
  return p;
}

async function stopAll() {
  for (const p of [...procs].reverse()) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) continue;
    process.kill(p.pid, "SIGTERM");
    const t = setTimeout(() => p.child.exitCode === null && process.kill(p.pid, "SIGKILL"), 10_000);
    await p.exited;
    clearTimeout(t);
  }
  for (const g of cpuGroups.splice(0)) {
    try {
      rmdirSync(g); // empty once its process exited
    } catch (err) {
      console.error(`tracker-load: cgroup ${g} left behind: ${err.message}`);
    }
  }
}

// ---- CPU caps ----------------------------------------------------------------

const cpuGroups = [];

/**
 * Holds process `pid` to `cores` of CPU with a cgroup of its own (cgroup v2's cpu.max, else v1's
 * CFS quota), so that replicas compared 1 against 2 each get the same CPU whatever the load
 * generator and Redis beside them take. Throws when neither hierarchy can be written (not root).
 */
function capCpu(pid, name, cores) {
  const period = 100_000;
  const quota = Math.max(1000, Math.round(cores * period));
  const v2 = "/sys/fs/cgroup/cgroup.controllers";
  let dir;
  try {
    if (readFileSync(v2, "utf8").split(/\s+/).includes("cpu")) {
      dir = `/sys/fs/cgroup/ds-bench-${process.pid}-${name}`;
      mkdirSync(dir);
      writeFileSync(join(dir, "cpu.max"), `${quota} ${period}`);
    }
  } catch (err) {
    if (err.code !== "ENOENT") throw err;
  }
  if (!dir) {
    dir = `/sys/fs/cgroup/cpu/ds-bench-${process.pid}-${name}`;
    mkdirSync(dir);
    writeFileSync(join(dir, "cpu.cfs_period_us"), `${period}`);
    writeFileSync(join(dir, "cpu.cfs_quota_us"), `${quota}`);
  }
  cpuGroups.push(dir);
  writeFileSync(join(dir, "cgroup.procs"), `${pid}`);
}

/** utime + stime of a process in seconds, from /proc/PID/stat. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function redisCommands(port) {
  const info = execFileSync("redis-cli", ["-p", `${port}`, "info", "stats"], { encoding: "utf8" });
  const m = /total_commands_processed:(\d+)/.exec(info);
  if (!m) throw new Error(`redis-cli info stats has no total_commands_processed:\n${info}`);
  return Number(m[1]);
}

/** Sum over the trackers of the metrics the figures use. */
async function trackerMetrics(trackers) {
  const names = {
    plans: "pdtp_tracker_plan_seconds_count",
    started: "pdtp_tracker_transfers_started_total",
    done: "pdtp_tracker_transfers_done_total",
    failed: "pdtp_tracker_transfers_failed_total",
  };
  const out = { plans: 0, started: 0, done: 0, failed: 0 };
  for (const t of trackers) {
    const text = await (await fetch(`http://127.0.0.1:${t.metricsPort}/metrics`)).text();
    for (const [k, name] of Object.entries(names)) {
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) out[k] += Number(m[1]);
    }
    for (const m of text.matchAll(/^pdtp_tracker_transfers_failed_total\{reason="(\w+)"\} (\S+)$/gm)) {
      out[`failed_${m[1]}`] = (out[`failed_${m[1]}`] ?? 0) + Number(m[2]);
    }
  }
  return out;
}

/** Calls per command (commands run inside Lua scripts count too), from INFO commandstats. */
function redisCommandStats(port) {
  const info = execFileSync("redis-cli", ["-p", `${port}`, "info", "commandstats"], { encoding: "utf8" });
  const calls = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]] = Number(m[2]);
  return calls;
}

// ---- the dashboard's cost --------------------------------------------------------

/** Local ports of the TCP sockets process `pid` holds to 127.0.0.1:`remotePort` (its Redis connections). */
function socketPortsTo(pid, remotePort) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  const ports = new Set();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9])) continue;
      const local = parseInt(f[1].split(":").at(-1), 16);
      const remote = parseInt(f[2].split(":").at(-1), 16);
      if (remote === remotePort) ports.add(local);
    }
  }
  return ports;
}

/**
 * Counts, for `seconds`, the commands Redis receives from these client ports (MONITOR; a script counts
 * once). The lines are counted by grep in a pipeline of their own: MONITOR prints every command of the
 * busy trackers, more than this load generator could parse on the side.
 */
async function monitorCommands(redisPort, ports, seconds) {
  const pattern = `^[0-9.]+ \\[[0-9]+ 127\\.0\\.0\\.1:(${[...ports].join("|")})\\]`;
  const sh = spawn("sh", ["-c", `timeout ${seconds} redis-cli -p ${redisPort} monitor | grep -cE '${pattern}'`], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  sh.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  await new Promise((r) => sh.on("exit", r));
  return { perSecond: +(Number(out.trim() || 0) / seconds).toFixed(1) };
}

/** A browser's event stream: reads and discards what the dashboard sends; counts the bytes. */
function sseClient(url) {
  const ac = new AbortController();
  const c = { bytes: 0, close: () => ac.abort() };
  void (async () => {
    try {
      const res = await fetch(url, { signal: ac.signal });
      const reader = res.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        c.bytes += value.length;
      }
    } catch {
      /* closed */
    }
  })();
  return c;
}

/** A sample of the dashboard's own /metrics. */
async function dashboardMetric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
}

/** The dashboard's CPU (cores) and Redis commands/s with no browser, then with BROWSERS open. */
async function measureDashboard(dash, redisPort) {
  const ports = socketPortsTo(dash.pid, redisPort);
  const base = `http://127.0.0.1:${dash.port}`;
  const stats = await (await fetch(`${base}/api/stats.json`)).json();
  const streamId = stats.streams[0]?.streamId ?? "";
  const phase = async (browsers) => {
    const clients = [];
    for (let i = 0; i < browsers; i++) {
      clients.push(
        sseClient(i % 2 === 0 || !streamId ? `${base}/api/events` : `${base}/api/events?stream=${streamId}`),
      );
    }
    await sleep(2000);
    const cpu0 = cpuSeconds(dash.pid);
    const updates0 = await dashboardMetric(base, "pdtp_dashboard_updates_total");
    const t0 = process.hrtime.bigint();
    const before = clients.map((c) => ({ ...c }));
    const redis = await monitorCommands(redisPort, ports, SECONDS);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (cpuSeconds(dash.pid) - cpu0) / secs;
    const updates = (await dashboardMetric(base, "pdtp_dashboard_updates_total")) - updates0;
    const listening = await dashboardMetric(base, "pdtp_dashboard_sse_clients");
    const bytes = clients.reduce((n, c, i) => n + c.bytes - before[i].bytes, 0);
    for (const c of clients) c.close();
    return {
      browsers,
      browsersListening: listening,
      cpuCores: +cpu.toFixed(3),
      redisCommandsPerSecond: redis.perSecond,
      updatesPerSecond: +(updates / secs).toFixed(2),
      bytesPerBrowserPerSecond: browsers > 0 ? Math.round(bytes / browsers / secs) : null,
    };
  };
  const idle = await phase(0);
  const watched = await phase(BROWSERS);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const sum = Number(/^pdtp_dashboard_update_seconds_sum (\S+)$/m.exec(metrics)?.[1] ?? NaN);
  const count = Number(/^pdtp_dashboard_update_seconds_count (\S+)$/m.exec(metrics)?.[1] ?? NaN);
  return {
    redisConnections: ports.size,
    noBrowser: idle,
    withBrowsers: watched,
    updateMsMean: count > 0 ? +((sum / count) * 1000).toFixed(1) : null,
    replicasSeen: stats.fleet.replicas.filter((r) => r.alive).length,
  };
}

// ---- simulated viewers --------------------------------------------------------

const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_permit_without_calls": 1,
};
const clients = new Map();
/** One HTTP/2 connection per SESSIONS_PER_CONNECTION viewers of a replica (a distinct option keeps them apart). */
function clientFor(target, slot) {
  const key = `${target}#${slot}`;
  let c = clients.get(key);
  if (!c) {
    c = new TrackerClient(target, credentials.createInsecure(), { ...CHANNEL_OPTIONS, "bench.connection": slot });
    clients.set(key, c);
  }
  return c;
}

const stats = {
  opened: 0,
  welcomed: 0,
  joined: 0,
  viewersJoined: 0,
  directiveMessages: 0,
  directives: 0,
  reportMessages: 0,
  reports: 0,
  bytes: 0,
  completions: 0,
  rejoins: 0,
  notices: 0,
  cancels: 0,
  sessionsEnded: 0,
  endStatuses: {},
};

const rangeOf = (d) => ({ first: d.range?.first ?? 0, last: d.range?.last ?? d.range?.first ?? 0 });

class Viewer {
  constructor(index, target) {
    this.index = index;
    this.target = target;
    this.held = 0; // chunks reported verified in the current join
    this.chunkCount = 0;
    this.streamId = "";
    this.completedOnce = false;
    this.closing = false;
    this.joinedOnce = false;
    this.link = []; // --rate: transfers queued on this viewer's download link, the one in progress first
    this.linkTimer = undefined;
  }

  open() {
    const client = clientFor(this.target, Math.floor(this.index / SESSIONS_PER_CONNECTION));
    const call = client.session();
    this.call = call;
    stats.opened++;
    call.on("error", () => {});
    call.on("status", (s) => {
      stats.sessionsEnded++;
      if (!this.closing)
        stats.endStatuses[`${s.code} ${s.details}`] = (stats.endStatuses[`${s.code} ${s.details}`] ?? 0) + 1;
    });
    call.on("data", (msg) => this.onMessage(msg));
    call.write(
      PeerMessage.fromPartial({
        body: {
          $case: "hello",
          value: {
            role: PeerRole.PEER_ROLE_VIEWER,
            dataPort: 1 + (this.index % 65535),
            agent: "tracker-load/0",
            peerKey: randomBytes(32),
          },
        },
      }),
    );
  }

  /** Starts the next transfer on the link: it is reported after bytes / rate. */
  nextOnLink() {
    const head = this.link[0];
    if (!head || this.closing) return;
    const bytes = (rangeOf(head.d).last - rangeOf(head.d).first + 1) * DEFAULT_CHUNK_SIZE;
    this.linkTimer = setTimeout(
      () => {
        this.link.shift();
        this.linkTimer = undefined;
        this.report([head.d], Math.round(performance.now() - head.received));
        this.nextOnLink();
      },
      (bytes / RATE) * 1000,
    );
    this.linkTimer.unref();
  }

  join() {
    this.held = 0;
    clearTimeout(this.linkTimer);
    this.linkTimer = undefined;
    this.link = [];
    const have = [];
    if (PREFILL > 0) {
      const chunks = Math.ceil((FILE_MIB * MiB) / DEFAULT_CHUNK_SIZE);
      for (let first = 0; first < chunks; first += 16) {
        if (Math.random() >= PREFILL) continue;
        const last = Math.min(chunks - 1, first + 15);
        if (have.length > 0 && have[have.length - 1].last === first - 1) have[have.length - 1].last = last;
        else have.push({ first, last });
        this.held += last - first + 1;
      }
    }
    this.call.write(
      PeerMessage.fromPartial({
        body: { $case: "join", value: { name: STREAM, mode: WantMode.WANT_MODE_BULK, have } },
      }),
    );
  }

  onMessage(msg) {
    const body = msg.body;
    if (!body) return;
    switch (body.$case) {
      case "welcome":
        stats.welcomed++;
        this.join();
        break;
      case "joined":
        stats.joined++;
        if (!this.joinedOnce) stats.viewersJoined++;
        this.joinedOnce = true;
        this.streamId = body.value.descriptor?.streamId ?? "";
        this.chunkCount = Number(body.value.descriptor?.chunkCount ?? 0);
        break;
      case "directives": {
        const ds = body.value.directives;
        stats.directiveMessages++;
        stats.directives += ds.length;
        if (RATE === 0) {
          this.report(ds);
          break;
        }
        // the link carries one transfer after another; each is reported when its bytes are through
        const received = performance.now();
        for (const d of ds) this.link.push({ d, received });
        if (!this.linkTimer) this.nextOnLink();
        break;
      }
      case "notice":
        stats.notices++;
        break;
      case "cancel":
        stats.cancels++;
        // as a real client does: cancelled transfers stop (a queued one never starts)
        for (const id of body.value.transferIds) {
          const i = this.link.findIndex((x) => x.d.transferId === id);
          if (i < 0) continue;
          this.link.splice(i, 1);
          if (i === 0) {
            clearTimeout(this.linkTimer);
            this.linkTimer = undefined;
            this.nextOnLink();
          }
        }
        break;
      default:
        break;
    }
  }

  report(ds, durationMs = 1) {
    const reports = ds.map((d) => {
      const { first, last } = rangeOf(d);
      const n = last - first + 1;
      this.held += n;
      stats.bytes += n * DEFAULT_CHUNK_SIZE;
      return {
        transferId: d.transferId,
        outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
        bytes: n * DEFAULT_CHUNK_SIZE,
        durationMs,
        verified: [{ first, last }],
      };
    });
    stats.reportMessages++;
    stats.reports += reports.length;
    this.call.write(PeerMessage.fromPartial({ body: { $case: "reports", value: { reports } } }));
    if (this.chunkCount > 0 && this.held >= this.chunkCount) {
      stats.completions++;
      this.completedOnce = true;
      // Start over: Leave, then Join with nothing held.
      this.call.write(PeerMessage.fromPartial({ body: { $case: "leave", value: { streamId: this.streamId } } }));
      stats.rejoins++;
      this.join();
    }
  }

  close() {
    this.closing = true;
    this.call?.end();
    this.call?.cancel();
  }

  /** Leaves as a real client does when it is done: Leave, then a half-close; resolves when the tracker ended the call. */
  leave() {
    this.closing = true;
    clearTimeout(this.linkTimer);
    this.link = [];
    const ended = new Promise((resolve) => this.call.on("status", resolve));
    if (this.streamId)
      this.call.write(PeerMessage.fromPartial({ body: { $case: "leave", value: { streamId: this.streamId } } }));
    this.call.end();
    return ended;
  }
}

// ---- run ----------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "ds-tracker-load-"));
let result;
try {
  mkdirSync(join(dir, "media"));
  {
    const fd = openSync(join(dir, "media", STREAM), "w");
    const buf = Buffer.alloc(MiB);
    for (let i = 0; i < FILE_MIB; i++) writeSync(fd, randomFillSync(buf));
    closeSync(fd);
  }
  const redisPort = await freePort();
  start(
    "redis",
    "/usr/bin/redis-server",
    ["--port", `${redisPort}`, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    dir,
  );
  await procs[0].waitFor(/Ready to accept connections/, 10_000);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;

  const checksumPort = await freePort();
  const cs = start(
    "checksum",
    process.execPath,
    [DS, "checksum", "--port", `${checksumPort}`, "--metrics-port", `${await freePort()}`, "--log-level", "info"],
    dir,
  );
  await cs.waitFor(/checksum service listening/);

  const trackers = [];
  for (let i = 0; i < REPLICAS; i++) {
    const port = await freePort();
    const metricsPort = await freePort();
    const t = start(
      `tracker${i}`,
      process.execPath,
      [
        DS,
        "tracker",
        "--insecure-open-seeding",
        // simulated viewers give made-up data ports and serve nothing: the planner is measured as if they served
        "--skip-peer-probe",
        "--host",
        "127.0.0.1",
        "--port",
        `${port}`,
        "--redis",
        redisUrl,
        "--checksum",
        `127.0.0.1:${checksumPort}`,
        "--metrics-port",
        `${metricsPort}`,
        "--ticket-key",
        join(dir, "ticket-key.pem"),
        // every simulated viewer connects from 127.0.0.1: no per-address limits
        "--max-sessions-per-ip",
        "0",
        "--max-messages-per-ip",
        "0",
        "--log-level",
        "warn",
        // the soak checks that a stream nobody is in retires: a short grace instead of the 5 min default
        ...(MINUTES > 0 ? ["--stream-retire-after", "3"] : []),
      ],
      dir,
    );
    // The first replica creates the ticket key file; the next starts once it listens, and reads it.
    if (TRACKER_CPUS > 0) capCpu(t.pid, `tracker${i}`, TRACKER_CPUS);
    trackers.push({ proc: t, target: `127.0.0.1:${port}`, metricsPort });
    // "tracker listening" is logged at info; with warn we wait for the port instead.
    await waitForPort(port, t);
  }

  const seeder = start(
    "seeder",
    process.execPath,
    [
      DS,
      "seeder",
      "--tracker",
      trackers[0].target,
      "--media",
      "media",
      "--data-host",
      "127.0.0.1",
      "--data-port",
      `${await freePort()}`,
      "--metrics-port",
      `${await freePort()}`,
      "--log-level",
      "info",
    ],
    dir,
  );
  await seeder.waitFor(/published: ready/, 60_000);

  let dashboard;
  if (DASHBOARD) {
    const port = await freePort();
    const d = start(
      "dashboard",
      process.execPath,
      [DS, "dashboard", "--redis", redisUrl, "--host", "127.0.0.1", "--port", `${port}`, "--log-level", "warn"],
      dir,
    );
    await d.waitFor(/DistribuStream dashboard: http/, 30_000);
    dashboard = { pid: d.pid, port };
  }

  // Ramp: 100 sessions per 100 ms, round-robin over the replicas.
  const viewers = [];
  const rampStart = Date.now();
  for (let i = 0; i < PEERS; i++) {
    const v = new Viewer(i, trackers[i % REPLICAS].target);
    viewers.push(v);
    v.open();
    if (i % 100 === 99) await sleep(100);
  }
  const deadline = Date.now() + 60_000;
  while (stats.viewersJoined < PEERS && Date.now() < deadline) await sleep(50);
  const rampMs = Date.now() - rampStart;
  if (MINUTES > 0) {
    result = await soak(viewers, trackers, seeder, redisPort, rampMs);
  } else {
    const before = {
      t: process.hrtime.bigint(),
      cpu: trackers.map((t) => cpuSeconds(t.proc.pid)),
      seederCpu: cpuSeconds(seeder.pid),
      redisCpu: cpuSeconds(procs[0].pid),
      self: process.cpuUsage(),
      redis: redisCommands(redisPort),
      redisStats: redisCommandStats(redisPort),
      tracker: await trackerMetrics(trackers),
      stats: { ...stats },
    };
    await sleep(SECONDS * 1000);
    const after = {
      t: process.hrtime.bigint(),
      cpu: trackers.map((t) => cpuSeconds(t.proc.pid)),
      seederCpu: cpuSeconds(seeder.pid),
      redisCpu: cpuSeconds(procs[0].pid),
      self: process.cpuUsage(before.self),
      redis: redisCommands(redisPort),
      redisStats: redisCommandStats(redisPort),
      tracker: await trackerMetrics(trackers),
      stats: { ...stats },
    };
    const secs = Number(after.t - before.t) / 1e9;
    const d = (k) => after.stats[k] - before.stats[k];
    const directives = d("directives");
    const redisOps = after.redis - before.redis - 1; // minus the INFO that took the first figure
    const trackerCpu = trackers.map((_, i) => +(after.cpu[i] - before.cpu[i]).toFixed(2));
    const trackerRss = trackers.map((t) => rssBytes(t.proc.pid));

    result = {
      scenario: "tracker-capacity",
      settings: {
        peers: PEERS,
        replicas: REPLICAS,
        seconds: SECONDS,
        fileMiB: FILE_MIB,
        rateMiBPerSecond: RATE / MiB,
        prefill: PREFILL,
        trackerCpus: TRACKER_CPUS || null,
        sessionsPerConnection: SESSIONS_PER_CONNECTION,
        chunks: viewers[0]?.chunkCount,
      },
      rampMs,
      measuredSeconds: +secs.toFixed(2),
      sessionsOpened: stats.opened,
      sessionsWelcomed: stats.welcomed,
      viewersJoined: stats.viewersJoined,
      joinsTotal: stats.joined,
      sessionsHeld: stats.opened - stats.sessionsEnded,
      sessionsEndedByTracker: stats.endStatuses,
      directivesPerSecond: Math.round(directives / secs),
      directiveMessagesPerSecond: Math.round(d("directiveMessages") / secs),
      reportsPerSecond: Math.round(d("reports") / secs),
      plansPerSecond: Math.round((after.tracker.plans - before.tracker.plans) / secs),
      plansPerDirective:
        directives > 0 ? +((after.tracker.plans - before.tracker.plans) / directives).toFixed(2) : null,
      transfersNotDone: Object.fromEntries(
        Object.keys(after.tracker)
          .filter((k) => k.startsWith("failed_"))
          .map((k) => [k.slice(7), after.tracker[k] - (before.tracker[k] ?? 0)]),
      ),
      deliveredMiBPerSecond: +(d("bytes") / MiB / secs).toFixed(1),
      linkUtilisation:
        RATE > 0 ? +(d("bytes") / (RATE * secs * (stats.opened - stats.sessionsEnded))).toFixed(3) : null,
      reportMessagesPerSecond: Math.round(d("reportMessages") / secs),
      completionsPerSecond: +(d("completions") / secs).toFixed(1),
      completionsTotal: stats.completions,
      allViewersCompleted: viewers.every((v) => v.completedOnce),
      viewersCompleted: viewers.filter((v) => v.completedOnce).length,
      noticesDuringMeasure: d("notices"),
      cancelsDuringMeasure: d("cancels"),
      trackerCpuSeconds: trackerCpu,
      trackerCpuCores: trackerCpu.map((c) => +(c / secs).toFixed(2)),
      // each replica's resident memory at the end of the measurement, and per session it holds
      trackerRssMiB: trackerRss.map((b) => +(b / MiB).toFixed(1)),
      trackerRssKiBPerSession: +(
        trackerRss.reduce((sum, b) => sum + b, 0) /
        1024 /
        Math.max(1, stats.opened - stats.sessionsEnded)
      ).toFixed(1),
      ...residentByKind(trackers[0].proc.pid),
      redisCpuCores: +((after.redisCpu - before.redisCpu) / secs).toFixed(2),
      seederCpuCores: +((after.seederCpu - before.seederCpu) / secs).toFixed(2),
      loadGeneratorCpuCores: +((after.self.user + after.self.system) / 1e6 / secs).toFixed(2),
      redisCommands: redisOps,
      redisOpsPerDirective: directives > 0 ? +(redisOps / directives).toFixed(2) : null,
      redisOpsPerSecond: Math.round(redisOps / secs),
      redisCallsPerDirectiveByCommand: Object.fromEntries(
        Object.entries(after.redisStats)
          .map(([cmd, n]) => [cmd, n - (before.redisStats[cmd] ?? 0)])
          .filter(([, n]) => n > 0)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 15)
          .map(([cmd, n]) => [cmd, directives > 0 ? +(n / directives).toFixed(2) : n]),
      ),
    };
    if (dashboard) result.dashboard = await measureDashboard(dashboard, redisPort);
  }
  for (const v of viewers) v.close();
  for (const c of clients.values()) c.close();
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result, null, 2));
process.exit(0);

// ---- soak ------------------------------------------------------------------------

function rssBytes(pid) {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
}

/**
 * Where the tracker's resident memory sits, from /proc/PID/smaps: the brk heap (with glibc's malloc,
 * the main arena's small allocations; near 0 under an allocator that only maps, like jemalloc),
 * other anonymous mappings (V8's pages, other arenas, large mallocs) and file-backed pages.
 */
function residentByKind(pid) {
  const kinds = { trackerBrkHeapBytes: 0, trackerAnonBytes: 0, trackerFileBytes: 0 };
  let kind = "trackerAnonBytes";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const map = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (map) {
      const name = map[1];
      kind = name === "[heap]" ? "trackerBrkHeapBytes" : name.startsWith("/") ? "trackerFileBytes" : "trackerAnonBytes";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss) kinds[kind] += Number(rss[1]) * 1024;
  }
  return kinds;
}

function redisInfo(port, section, field) {
  const info = execFileSync("redis-cli", ["-p", `${port}`, "info", section], { encoding: "utf8" });
  return Number(new RegExp(`^${field}:(\\d+)`, "m").exec(info)?.[1] ?? NaN);
}

/** Every key in Redis (SCAN, never KEYS), grouped by what follows the stream's hash tag: {"meta": 1, ...}. */
function scanKeys(port) {
  const keys = execFileSync("redis-cli", ["-p", `${port}`, "--scan"], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean);
  const byKind = {};
  for (const k of keys) {
    const kind = k.replace(/\{[^}]*\}/, "{id}");
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  }
  return { total: keys.length, byKind, keys };
}

async function metricValue(t, name, labels = "") {
  const text = await (await fetch(`http://127.0.0.1:${t.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    if (!labels || (m[1] ?? "").includes(labels)) sum += Number(m[2]);
  }
  return sum;
}

/** Least-squares slope of ys over xs. */
function slope(xs, ys) {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

async function soak(viewers, trackers, seeder, redisPort, rampMs) {
  const t = trackers[0];
  const open = new Set(viewers);
  const leaving = [];
  let next = viewers.length;
  let churned = 0;
  const samples = [];
  const start = Date.now();
  const sample = async () =>
    samples.push({
      minute: +((Date.now() - start) / 60_000).toFixed(3),
      sessions: await metricValue(t, "pdtp_tracker_sessions"),
      trackerRssBytes: rssBytes(t.proc.pid),
      trackerHeapBytes: await metricValue(t, "nodejs_heap_size_used_bytes"),
      // what V8 holds for the heap (RSS follows it), and memory outside it (buffers, native)
      trackerHeapTotalBytes: await metricValue(t, "nodejs_heap_size_total_bytes"),
      trackerExternalBytes: await metricValue(t, "nodejs_external_memory_bytes"),
      ...residentByKind(t.proc.pid),
      redisUsedMemoryBytes: redisInfo(redisPort, "memory", "used_memory"),
      redisKeys: Number(execFileSync("redis-cli", ["-p", `${redisPort}`, "dbsize"], { encoding: "utf8" }).trim()),
      viewersCompleted: stats.completions,
    });
  const cpu0 = cpuSeconds(t.proc.pid);
  await sample();
  const perSecond = Math.round(PEERS * CHURN);
  for (let s = 1; s <= MINUTES * 60; s++) {
    await sleep(Math.max(0, start + s * 1000 - Date.now()));
    // a fraction leaves, as many new viewers join
    const list = [...open];
    for (let i = 0; i < perSecond && list.length > 0; i++) {
      const v = list.splice(Math.floor(Math.random() * list.length), 1)[0];
      open.delete(v);
      leaving.push(v.leave());
      const fresh = new Viewer(next++, trackers[next % REPLICAS].target);
      open.add(fresh);
      fresh.open();
      churned++;
    }
    if (s % 10 === 0) {
      await sample();
      const last = samples.at(-1);
      console.error(
        `soak: ${last.minute} min, ${last.sessions} sessions, tracker RSS ${(last.trackerRssBytes / MiB).toFixed(1)} MiB, Redis ${(last.redisUsedMemoryBytes / MiB).toFixed(1)} MiB, ${last.redisKeys} keys`,
      );
    }
  }
  const trackerCpuCores = +((cpuSeconds(t.proc.pid) - cpu0) / ((Date.now() - start) / 1000)).toFixed(2);
  // everyone leaves
  const leftAt = Date.now();
  for (const v of open) leaving.push(v.leave());
  const ends = await Promise.race([Promise.all(leaving), sleep(120_000).then(() => undefined)]);
  const endCodes = {};
  for (const e of ends ?? []) endCodes[e.code] = (endCodes[e.code] ?? 0) + 1;
  const deadline = Date.now() + 60_000;
  while ((await metricValue(t, "pdtp_tracker_sessions", 'role="viewer"')) > 0 && Date.now() < deadline)
    await sleep(500);
  await sleep(3000); // the last cleanup and events
  const metrics = await trackerMetrics([t]);
  const failed = Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith("failed_")));
  const keysWithSeeder = scanKeys(redisPort);
  // peers still in a swarm: entries of every stream's peers hash (the seeder's expected)
  let peersLeft = 0;
  for (const k of keysWithSeeder.keys.filter((k) => /^ds:\{[^}]+\}:peers$/.test(k)))
    peersLeft += Number(execFileSync("redis-cli", ["-p", `${redisPort}`, "hlen", k], { encoding: "utf8" }).trim());
  // the seeder leaves too
  process.kill(seeder.pid, "SIGTERM");
  await seeder.exited;
  // the stream retires between 3 and 6 s after its last peer (the seeder) left; waited for up to 30 s
  const seederLeftAt = Date.now();
  let keysAfterSeeder = scanKeys(redisPort);
  while (keysAfterSeeder.keys.some((k) => k.includes("{")) && Date.now() - seederLeftAt < 30_000) {
    await sleep(1000);
    keysAfterSeeder = scanKeys(redisPort);
  }
  const steady = samples.filter((x) => x.minute >= MINUTES / 5);
  const perMinute = (y) =>
    Math.round(
      slope(
        steady.map((x) => x.minute),
        steady.map(y),
      ),
    );
  return {
    scenario: "soak",
    settings: {
      peers: PEERS,
      minutes: MINUTES,
      churnPerSecond: CHURN,
      rateMiBPerSecond: RATE / MiB,
      prefill: PREFILL,
      fileMiB: FILE_MIB,
    },
    rampMs,
    sessionsChurned: churned,
    sessionsOpened: stats.opened,
    viewersJoined: stats.viewersJoined,
    completions: stats.completions,
    directivesReceived: stats.directives,
    sessionEndCodesAtLeave: endCodes,
    sessionsEndedByTrackerOtherwise: stats.endStatuses,
    secondsToLeave: +((Date.now() - leftAt) / 1000).toFixed(1),
    trackerCpuCores,
    slopes: {
      trackerRssBytesPerMinute: perMinute((x) => x.trackerRssBytes),
      trackerHeapBytesPerMinute: perMinute((x) => x.trackerHeapBytes),
      trackerHeapTotalBytesPerMinute: perMinute((x) => x.trackerHeapTotalBytes),
      trackerExternalBytesPerMinute: perMinute((x) => x.trackerExternalBytes),
      trackerBrkHeapBytesPerMinute: perMinute((x) => x.trackerBrkHeapBytes),
      trackerAnonBytesPerMinute: perMinute((x) => x.trackerAnonBytes),
      redisUsedMemoryBytesPerMinute: perMinute((x) => x.redisUsedMemoryBytes),
      redisKeysPerMinute: perMinute((x) => x.redisKeys),
    },
    first: samples[0],
    steadyFirst: steady[0],
    last: samples.at(-1),
    transfers: {
      started: metrics.started,
      done: metrics.done,
      failed,
      // every directive issued ended as done or failed with a reason
      lost: metrics.started - metrics.done - metrics.failed,
    },
    afterViewersLeft: { peerEntriesInStore: peersLeft, keys: keysWithSeeder.total, byKind: keysWithSeeder.byKind },
    afterSeederLeft: {
      keys: keysAfterSeeder.total,
      byKind: keysAfterSeeder.byKind,
      secondsWaited: +((Date.now() - seederLeftAt) / 1000).toFixed(1),
    },
    samples,
  };
}

async function waitForPort(port, p, ms = 30_000) {
  const { connect } = await import("node:net");
  const end = Date.now() + ms;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode})\n${p.output()}`);
    const ok = await new Promise((r) => {
      const s = connect(port, "127.0.0.1", () => (s.destroy(), r(true)));
      s.on("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`${p.name}: port ${port} not open within ${ms} ms\n${p.output()}`);
    await sleep(100);
  }
}
