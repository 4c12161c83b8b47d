// The scenarios of `npm run bench -- <scenario>`. Each returns { settings, runs, medians, ratios, goals,
// columns } for the record (report.mjs writes it). Ratios are computed pair by pair inside one run, then
// their median is taken; every system of a run gets the same file, viewers, rate limits and start pattern.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { live } from "./live.mjs";
import { sampleTree, stopAll } from "./procs.mjs";
import { ANNOUNCE_INTERVAL_S, ARIA2_COMMON, SYSTEMS, metricSum, metricsText, startDistribuStream } from "./systems.mjs";
import { runViewers } from "./trial.mjs";
import { GiB, MiB, median, randomFile, ratio, root, round, sha256File } from "./util.mjs";

const KiB = 1024;

/** Medians over the runs of every numeric figure of each system (its successful trials only). */
function medians(runs, key = "systems") {
  const out = {};
  for (const run of runs) {
    for (const [sys, r] of Object.entries(run[key] ?? {})) {
      out[sys] ??= {};
      if (r.ok === false || r.skipped) continue; // a failed trial's figures are no measurement
      for (const [k, v] of Object.entries(r)) if (typeof v === "number") (out[sys][k] ??= []).push(v);
    }
  }
  for (const sys of Object.keys(out))
    for (const k of Object.keys(out[sys])) out[sys][k] = round(median(out[sys][k]), 3);
  return out;
}

function ratioMedians(runs) {
  const out = {};
  for (const run of runs) for (const [k, v] of Object.entries(run.ratios ?? {})) (out[k] ??= []).push(v);
  for (const k of Object.keys(out)) out[k] = round(median(out[k]), 3);
  return out;
}

/** Dates a file a minute back: the seeder publishes a settled file at once (a fresh one after a scan or two). */
function settled(file) {
  const past = new Date(Date.now() - 60_000);
  utimesSync(file, past, past);
}

const goal = (id, text, value, test, note) => ({
  id,
  goal: text,
  value: value ?? null,
  met: typeof value === "number" ? test(value) : null,
  ...(typeof value === "number" || !note ? {} : { note }),
});

/** Why a system has no figure: skipped (the reason) or failed in every run. */
function missing(runs, sys) {
  const rs = runs.map((r) => r.systems?.[sys]).filter(Boolean);
  if (rs.length === 0) return `${sys} not in this run`;
  if (rs[0].skipped) return `${sys} skipped: ${rs[0].skipped}`;
  if (rs.every((r) => !r.ok)) return `${sys} failed in every run`;
  return undefined;
}

async function prepareFile(env, name, size) {
  const media = join(env.dir, "media");
  mkdirSync(media, { recursive: true });
  const file = join(media, name);
  env.log(`bench: writing ${size / MiB} MiB of random bytes to ${file}`);
  randomFile(file, size);
  settled(file);
  return { media, file, sha256: await sha256File(file) };
}

/** One system's trial in a fresh folder; every process it started is stopped before it returns. */
async function trial(env, sysName, base, viewerOpts) {
  const why = env.available[sysName];
  if (why) return { skipped: why };
  const dir = mkdtempSync(join(env.dir, `${sysName}-`));
  try {
    env.log(`bench: ${sysName}: starting`);
    const ctx = { ...base, dir };
    const sys = await SYSTEMS[sysName](ctx, viewerOpts.viewers);
    env.log(`bench: ${sysName}: ${viewerOpts.viewers} viewer(s) start`);
    const r = await runViewers(sys, {
      ...viewerOpts,
      dir,
      size: base.size,
      sha256: base.sha256,
      isolated: env.isolated,
    });
    if (sys.limitRatePerConnection !== undefined) r.limitRatePerConnection = sys.limitRatePerConnection;
    env.log(`bench: ${sysName}: ${r.ok ? `all done in ${r.allDoneS} s` : `failed: ${r.error?.slice(0, 300)}`}`);
    return r;
  } catch (err) {
    env.log(`bench: ${sysName}: failed: ${err.message.slice(0, 500)}`);
    return { ok: false, error: err.message.slice(0, 2000) };
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rotate = (xs, n) => xs.map((_, i) => xs[(i + n) % xs.length]);

// ---- 1. flash-crowd ----------------------------------------------------------------------

export async function flashCrowd(o, env) {
  const name = "crowd.bin";
  const f = await prepareFile(env, name, o.size);
  const base = { name, mediaDir: f.media, file: f.file, size: o.size, sha256: f.sha256, chunkSize: o.chunkSize };
  base.viewerRate = o.rate;
  base.originRate = o.originRate;
  const runs = [];
  for (let r = 0; r < o.runs; r++) {
    const systems = {};
    // the order rotates from run to run, so no system always goes first (cold caches) or last
    for (const s of rotate(o.systems, r)) {
      systems[s] = await trial(env, s, base, {
        viewers: o.viewers,
        rates: { up: o.rate, down: o.rate },
        timeoutMs: o.timeoutS * 1000,
      });
    }
    const ds = systems.ds;
    const ratios = {};
    for (const a of o.systems.filter((s) => s !== "ds")) {
      if (!ds?.ok || !systems[a]?.ok) continue;
      ratios[`allDone ds/${a}`] = ratio(ds.allDoneS, systems[a].allDoneS);
      ratios[`cpuPerGiB ds/${a}`] = ratio(ds.cpuSecondsPerGiB, systems[a].cpuSecondsPerGiB);
      ratios[`originEgress ds/${a}`] = ratio(ds.originEgressBytes, systems[a].originEgressBytes);
      if (ds.wireBytes && systems[a].wireBytes) ratios[`wire ds/${a}`] = ratio(ds.wireBytes, systems[a].wireBytes);
    }
    runs.push({ run: r + 1, order: rotate(o.systems, r), systems, ratios });
  }
  const med = medians(runs);
  const rat = ratioMedians(runs);
  // No viewer can be done sooner than its file at its download limit, nor before the origin sent one
  // copy at its upload limit: the longer of the two (none without limits).
  const rateBoundS =
    o.rate > 0 ? round(Math.max(o.size / o.rate, o.originRate > 0 ? o.size / o.originRate : 0), 3) : undefined;
  return {
    settings: {
      fileBytes: o.size,
      viewers: o.viewers,
      viewerRateBytesPerS: o.rate,
      originRateBytesPerS: o.originRate,
      rateBoundS,
      chunkOrPieceBytes: o.chunkSize,
      runs: o.runs,
      systems: o.systems,
      how: {
        ds: "separate tracker (memory store), checksum and seeder (--max-upload-rate origin) processes; dsclient --max-download-rate/--max-upload-rate, --linger until all are done",
        webtorrent:
          "TCP only: dht, lsd, natUpnp, natPmp, utp, webSeeds off; uploadLimit/downloadLimit; origin added with skipVerify",
        aria2: [
          ...ARIA2_COMMON,
          "origin: --bt-seed-unverified=true --max-overall-upload-limit",
          "viewers: --max-overall-download-limit --max-overall-upload-limit",
        ],
        bittorrent: `bittorrent-tracker over HTTP on 127.0.0.1, announce interval ${ANNOUNCE_INTERVAL_S} s; one .torrent (create-torrent) with the chunk size as piece size`,
        http: "nginx limit_rate per connection = min(viewer rate, origin rate / viewers); curl --limit-rate viewer rate",
      },
    },
    runs,
    medians: med,
    ratios: rat,
    columns: [
      "allDoneS",
      "viewerMedianS",
      "viewerP95S",
      "originEgressOverFile",
      "wireOverDelivered",
      "viewerPeakRssMaxMB",
      "cpuSecondsPerGiB",
    ],
    goals: [
      goal(
        "origin-egress",
        "flash-crowd origin egress ≤ 1.2× the file",
        med.ds?.originEgressOverFile,
        (v) => v <= 1.2,
        missing(runs, "ds"),
      ),
      goal(
        "vs-aria2",
        "all-done time ≤ 0.8× aria2's (same run)",
        rat["allDone ds/aria2"],
        (v) => v <= 0.8,
        missing(runs, "ds") ?? missing(runs, "aria2"),
      ),
      goal(
        "vs-rate-bound",
        "all-done time ≤ 1.15× the rate bound (the file at a viewer's download limit, or one copy at the origin's upload limit, whichever is longer)",
        med.ds?.allDoneS !== undefined && rateBoundS ? round(med.ds.allDoneS / rateBoundS, 3) : undefined,
        (v) => v <= 1.15,
        missing(runs, "ds") ?? (rateBoundS ? undefined : "no rate limits: no bound"),
      ),
      goal(
        "vs-webtorrent",
        "all-done time ≤ 0.4× WebTorrent's (same run)",
        rat["allDone ds/webtorrent"],
        (v) => v <= 0.4,
        missing(runs, "ds") ?? missing(runs, "webtorrent"),
      ),
      goal(
        "cpu",
        "CPU s/GiB ≤ aria2's (same run)",
        rat["cpuPerGiB ds/aria2"],
        (v) => v <= 1,
        missing(runs, "ds") ?? missing(runs, "aria2"),
      ),
    ],
  };
}

// ---- 2. single ---------------------------------------------------------------------------

export async function single(o, env) {
  const name = "single.bin";
  const f = await prepareFile(env, name, o.size);
  const base = { name, mediaDir: f.media, file: f.file, size: o.size, sha256: f.sha256, chunkSize: o.chunkSize };
  base.viewerRate = 0;
  base.originRate = 0;
  const runs = [];
  const systems = ["ds", "http"];
  for (let r = 0; r < o.runs; r++) {
    const res = {};
    for (const s of rotate(systems, r)) {
      res[s] = await trial(env, s, base, { viewers: 1, rates: { up: 0, down: 0 }, timeoutMs: o.timeoutS * 1000 });
      if (res[s].ok) res[s].MBps = round(o.size / MiB / res[s].allDoneS, 1);
    }
    runs.push({ run: r + 1, systems: res, ratios: { "MBps ds/http": ratio(res.ds?.MBps, res.http?.MBps) } });
  }
  const rat = ratioMedians(runs);
  return {
    settings: { fileBytes: o.size, viewers: 1, limits: "none", runs: o.runs, chunkBytes: o.chunkSize },
    runs,
    medians: medians(runs),
    ratios: rat,
    columns: ["MBps", "allDoneS", "cpuSecondsPerGiB", "viewerPeakRssMaxMB"],
    goals: [
      goal(
        "single",
        "dsclient ≥ 0.6× curl from nginx (MB/s)",
        rat["MBps ds/http"],
        (v) => v >= 0.6,
        missing(runs, "ds") ?? missing(runs, "http"),
      ),
    ],
  };
}

// ---- 3. memory ---------------------------------------------------------------------------

export async function memory(o, env) {
  const media = join(env.dir, "media");
  mkdirSync(media, { recursive: true });
  const files = [];
  for (const size of o.sizes) {
    const name = `m${size}.bin`;
    env.log(`bench: writing ${size / MiB} MiB of random bytes`);
    randomFile(join(media, name), size);
    settled(join(media, name));
    files.push({ name, size, sha256: await sha256File(join(media, name)) });
  }
  const runs = [];
  if (env.available.ds) return { skipped: env.available.ds };
  const dir = mkdtempSync(join(env.dir, "ds-"));
  try {
    env.log("bench: ds: starting (both files published)");
    const sys = await startDistribuStream({
      dir,
      mediaDir: media,
      name: files[0].name,
      chunkSize: o.chunkSize,
      originRate: 0,
    });
    // every published file: wait until the seeder has them all
    for (let end = Date.now() + 30 * 60_000; ;) {
      const n = metricSum(await metricsText(sys.seederMetricsPort), "pdtp_seeder_published_streams") ?? 0;
      if (n >= files.length) break;
      if (Date.now() > end) throw new Error("the seeder did not publish every file");
      await new Promise((r) => setTimeout(r, 250));
    }
    for (let r = 0; r < o.runs; r++) {
      const res = {};
      for (const f of files) {
        const t = await runViewers(sys, {
          stream: f.name,
          dir,
          viewers: 1,
          rates: { up: 0, down: 0 },
          timeoutMs: o.timeoutS * 1000,
          size: f.size,
          sha256: f.sha256,
          isolated: env.isolated,
          stdoutSink: true,
        });
        env.log(
          `bench: dsclient ${f.size / MiB} MiB to a pipe: ${t.ok ? `peak RSS ${t.viewerPeakRssMaxMB} MB` : t.error}`,
        );
        res[`${f.size / MiB}MiB`] = {
          ok: t.ok,
          error: t.error,
          peakRssMB: t.viewerPeakRssMaxMB,
          allDoneS: t.allDoneS,
          sha256Ok: t.sha256Ok,
        };
      }
      const keys = Object.keys(res);
      runs.push({
        run: r + 1,
        systems: res,
        ratios: { [`peakRss ${keys.at(-1)}/${keys[0]}`]: ratio(res[keys.at(-1)].peakRssMB, res[keys[0]].peakRssMB) },
      });
    }
  } finally {
    await stopAll();
  }
  const med = medians(runs);
  const rat = ratioMedians(runs);
  const peak = Math.max(...Object.values(med).map((m) => m.peakRssMB ?? Infinity));
  return {
    settings: { fileBytes: o.sizes, output: "standard output, a pipe the harness reads and hashes", runs: o.runs },
    runs,
    medians: med,
    ratios: rat,
    columns: ["peakRssMB", "allDoneS"],
    goals: [
      goal("memory", "dsclient peak RSS ≤ 100 MB at every size", Number.isFinite(peak) ? peak : null, (v) => v <= 100),
      goal("memory-ratio", "peak RSS largest/smallest file ≤ 1.1", Object.values(rat)[0], (v) => v <= 1.1),
    ],
  };
}

// ---- 4. control --------------------------------------------------------------------------

export async function control(o, env) {
  const name = "control.bin";
  const f = await prepareFile(env, name, o.size);
  const runs = [];
  for (let r = 0; r < o.runs; r++) {
    const res = {};
    for (const cs of o.chunkSizes) {
      const base = { name, mediaDir: f.media, file: f.file, size: o.size, sha256: f.sha256, chunkSize: cs };
      base.viewerRate = o.rate;
      base.originRate = o.originRate;
      const t = await trial(env, "ds", base, {
        viewers: o.viewers,
        rates: { up: o.rate, down: o.rate },
        timeoutMs: o.timeoutS * 1000,
      });
      const tr = t.tracker ?? {};
      res[`${cs / KiB}KiB`] = {
        ok: t.ok,
        error: t.error,
        allDoneS: t.allDoneS,
        controlBytes: tr.controlBytes,
        deliveredBytes: tr.deliveredBytes,
        controlOverDataPercent: tr.deliveredBytes ? round((100 * tr.controlBytes) / tr.deliveredBytes, 4) : null,
        trackerCpuSeconds: t.serverCpuSeconds?.tracker ?? null,
        trackerCpuSecondsPerGiB:
          tr.deliveredBytes && t.serverCpuSeconds
            ? round(t.serverCpuSeconds.tracker / (tr.deliveredBytes / GiB), 3)
            : null,
        originEgressOverFile: t.originEgressOverFile,
      };
    }
    runs.push({ run: r + 1, systems: res });
  }
  const med = medians(runs);
  return {
    settings: {
      fileBytes: o.size,
      viewers: o.viewers,
      chunkBytes: o.chunkSizes,
      viewerRateBytesPerS: o.rate,
      originRateBytesPerS: o.originRate,
      runs: o.runs,
    },
    runs,
    medians: med,
    ratios: {},
    columns: ["controlOverDataPercent", "trackerCpuSecondsPerGiB", "allDoneS", "originEgressOverFile"],
    goals: [
      goal(
        "control",
        "control bytes ≤ 0.5% of data bytes at 256 KiB chunks",
        med["256KiB"]?.controlOverDataPercent,
        (v) => v <= 0.5,
      ),
    ],
  };
}

// ---- 5. tracker-capacity -----------------------------------------------------------------

function trackerLoad(args, env) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [join(root, "bench/tracker-load.mjs"), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    let err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err = (err + d).slice(-4000)));
    env.children.add(c.pid);
    c.on("exit", (code) => {
      env.children.delete(c.pid);
      try {
        resolve({ ok: code === 0, ...JSON.parse(out) });
      } catch {
        resolve({ ok: false, error: `tracker-load exited ${code}: ${err.slice(-2000)}` });
      }
    });
  });
}

export async function trackerCapacity(o, env) {
  if (env.available.redis) return { skipped: env.available.redis };
  const runs = [];
  for (let r = 0; r < o.runs; r++) {
    const res = {};
    for (const mode of o.modes) {
      for (const replicas of [1, 2]) {
        const args = [
          "--peers",
          `${o.peers}`,
          "--replicas",
          `${replicas}`,
          "--seconds",
          `${mode === "swarm" ? o.swarmSeconds : o.seconds}`,
          "--mib",
          `${o.size / MiB}`,
        ];
        if (mode === "swarm") args.push("--rate", `${o.rate / MiB}`, "--prefill", `${o.prefill}`);
        // 1 against 2 replicas, each held to the same CPU: what a second replica adds, not what the
        // load generator and Redis beside them on this machine leave over
        if (mode === "stress" && o.trackerCpus > 0) args.push("--tracker-cpus", `${o.trackerCpus}`);
        // the dashboard's cost, once per run: one replica, the last mode
        const withDashboard = replicas === 1 && mode === o.modes.at(-1);
        if (withDashboard) args.push("--dashboard", "--browsers", "10");
        env.log(`bench: tracker-load ${args.join(" ")}`);
        const t = await trackerLoad(args, env);
        res[`${mode} x${replicas}`] = {
          ok: t.ok,
          error: t.error,
          sessionsHeld: t.sessionsHeld,
          directivesPerSecond: t.directivesPerSecond,
          trackerCpuCoresMax: t.trackerCpuCores ? Math.max(...t.trackerCpuCores) : null,
          trackerCpuCoresTotal: t.trackerCpuCores
            ? round(
                t.trackerCpuCores.reduce((a, b) => a + b, 0),
                2,
              )
            : null,
          trackerRssMiBMax: t.trackerRssMiB ? Math.max(...t.trackerRssMiB) : null,
          redisOpsPerDirective: t.redisOpsPerDirective,
          plansPerDirective: t.plansPerDirective,
          redisCpuCores: t.redisCpuCores,
          loadGeneratorCpuCores: t.loadGeneratorCpuCores,
          linkUtilisation: t.linkUtilisation,
          deliveredMiBPerSecond: t.deliveredMiBPerSecond,
          // directives withdrawn because no report came in time, of those issued in the measurement
          expiredPercent:
            t.transfersNotDone && t.directivesPerSecond > 0
              ? round((100 * (t.transfersNotDone.expired ?? 0)) / (t.directivesPerSecond * t.measuredSeconds), 2)
              : null,
          ...(t.dashboard
            ? {
                dashboardCpuCores0: t.dashboard.noBrowser.cpuCores,
                dashboardCpuCores10: t.dashboard.withBrowsers.cpuCores,
                dashboardRedisPerSecond0: t.dashboard.noBrowser.redisCommandsPerSecond,
                dashboardRedisPerSecond10: t.dashboard.withBrowsers.redisCommandsPerSecond,
              }
            : {}),
          detail: t,
        };
      }
    }
    const ratios = {};
    for (const mode of o.modes) {
      ratios[`directives/s ${mode} x2/x1`] = ratio(
        res[`${mode} x2`]?.directivesPerSecond,
        res[`${mode} x1`]?.directivesPerSecond,
      );
    }
    runs.push({ run: r + 1, systems: res, ratios });
  }
  const med = medians(runs);
  const rat = ratioMedians(runs);
  const one = med[`swarm x1`] ?? med[`stress x1`];
  const dash = med[`${o.modes.at(-1)} x1`];
  return {
    settings: {
      peers: o.peers,
      seconds: o.seconds,
      swarmSeconds: o.swarmSeconds,
      fileBytes: o.size,
      modes: o.modes,
      swarmRateBytesPerS: o.rate,
      swarmPrefill: o.prefill,
      stressTrackerCpus: o.trackerCpus || null,
      runs: o.runs,
      note: "stress: reports answered at once (the tracker's ceiling), each replica held to stressTrackerCpus cores by a cgroup; swarm: each viewer's link carries the rate, viewers join holding a prefill fraction, no cap",
    },
    runs,
    medians: med,
    ratios: rat,
    columns: [
      "sessionsHeld",
      "directivesPerSecond",
      "trackerCpuCoresMax",
      "trackerRssMiBMax",
      "redisOpsPerDirective",
      "plansPerDirective",
      "redisCpuCores",
      "loadGeneratorCpuCores",
      "linkUtilisation",
      "expiredPercent",
      "dashboardCpuCores10",
      "dashboardRedisPerSecond0",
      "dashboardRedisPerSecond10",
    ],
    goals: [
      // issue 16 raised issue 5's 5,000 to 20,000; a run with fewer simulated viewers cannot show it
      goal(
        "tracker-sessions",
        `≥ 20,000 sessions held on one replica (${med["swarm x1"] ? "swarm" : "stress"} mode)`,
        o.peers >= 20_000 ? one?.sessionsHeld : undefined,
        (v) => v >= 20_000,
        `${o.peers} simulated viewers: run with --peers 20000`,
      ),
      goal("tracker-cpu", "…at under one core", one?.trackerCpuCoresMax, (v) => v < 1),
      goal(
        "tracker-expiry",
        "…with under 1 % of its directives expiring (swarm mode, one replica)",
        med["swarm x1"]?.expiredPercent,
        (v) => v < 1,
      ),
      goal(
        "dashboard-cpu",
        `dashboard under 0.2 core with 10 browsers open (${o.peers} sessions)`,
        dash?.dashboardCpuCores10,
        (v) => v < 0.2,
      ),
      goal(
        "dashboard-redis",
        "no Redis cost per open browser: (dashboard commands/s with 10 browsers − with none) / 10 < 0.2",
        dash?.dashboardRedisPerSecond10 !== undefined && dash?.dashboardRedisPerSecond0 !== undefined
          ? round((dash.dashboardRedisPerSecond10 - dash.dashboardRedisPerSecond0) / 10, 3)
          : undefined,
        (v) => v < 0.2,
      ),
      goal(
        "tracker-redis",
        "≤ 15 Redis commands per directive (the most of any mode and replica count)",
        (() => {
          const each = Object.values(med)
            .map((m) => m?.redisOpsPerDirective)
            .filter((v) => typeof v === "number");
          return each.length > 0 ? Math.max(...each) : undefined;
        })(),
        (v) => v <= 15,
      ),
      goal(
        "tracker-scaling",
        "two replicas ≥ 1.8× one (directives/s, stress mode)",
        rat["directives/s stress x2/x1"],
        (v) => v >= 1.8,
      ),
    ],
  };
}

// ---- soak --------------------------------------------------------------------------------

/** Soak: one tracker on a real Redis, PEERS sessions with CHURN of them replaced every second for MINUTES (tracker-load --minutes). */
export async function soak(o, env) {
  if (env.available.redis) return { skipped: env.available.redis };
  const args = ["--peers", `${o.peers}`, "--replicas", "1", "--mib", `${o.size / MiB}`, "--minutes", `${o.minutes}`];
  args.push("--churn", `${o.churn}`, "--rate", `${o.rate / MiB}`, "--prefill", `${o.prefill}`);
  env.log(`bench: tracker-load ${args.join(" ")}`);
  const t = await trackerLoad(args, env);
  const MiBm = (b) => (typeof b === "number" ? round(b / MiB, 2) : null);
  const row = {
    ok: t.ok,
    error: t.error,
    sessionsChurned: t.sessionsChurned,
    trackerRssMiBPerMinute: MiBm(t.slopes?.trackerRssBytesPerMinute),
    trackerHeapMiBPerMinute: MiBm(t.slopes?.trackerHeapBytesPerMinute),
    trackerHeapTotalMiBPerMinute: MiBm(t.slopes?.trackerHeapTotalBytesPerMinute),
    trackerExternalMiBPerMinute: MiBm(t.slopes?.trackerExternalBytesPerMinute),
    trackerBrkHeapMiBPerMinute: MiBm(t.slopes?.trackerBrkHeapBytesPerMinute),
    redisMemoryMiBPerMinute: MiBm(t.slopes?.redisUsedMemoryBytesPerMinute),
    redisKeysPerMinute: t.slopes?.redisKeysPerMinute,
    directivesLost: t.transfers?.lost,
    peerEntriesLeft: t.afterViewersLeft?.peerEntriesInStore,
    keysLeftAfterSeederLeft: t.afterSeederLeft?.keys,
    trackerCpuCores: t.trackerCpuCores,
    detail: t,
  };
  const peerKinds = Object.keys(t.afterSeederLeft?.byKind ?? {}).filter((k) =>
    /:(peers|have|seen|seeders|servers|reach)$/.test(k),
  );
  const streamKinds = Object.keys(t.afterSeederLeft?.byKind ?? {}).filter((k) => k.includes("{id}"));
  return {
    settings: {
      peers: o.peers,
      minutes: o.minutes,
      churnPerSecond: o.churn,
      rateBytesPerS: o.rate,
      prefill: o.prefill,
      fileBytes: o.size,
      runs: 1,
    },
    runs: [{ run: 1, systems: { ds: row } }],
    medians: medians([{ systems: { ds: row } }]),
    ratios: {},
    columns: [
      "sessionsChurned",
      "trackerRssMiBPerMinute",
      "trackerHeapMiBPerMinute",
      "trackerHeapTotalMiBPerMinute",
      "trackerExternalMiBPerMinute",
      "trackerBrkHeapMiBPerMinute",
      "redisMemoryMiBPerMinute",
      "redisKeysPerMinute",
      "directivesLost",
      "peerEntriesLeft",
      "keysLeftAfterSeederLeft",
      "trackerCpuCores",
    ],
    goals: [
      goal(
        "soak-rss",
        "tracker RSS flat: slope < 1 MiB/min after the first fifth",
        MiBm(t.slopes?.trackerRssBytesPerMinute),
        (v) => v < 1,
      ),
      goal(
        "soak-redis",
        "Redis used_memory flat: slope < 0.5 MiB/min",
        MiBm(t.slopes?.redisUsedMemoryBytesPerMinute),
        (v) => v < 0.5,
      ),
      goal(
        "soak-directives",
        "no directive lost (started = done + failed by reason)",
        t.transfers?.lost,
        (v) => v === 0,
      ),
      goal(
        "soak-peer-keys",
        "no peer entry left once every viewer left (the seeder's own only)",
        t.afterViewersLeft?.peerEntriesInStore,
        (v) => v <= 1,
      ),
      goal(
        "soak-peer-keys-all",
        "no peer key left once the seeder left too",
        t.afterSeederLeft ? peerKinds.length : undefined,
        (v) => v === 0,
      ),
      goal(
        "soak-stream-keys",
        `a stream with no seeder and no peer retired (keys left: ${streamKinds.join(" ") || "none"})`,
        t.afterSeederLeft ? streamKinds.length : undefined,
        (v) => v === 0,
      ),
    ],
  };
}

// ---- fuzz --------------------------------------------------------------------------------

/** The fuzz campaign (test/fuzz, as `npm run fuzz`): INPUTS per public entry point, its report as the record. */
export async function fuzz(o, env) {
  const json = join(env.dir, "fuzz.json");
  const args = ["--expose-gc", join(root, "test/dist/fuzz/main.js"), "--runs", `${o.inputs}`, "--json", json];
  env.log(`bench: node ${args.join(" ")}`);
  const code = await new Promise((resolve) => {
    const c = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"], detached: true });
    env.children.add(c.pid);
    c.on("exit", (status) => {
      env.children.delete(c.pid);
      resolve(status);
    });
  });
  const { readFileSync } = await import("node:fs");
  const report = JSON.parse(readFileSync(json, "utf8"));
  const systems = {};
  for (const e of report.entries) {
    systems[e.entry] = {
      ok: e.defects.length === 0,
      ...(e.defects.length ? { error: e.defects.map((d) => d.error).join("; ") } : {}),
      inputs: e.inputs,
      defects: e.defects.length,
      inputsPerSecond: e.inputsPerSecond,
      rssGrowthMiB: round(e.memory.rssGrowthBytes / MiB, 1),
      heapGrowthMiB: round(e.memory.heapGrowthBytes / MiB, 1),
      heapSlopeKiBPer1000: round(e.memory.heapSlopeBytesPer1000 / 1024, 1),
      slowestInputMs: e.slowestInputMs,
      detail: e,
    };
  }
  const count = report.entries.reduce((n, e) => n + e.defects.length, 0);
  return {
    settings: { inputs: o.inputs, runs: 1, exitCode: code },
    runs: [{ run: 1, systems }],
    medians: Object.fromEntries(Object.entries(systems).map(([k, v]) => [k, { ...v, detail: undefined }])),
    ratios: {},
    after: report.after,
    problems: report.problems,
    columns: [
      "inputs",
      "defects",
      "inputsPerSecond",
      "rssGrowthMiB",
      "heapGrowthMiB",
      "heapSlopeKiBPer1000",
      "slowestInputMs",
    ],
    goals: [
      goal(
        "fuzz-inputs",
        `≥ ${o.inputs} inputs on every entry point`,
        Math.min(...report.entries.map((e) => e.inputs)),
        (v) => v >= o.inputs,
      ),
      goal("fuzz-defects", "0 crashes, 5xx, INTERNAL, unclear refusals or hangs", count, (v) => v === 0),
      goal(
        "fuzz-memory",
        "0 unbounded memory growth (problems of that kind)",
        report.problems.filter((p) => /grew/.test(p)).length,
        (v) => v === 0,
      ),
      goal(
        "fuzz-after",
        "a real download still byte-identical after the campaign",
        report.after ? (report.after.downloadIdentical ? 1 : 0) : undefined,
        (v) => v === 1,
      ),
    ],
  };
}

// ---- 6. checksum -------------------------------------------------------------------------

/** When the seeder was welcomed (it publishes right then), epoch ms, from its JSON log. */
function welcomedMs(log) {
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const j = JSON.parse(line);
      if (/welcomed by the tracker/.test(j.msg)) return typeof j.time === "number" ? j.time : Date.parse(j.time);
    } catch {
      /* not a log line */
    }
  }
  return undefined;
}

/** Seconds from the seeder's Welcome (it publishes right then) to its "published: ready", from its JSON log. */
function publishToReadyS(log) {
  let welcomed;
  let ready;
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const j = JSON.parse(line);
      const t = typeof j.time === "number" ? j.time : Date.parse(j.time); // epoch ms or ISO time
      if (/welcomed by the tracker/.test(j.msg)) welcomed ??= t;
      if (/published: ready/.test(j.msg)) ready ??= t;
    } catch {
      /* not a log line */
    }
  }
  const s = (ready - welcomed) / 1000;
  return Number.isFinite(s) ? s : undefined;
}

export async function checksum(o, env) {
  if (env.available.ds) return { skipped: env.available.ds };
  if (env.available.sha256sum) return { skipped: env.available.sha256sum };
  const name = "checksum.bin";
  const f = await prepareFile(env, name, o.size);
  const runs = [];
  for (let r = 0; r < o.runs; r++) {
    const dir = mkdtempSync(join(env.dir, "ds-"));
    const media = join(dir, "media");
    const res = {};
    try {
      // sha256sum first (also brings the file into the page cache for both)
      const t0 = performance.now();
      execFileSync("sha256sum", [f.file], { stdio: ["ignore", "ignore", "inherit"] });
      const shaS = (performance.now() - t0) / 1000;
      res.sha256sum = { ok: true, seconds: round(shaS, 3), MBps: round(o.size / MiB / shaS, 1) };
      // a fresh tracker and checksum service for each run: nothing cached
      mkdirSync(media);
      renameSync(f.file, join(media, name)); // same file, same (settled) mtime
      const sys = await startDistribuStream(
        { dir, mediaDir: media, name, chunkSize: o.chunkSize, originRate: 0 },
        { seederLogLevel: "info", waitReady: false },
      );
      await sys.origin.waitFor(/published: ready/, o.timeoutS * 1000);
      // the service's own CPU from here (its start-up behind it) to the whole file hashed, per byte hashed
      const cpuAtReady = sampleTree(sys.servers.checksum.target()).cpuS;
      const hashedAtReady = metricSum(
        await metricsText(sys.checksumMetricsPort).catch(() => ""),
        "pdtp_checksum_bytes_hashed_total",
      );
      // Ready comes with the first hash piece; the whole file is hashed when the service counts a
      // signed manifest (pdtp_checksum_duration_seconds_count): polled every 20 ms from here.
      let csText = "";
      for (const end = Date.now() + o.timeoutS * 1000; Date.now() < end; await sleep(20)) {
        csText = await metricsText(sys.checksumMetricsPort).catch(() => "");
        if ((metricSum(csText, "pdtp_checksum_duration_seconds_count") ?? 0) >= 1) break;
      }
      const hashedAt = Date.now();
      const readyS = publishToReadyS(sys.origin.out);
      const welcomedAt = welcomedMs(sys.origin.out);
      const s = welcomedAt === undefined ? undefined : (hashedAt - welcomedAt) / 1000;
      const service = metricSum(csText, "pdtp_checksum_duration_seconds_sum");
      const cpuS = sampleTree(sys.servers.checksum.target()).cpuS - cpuAtReady;
      const hashedBytes = (metricSum(csText, "pdtp_checksum_bytes_hashed_total") ?? 0) - (hashedAtReady ?? 0);
      res.ds = {
        ok: s !== undefined,
        readySeconds: round(readyS, 3),
        seconds: round(s, 3),
        MBps: s ? round(o.size / MiB / s, 1) : null,
        serviceSeconds: round(service, 3),
        serviceMBps: service ? round(o.size / MiB / service, 1) : null,
        cpuSecondsPerGiB: cpuS > 0 ? round(cpuS / (hashedBytes / GiB), 2) : null,
        coreMBps: cpuS > 0 ? round(hashedBytes / MiB / cpuS, 1) : null,
      };
      res.openssl = opensslSha256(o.chunkSize);
    } catch (err) {
      res.ds = { ok: false, error: err.message.slice(0, 2000) };
    } finally {
      await stopAll();
      try {
        renameSync(join(media, name), f.file);
      } catch {
        /* never moved */
      }
      rmSync(dir, { recursive: true, force: true });
    }
    runs.push({
      run: r + 1,
      systems: res,
      ratios: {
        "MBps ds/sha256sum": ratio(res.ds?.MBps, res.sha256sum?.MBps),
        "serviceMBps ds/sha256sum": ratio(res.ds?.serviceMBps, res.sha256sum?.MBps),
        "coreMBps ds/openssl": ratio(res.ds?.coreMBps, res.openssl?.coreMBps),
      },
    });
  }
  const rat = ratioMedians(runs);
  return {
    settings: {
      fileBytes: o.size,
      chunkBytes: o.chunkSize,
      runs: o.runs,
      measure:
        "ds: seconds from the seeder's Welcome (when it publishes) to the whole file hashed and signed (the checksum service's pdtp_checksum_duration_seconds_count, polled every 20 ms): the service reads the file from the seeder's data plane, hashes every chunk and signs each hash piece; readySeconds: to 'published: ready', which comes with the first hash piece; serviceSeconds: the service's own duration; cpuSecondsPerGiB and coreMBps: the service's own CPU (its process tree) from 'published: ready' to the end, per byte it hashed in that time — its rate on one core, whatever the seeder beside it on this machine takes; openssl: openssl speed -evp sha256 over chunk-sized blocks, one core",
    },
    runs,
    medians: medians(runs),
    ratios: rat,
    columns: ["MBps", "seconds", "serviceMBps", "serviceSeconds", "readySeconds", "cpuSecondsPerGiB", "coreMBps"],
    goals: [
      goal(
        "checksum",
        "checksum hash rate ≥ 0.9× sha256sum (publish to fully hashed, end to end)",
        rat["MBps ds/sha256sum"],
        (v) => v >= 0.9,
        missing(runs, "ds"),
      ),
      goal(
        "checksum",
        "checksum service hash rate per CPU second ≥ 0.6× openssl speed -evp sha256 on one core",
        rat["coreMBps ds/openssl"],
        (v) => v >= 0.6,
        missing(runs, "ds") ?? missing(runs, "openssl"),
      ),
    ],
  };
}

/** One core's SHA-256 rate over chunk-sized blocks (`openssl speed -evp sha256`, 2 s), MiB/s; failed when openssl is missing. */
function opensslSha256(blockBytes) {
  try {
    const out = execFileSync("openssl", ["speed", "-evp", "sha256", "-bytes", `${blockBytes}`, "-seconds", "2"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const m = /^sha256\s+([\d.]+)k\s*$/m.exec(out);
    if (!m) return { ok: false, error: `no sha256 rate in: ${out.slice(-200)}` };
    return { ok: true, coreMBps: round((Number(m[1]) * 1000) / MiB, 1) };
  } catch (err) {
    return { ok: false, error: `openssl speed: ${err.message.split("\n")[0]}` };
  }
}

export const SCENARIOS = {
  "flash-crowd": flashCrowd,
  single,
  memory,
  control,
  "tracker-capacity": trackerCapacity,
  soak,
  fuzz,
  checksum,
  live,
};
