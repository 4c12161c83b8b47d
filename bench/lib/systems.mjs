// The systems a scenario compares, each started the same way: an origin (and whatever it needs: a
// tracker, a checksum service) in `start`, then N viewers launched at once by the trial runner.
//   ds         tracker + checksum + seeder + N dsclient, each a separate process
//   webtorrent npm webtorrent over TCP + bittorrent-tracker on loopback (no DHT, LSD, UPnP, NAT-PMP, uTP, WebRTC)
//   aria2      aria2c seeding and downloading through bittorrent-tracker (same .torrent, same piece size)
//   http       nginx serving the file to N curl clients
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import os from "node:os";
import { join } from "node:path";
import { ANCHORS_DIR } from "./anchors.mjs";
import { Proc, sleep } from "./procs.mjs";
import { DS, DSCLIENT, freePort } from "./util.mjs";

export async function waitForPort(port, proc, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (proc && !proc.running)
      throw new Error(`${proc.name} exited before port ${port} opened\n${proc.out.slice(-3000)}`);
    const ok = await new Promise((r) => {
      const s = connect(port, "127.0.0.1", () => (s.destroy(), r(true)));
      s.on("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > end)
      throw new Error(`port ${port} not open within ${ms} ms${proc ? `\n${proc.out.slice(-3000)}` : ""}`);
    await sleep(100);
  }
}

export async function metricsText(port) {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** Sum of a metric's samples (every label set), or undefined when the metric is absent. */
export function metricSum(text, name) {
  let found = false;
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    found = true;
    sum += Number(m[1]);
  }
  return found ? sum : undefined;
}

const rateArg = (r) => `${Math.round(r)}`;

// ---- DistribuStream ------------------------------------------------------------------

/**
 * Tracker (memory swarm store), checksum service and seeder as separate processes.
 * ctx: { dir, mediaDir, name, chunkSize, originRate, log, live? }; live: { name, bitrate } broadcasts the
 * seeder's standard input (`seeder.stdin`) as NAME instead of publishing a media folder. logLevel: of all three
 * (default warn, the seeder's seederLogLevel)
 */
export async function startDistribuStream(ctx, { seederLogLevel = "warn", logLevel, waitReady = true } = {}) {
  const keys = join(ctx.dir, "keys");
  mkdirSync(keys, { recursive: true });
  const [port, csPort, tm, cm, sm, dp] = await Promise.all(Array.from({ length: 6 }, freePort));
  const checksum = new Proc(
    "checksum",
    process.execPath,
    [
      DS,
      "checksum",
      "--host",
      "127.0.0.1",
      "--port",
      `${csPort}`,
      "--metrics-port",
      `${cm}`,
      "--network-key",
      join(keys, "network-key.pem"),
      "--log-level",
      logLevel ?? "warn",
    ],
    { cwd: ctx.dir },
  );
  await waitForPort(csPort, checksum);
  const tracker = new Proc(
    "tracker",
    process.execPath,
    [
      DS,
      "tracker",
      "--insecure-open-seeding",
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
      "--checksum",
      `127.0.0.1:${csPort}`,
      "--metrics-port",
      `${tm}`,
      "--ticket-key",
      join(keys, "ticket-key.pem"),
      "--chunk-size",
      `${ctx.chunkSize}`,
      // every viewer connects from 127.0.0.1 here: no per-address limits (as bench/tracker-load.mjs)
      "--max-sessions-per-ip",
      "0",
      "--max-messages-per-ip",
      "0",
      "--log-level",
      logLevel ?? "warn",
    ],
    { cwd: ctx.dir },
  );
  await waitForPort(port, tracker);
  const seeder = new Proc(
    "seeder",
    process.execPath,
    [
      DS,
      "seeder",
      "--tracker",
      `127.0.0.1:${port}`,
      ...(ctx.live
        ? ["--live", `${ctx.live.name}=-`, "--live-bitrate", `${ctx.live.bitrate}`]
        : ["--media", ctx.mediaDir]),
      "--data-host",
      "127.0.0.1",
      "--data-port",
      `${dp}`,
      "--metrics-port",
      `${sm}`,
      ...(ctx.originRate > 0 ? ["--max-upload-rate", rateArg(ctx.originRate)] : []),
      "--log-level",
      logLevel ?? seederLogLevel,
    ],
    { cwd: ctx.dir, stdin: ctx.live ? "pipe" : undefined },
  );
  const hashedBytes = async () =>
    metricSum(await metricsText(cm).catch(() => ""), "pdtp_checksum_bytes_hashed_total") ?? 0;
  const sys = {
    name: "ds",
    port,
    trackerMetricsPort: tm,
    seederMetricsPort: sm,
    checksumMetricsPort: cm,
    origin: seeder,
    servers: { tracker, checksum, seeder },
    async ready() {
      const end = Date.now() + 30 * 60_000;
      for (;;) {
        if (!seeder.running) throw new Error(`seeder exited\n${seeder.out.slice(-3000)}`);
        const text = await metricsText(sm).catch(() => "");
        // on-demand: ready once the checksum service has hashed the whole file, as a file nginx serves is
        // whole on disk; the one-time pass per file version is the checksum scenario's figure
        const published = (metricSum(text, "pdtp_seeder_published_streams") ?? 0) >= 1;
        if (published && ctx.live) return;
        if (published && (await hashedBytes()) >= (ctx.size ?? 0)) return;
        if (Date.now() > end) throw new Error("seeder never published");
        await sleep(200);
      }
    },
    /** Data-plane payload the seeder sent (its pdtp_dataplane_sent_bytes_total). */
    async originPayloadBytes() {
      return metricSum(await metricsText(sm), "pdtp_dataplane_sent_bytes_total") ?? 0;
    },
    async trackerFigures() {
      const text = await metricsText(tm);
      return {
        controlBytes: metricSum(text, "pdtp_tracker_control_bytes_total") ?? null,
        controlMessages: metricSum(text, "pdtp_tracker_control_messages_total") ?? null,
        deliveredBytes: metricSum(text, "pdtp_tracker_delivered_bytes_total") ?? null,
      };
    },
    viewer(i, out, rates, { stdoutSink, stream } = {}) {
      return {
        // the installed command as a viewer runs it: its shebang carries dsclient's node flags
        cmd: DSCLIENT,
        args: [
          `pdtp://127.0.0.1:${port}/${stream ?? ctx.name}`,
          "-o",
          stdoutSink ? "-" : out,
          "--listen-host",
          "127.0.0.1",
          "--linger",
          "86400",
          "--stall",
          "300",
          "-q",
          "--log-level",
          "info",
          ...(rates.down > 0 ? ["--max-download-rate", rateArg(rates.down)] : []),
          ...(rates.up > 0 ? ["--max-upload-rate", rateArg(rates.up)] : []),
        ],
        doneRe: /"msg":"download complete"/,
        outputFile: stdoutSink ? undefined : out,
      };
    },
  };
  if (waitReady) await sys.ready();
  return sys;
}

// ---- BitTorrent anchors ----------------------------------------------------------------

export const ANNOUNCE_INTERVAL_S = 5;

async function startBtTracker(ctx) {
  const port = await freePort();
  const tracker = new Proc(
    "bt-tracker",
    process.execPath,
    [join(ANCHORS_DIR, "tracker.mjs"), `${port}`, `${ANNOUNCE_INTERVAL_S}`],
    { cwd: ctx.dir },
  );
  await tracker.waitFor(/tracker listening/, 30_000);
  const torrent = join(ctx.dir, `${ctx.name}.torrent`);
  execFileSync(
    process.execPath,
    [join(ANCHORS_DIR, "make-torrent.mjs"), ctx.file, torrent, `http://127.0.0.1:${port}/announce`, `${ctx.chunkSize}`],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  return { tracker, torrent };
}

export async function startWebTorrent(ctx) {
  const { tracker, torrent } = await startBtTracker(ctx);
  const port = await freePort();
  const origin = new Proc(
    "wt-origin",
    process.execPath,
    [join(ANCHORS_DIR, "peer.mjs"), "seed", torrent, ctx.mediaDir, `${port}`, rateArg(ctx.originRate), "0"],
    { cwd: ctx.dir },
  );
  await origin.waitFor(/^ready$/m, 10 * 60_000);
  await waitForPort(port, origin);
  await sleep(1000); // its first announce
  return {
    name: "webtorrent",
    origin,
    servers: { "bt-tracker": tracker, origin },
    viewer(i, out, rates) {
      mkdirSync(out, { recursive: true });
      return {
        cmd: process.execPath,
        args: [join(ANCHORS_DIR, "peer.mjs"), "get", torrent, out, "0", rateArg(rates.up), rateArg(rates.down)],
        doneRe: /^done$/,
        outputFile: join(out, ctx.name),
      };
    },
  };
}

export const ARIA2_COMMON = [
  "--enable-dht=false",
  "--enable-dht6=false",
  "--bt-enable-lpd=false",
  "--disable-ipv6=true",
  "--summary-interval=0",
  "--show-console-readout=false",
  "--console-log-level=notice",
  "--enable-color=false",
  "--file-allocation=none",
  "--seed-ratio=0.0", // keep seeding until stopped, as every other viewer here does
  "--allow-overwrite=true",
  "--auto-file-renaming=false",
];

export async function startAria2(ctx) {
  const { tracker, torrent } = await startBtTracker(ctx);
  // aria2 reports "Download complete" only once seeding is over; this hook runs when the data is complete
  const hook = join(ctx.dir, "bt-complete.sh");
  writeFileSync(hook, '#!/bin/sh\necho "bench: bt download complete: $3"\n', { mode: 0o755 });
  const port = await freePort();
  const origin = new Proc(
    "aria2-origin",
    "aria2c",
    [
      ...ARIA2_COMMON,
      `--dir=${ctx.mediaDir}`,
      "--bt-seed-unverified=true",
      "--check-integrity=false",
      `--listen-port=${port}`,
      ...(ctx.originRate > 0 ? [`--max-overall-upload-limit=${rateArg(ctx.originRate)}`] : []),
      torrent,
    ],
    { cwd: ctx.dir },
  );
  await waitForPort(port, origin);
  await sleep(1000); // its first announce
  return {
    name: "aria2",
    origin,
    servers: { "bt-tracker": tracker, origin },
    async viewer(i, out, rates) {
      mkdirSync(out, { recursive: true });
      return {
        cmd: "aria2c",
        args: [
          ...ARIA2_COMMON,
          `--dir=${out}`,
          `--listen-port=${await freePort()}`,
          ...(rates.down > 0 ? [`--max-overall-download-limit=${rateArg(rates.down)}`] : []),
          ...(rates.up > 0 ? [`--max-overall-upload-limit=${rateArg(rates.up)}`] : []),
          `--on-bt-download-complete=${hook}`,
          torrent,
        ],
        doneRe: /^bench: bt download complete/,
        outputFile: join(out, ctx.name),
      };
    },
  };
}

// ---- plain HTTP ------------------------------------------------------------------------

const TEMP_DIRECTIVES = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"];

/**
 * nginx in its own prefix (config, pid file, logs and temp folders in ctx.dir), as the current user.
 * nginx caps a connection (limit_rate), not a server: every viewer starts at once and downloads the
 * same file, so limit_rate = min(viewer rate, origin rate / N) is the origin cap shared fairly.
 * ctx.accessLog: a file where each response is logged as "<epoch seconds> <bytes sent> <status> <uri>".
 */
export async function startNginx(ctx, viewers) {
  const port = await freePort();
  const prefix = join(ctx.dir, "nginx");
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const built = execFileSync("nginx", ["-V"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const V = `${built}`;
  const temps = TEMP_DIRECTIVES.filter((d) => d === "client_body" || !V.includes(`--without-http_${d}_module`)).map(
    (d) => {
      mkdirSync(join(prefix, `tmp-${d}`), { recursive: true });
      return `${d}_temp_path ${join(prefix, `tmp-${d}`)};`;
    },
  );
  const caps = [
    ctx.viewerRate > 0 ? ctx.viewerRate : Infinity,
    ctx.originRate > 0 ? ctx.originRate / viewers : Infinity,
  ];
  const limit = Math.min(...caps);
  const user = process.getuid?.() === 0 ? `user ${os.userInfo().username};` : "";
  const conf = join(prefix, "nginx.conf");
  writeFileSync(
    conf,
    `${user}
daemon off;
master_process on;
worker_processes 1;
pid ${join(prefix, "nginx.pid")};
error_log ${join(prefix, "logs/error.log")} warn;
events { worker_connections 1024; }
http {
  ${ctx.accessLog ? `log_format sent '$msec $bytes_sent $status $uri';\n  access_log ${ctx.accessLog} sent;` : "access_log off;"}
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 5;
  default_type application/octet-stream;
  ${temps.join("\n  ")}
  server {
    listen 127.0.0.1:${port};
    root ${ctx.mediaDir};
    ${Number.isFinite(limit) ? `limit_rate ${Math.floor(limit)};` : ""}
  }
}
`,
  );
  // -e: the error log before the config is read (else nginx opens the system's)
  const origin = new Proc("nginx", "nginx", ["-p", prefix, "-c", conf, "-e", join(prefix, "logs/error.log")], {
    cwd: ctx.dir,
  });
  await waitForPort(port, origin);
  return {
    name: "http",
    port,
    origin,
    servers: { nginx: origin },
    limitRatePerConnection: Number.isFinite(limit) ? Math.floor(limit) : null,
    viewer(i, out, rates) {
      return {
        cmd: "curl",
        args: [
          "-sS",
          "--fail",
          "-o",
          out,
          ...(rates.down > 0 ? ["--limit-rate", rateArg(rates.down)] : []),
          `http://127.0.0.1:${port}/${ctx.name}`,
        ],
        doneOnExit: true,
        outputFile: out,
      };
    },
  };
}

export const SYSTEMS = {
  ds: (ctx) => startDistribuStream(ctx),
  webtorrent: (ctx) => startWebTorrent(ctx),
  aria2: (ctx) => startAria2(ctx),
  http: (ctx, viewers) => startNginx(ctx, viewers),
};
