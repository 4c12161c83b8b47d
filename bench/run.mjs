#!/usr/bin/env node
// The benchmark harness: DistribuStream side by side with WebTorrent, aria2 and plain HTTP (nginx + curl).
//   npm run bench -- <scenario|all|setup> [options]      (see --help and README "Benchmarks")
// Each scenario writes a JSON record and a Markdown table to bench/results/. Every process it starts runs
// in its own process group and is stopped by its PID; all traffic stays on 127.0.0.1, inside a network
// namespace of its own when `unshare --net` is allowed (then the loopback counters are this run's alone).
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ANCHORS_DIR, availability, installDebianPackages, installNpmAnchors } from "./lib/anchors.mjs";
import { stopAll } from "./lib/procs.mjs";
import { SCHEMA, markdown, writeRecord } from "./lib/report.mjs";
import { SCENARIOS } from "./lib/scenarios.mjs";
import { MiB, machine, parseBits, parseRate, parseSize, root, versions, which } from "./lib/util.mjs";

const USAGE = `usage: npm run bench -- <scenario|all|setup> [options]
scenarios: ${Object.keys(SCENARIOS).join(", ")}
  setup                 apt-get install what is missing (aria2 nginx-light curl time iproute2 ffmpeg; as root) and the npm anchors
options (defaults in brackets; --smoke: tiny sizes and one run, as CI runs it):
  --runs N              runs per scenario [3]
  --size SIZE           file size, e.g. 256M, 1G [flash-crowd 256M, single 1G, control 256M, checksum 1G, tracker-capacity 64M]
  --viewers N           viewers [flash-crowd 20, control 10; live 20 per system]
  --rate RATE           per-viewer upload and download cap, bytes/s (8M; 0: none) [flash-crowd 8M, control 0, live 8M; tracker-capacity swarm mode 0.5M]
  --origin-rate RATE    origin upload cap [flash-crowd 16M, control 0, live 16M]
  --chunk-size SIZE     DistribuStream chunk and BitTorrent piece size [256K]
  --systems LIST        flash-crowd systems [ds,webtorrent,aria2,http]; live systems [ds,hls]
  --sizes LIST          memory: file sizes [256M,4G]
  --chunk-sizes LIST    control: chunk sizes [64K,256K,1M]
  --peers N             tracker-capacity: simulated viewers [5000]
  --inputs N            fuzz: inputs per entry point [100000]
  --minutes M           soak: minutes of churn [10]
  --churn F             soak: fraction of the sessions replaced every second [0.01]
  --seconds S           tracker-capacity stress mode: measured seconds [20]; live: broadcast seconds after the last viewer joined [60]
  --swarm-seconds S     tracker-capacity swarm mode: measured seconds [90] (an overloaded replica showed it only after 30 s)
  --join-interval MS    live: one viewer of each system joins every MS [2000]
  --bitrate BITS        live: the source's bitrate in bits/s, e.g. 2M [2M]
  --log-level LEVEL     live: log level of tracker, checksum and seeder [warn; the seeder info]
  --keep-logs DIR       live: write each process's last output (256 KiB) to DIR/<name>.log
  --modes LIST          tracker-capacity: stress (reports at once), swarm (rate-limited links, prefill) [stress,swarm]
  --prefill F           tracker-capacity swarm mode: fraction each viewer joins with [0.5]
  --tracker-cpus C      tracker-capacity stress mode: each replica's CPU cap in cores, a cgroup (root) [0.4; 0: none]
  --timeout S           a trial's limit [1800]
  --out DIR             where records go [bench/results]
  --work-dir DIR        where files and temp folders go [${os.tmpdir()}]
  --no-install          never install the npm anchors on demand (a missing one is skipped)
  --no-netns            stay in this network namespace (no loopback byte counts)`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: "string" },
      "swarm-seconds": { type: "string" },
      size: { type: "string" },
      viewers: { type: "string" },
      rate: { type: "string" },
      "origin-rate": { type: "string" },
      "chunk-size": { type: "string" },
      systems: { type: "string" },
      sizes: { type: "string" },
      "chunk-sizes": { type: "string" },
      peers: { type: "string" },
      seconds: { type: "string" },
      minutes: { type: "string" },
      inputs: { type: "string" },
      churn: { type: "string" },
      "join-interval": { type: "string" },
      bitrate: { type: "string" },
      "log-level": { type: "string" },
      "keep-logs": { type: "string" },
      modes: { type: "string" },
      prefill: { type: "string" },
      "tracker-cpus": { type: "string" },
      timeout: { type: "string" },
      out: { type: "string" },
      "work-dir": { type: "string" },
      smoke: { type: "boolean", default: false },
      "no-install": { type: "boolean", default: false },
      "no-netns": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
} catch (err) {
  console.error(`bench: ${err.message}\n${USAGE}`);
  process.exit(2);
}
const { values: v, positionals } = parsed;
const [what] = positionals;
if (v.help || !what || (what !== "all" && what !== "setup" && !SCENARIOS[what])) {
  console.error(USAGE);
  process.exit(v.help ? 0 : 2);
}
const log = (m) => console.error(m);

if (what === "setup") {
  const problems = [installDebianPackages(log), installNpmAnchors(log)].filter(Boolean);
  for (const p of problems) log(`bench: ${p}`);
  for (const [k, why] of Object.entries(availability())) log(`bench: ${k}: ${why ?? "ok"}`);
  process.exit(problems.length ? 1 : 0);
}

const scenarios = what === "all" ? Object.keys(SCENARIOS) : [what];
const wantsBt = scenarios.includes("flash-crowd") && (v.systems ?? "webtorrent,aria2").match(/webtorrent|aria2/);

// ---- outside the namespace: what needs the network, then the same command inside a namespace --------
if (process.env.DS_BENCH_NETNS === undefined) {
  if (wantsBt && !v["no-install"]) {
    const err = installNpmAnchors(log);
    if (err) log(`bench: ${err} (webtorrent and aria2 will be reported as skipped)`);
  }
  let reason;
  if (v["no-netns"]) reason = "--no-netns";
  else if (!which("unshare") || !which("ip")) reason = "unshare or ip not found (util-linux, iproute2)";
  // as root a network namespace; otherwise in a user namespace of its own, where it may be allowed
  const tries = [["--net"], ["--user", "--map-root-user", "--net"]];
  const flags = reason
    ? undefined
    : tries.find((f) => {
        try {
          execFileSync("unshare", [...f, "sh", "-c", "ip link set lo up"], { stdio: "ignore" });
          return true;
        } catch {
          return false;
        }
      });
  if (!reason && !flags) reason = "unshare --net not permitted here (nor in a user namespace)";
  if (!reason) {
    const child = spawn(
      "unshare",
      [...flags, "sh", "-c", 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.argv.slice(1)],
      {
        stdio: "inherit",
        env: { ...process.env, DS_BENCH_NETNS: "1", DS_BENCH_NETNS_VIA: `unshare ${flags.join(" ")}` },
      },
    );
    for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
    child.on("exit", (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
    await new Promise(() => {}); // the child's exit ends this process
  }
  process.env.DS_BENCH_NETNS = "";
  process.env.DS_BENCH_NETNS_REASON = reason;
}

// ---- the harness --------------------------------------------------------------------------------
const isolated = process.env.DS_BENCH_NETNS === "1";
const smoke = v.smoke;
const num = (x, d) => (x === undefined ? d : Number(x));
const size = (x, d) => (x === undefined ? d : parseSize(x));
const rate = (x, d) => (x === undefined ? d : parseRate(x));
const list = (x, d) =>
  x === undefined
    ? d
    : x
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);

function optionsFor(scenario) {
  const S = (full, tiny) => (smoke ? tiny : full);
  const common = {
    runs: num(v.runs, S(3, 1)),
    chunkSize: size(v["chunk-size"], 256 * 1024),
    timeoutS: num(v.timeout, S(1800, 240)),
  };
  switch (scenario) {
    case "flash-crowd":
      return {
        ...common,
        size: size(v.size, S(256, 4) * MiB),
        viewers: num(v.viewers, S(20, 3)),
        rate: rate(v.rate, 8 * MiB),
        originRate: rate(v["origin-rate"], 16 * MiB),
        systems: list(v.systems, ["ds", "webtorrent", "aria2", "http"]),
      };
    case "single":
      return { ...common, size: size(v.size, S(1024, 8) * MiB) };
    case "memory":
      return { ...common, sizes: list(v.sizes, S(["256M", "4G"], ["4M", "16M"])).map(parseSize) };
    case "control":
      return {
        ...common,
        size: size(v.size, S(256, 4) * MiB),
        viewers: num(v.viewers, S(10, 2)),
        rate: rate(v.rate, 0),
        originRate: rate(v["origin-rate"], 0),
        chunkSizes: list(v["chunk-sizes"], ["64K", "256K", "1M"]).map(parseSize),
      };
    case "tracker-capacity":
      return {
        ...common,
        size: size(v.size, S(64, 4) * MiB),
        peers: num(v.peers, S(5000, 40)),
        seconds: num(v.seconds, S(20, 2)),
        swarmSeconds: num(v["swarm-seconds"], S(90, 2)),
        modes: list(v.modes, S(["stress", "swarm"], ["stress"])),
        rate: rate(v.rate, MiB / 2),
        prefill: num(v.prefill, 0.5),
        trackerCpus: num(v["tracker-cpus"], 0.4),
      };
    case "soak":
      return {
        ...common,
        runs: 1,
        size: size(v.size, S(64, 4) * MiB),
        peers: num(v.peers, S(5000, 40)),
        minutes: num(v.minutes, S(10, 0.2)),
        churn: num(v.churn, S(0.01, 0.05)),
        rate: rate(v.rate, MiB / 2),
        prefill: num(v.prefill, 0.5),
      };
    case "fuzz":
      return { ...common, runs: 1, inputs: num(v.inputs, S(100_000, 500)) };
    case "checksum":
      return { ...common, size: size(v.size, S(1024, 8) * MiB) };
    case "live":
      return {
        ...common,
        runs: num(v.runs, 1),
        viewers: num(v.viewers, S(20, 3)),
        seconds: num(v.seconds, S(60, 8)),
        joinIntervalMs: num(v["join-interval"], S(2000, 500)),
        bitrate: v.bitrate === undefined ? 2_000_000 : parseBits(v.bitrate),
        rate: rate(v.rate, 8 * MiB),
        originRate: rate(v["origin-rate"], 16 * MiB),
        systems: list(v.systems, ["ds", "hls"]),
        behind: 3,
        warmupS: 5,
        endTimeoutS: 45,
        logLevel: v["log-level"],
        keepLogs: v["keep-logs"],
      };
  }
  throw new Error(scenario);
}

const children = new Set(); // tracker-load processes (their own groups)
async function cleanup() {
  for (const pid of children) {
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      /* gone */
    }
  }
  await stopAll();
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    log(`bench: ${sig}: stopping every process started`);
    void cleanup().then(() => process.exit(130));
  });
}

const outDir = v.out ?? join(root, "bench/results");
const available = availability();
if (available.time) {
  log(`bench: ${available.time}: every viewer is measured with it; run: npm run bench -- setup`);
  process.exit(1);
}
let failed = false;
for (const scenario of scenarios) {
  const o = optionsFor(scenario);
  const workDir = mkdtempSync(join(v["work-dir"] ?? os.tmpdir(), `ds-bench-${scenario}-`));
  mkdirSync(workDir, { recursive: true });
  const startedAt = new Date().toISOString();
  const rec = {
    schema: SCHEMA,
    scenario,
    smoke,
    startedAt,
    finishedAt: startedAt,
    command: `npm run bench -- ${process.argv.slice(2).join(" ")}`,
    machine: machine(),
    versions: versions(ANCHORS_DIR),
    isolation: isolated
      ? { netns: true, via: process.env.DS_BENCH_NETNS_VIA }
      : { netns: false, reason: process.env.DS_BENCH_NETNS_REASON ?? "not started in a namespace" },
    anchors: {},
    settings: o,
  };
  const systems =
    scenario === "flash-crowd"
      ? o.systems
      : scenario === "single"
        ? ["ds", "http"]
        : scenario === "tracker-capacity" || scenario === "soak"
          ? ["ds", "redis"]
          : scenario === "checksum"
            ? ["ds", "sha256sum"]
            : scenario === "live"
              ? o.systems
              : ["ds"];
  for (const s of systems)
    rec.anchors[s] = available[s] ? { status: "skipped", reason: available[s] } : { status: "ok" };
  log(`bench: ${scenario}${smoke ? " (smoke)" : ""}: ${JSON.stringify(o)}`);
  try {
    const r = await SCENARIOS[scenario](o, { dir: workDir, log, available, isolated, children });
    Object.assign(rec, r, { settings: { ...o, ...r.settings } });
  } catch (err) {
    rec.error = err.stack ?? String(err);
    failed = true;
  } finally {
    await cleanup();
    rmSync(workDir, { recursive: true, force: true });
  }
  rec.finishedAt = new Date().toISOString();
  const files = writeRecord(rec, outDir);
  process.stdout.write(markdown(rec));
  log(`bench: wrote ${files.json} and ${files.md}`);
  if (rec.error) log(`bench: ${scenario} failed: ${rec.error}`);
}
process.exit(failed ? 1 : 0);
