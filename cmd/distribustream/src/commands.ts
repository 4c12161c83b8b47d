import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, delimiter, join } from "node:path";
import { startChecksum } from "@distribustream/checksum";
import { ChecksumProbe, startDashboard, type RunningDashboard } from "@distribustream/dashboard";
import { parseDataAddress } from "@distribustream/pdtp";
import {
  createLogger,
  createRegistry,
  Shutdown,
  startMetricsServer,
  type Logger,
  type LogFormat,
} from "@distribustream/runtime";
import { SequenceStateError, startSeeder, type CredentialRefusedError, type LiveSpec } from "@distribustream/seeder";
import { openSwarmStore, redactUrl } from "@distribustream/swarm-store";
import { peerLimits, SeederTokens, startTracker, TicketKeys } from "@distribustream/tracker";
import { loadOrCreateKey } from "./keys.js";
import {
  configError,
  recordFolderError,
  type preflightChecksum,
  type preflightDashboard,
  type preflightSeeder,
  type preflightTracker,
  type preflightUp,
} from "./preflight.js";
import { ensureSeederToken } from "./seederToken.js";

/**
 * The services' starts. Each takes what its preflight (preflight.ts)
 * checked and read, then opens, creates and listens: only here are keys
 * created, stores connected and ports bound.
 */

function setup(
  service: string,
  cfg: { logLevel: string; logFormat?: LogFormat | undefined; drainDelay?: number | undefined },
) {
  const log = createLogger(service, { level: cfg.logLevel, format: cfg.logFormat });
  // 15 s to stop, after the drain delay
  const shutdown = new Shutdown(log, 15_000 + (cfg.drainDelay ?? 0) * 1000);
  shutdown.listen();
  const registry = createRegistry();
  return { log, shutdown, registry };
}

async function metrics(ctx: ReturnType<typeof setup>, host: string, port: number, healthy: () => boolean) {
  const m = await startMetricsServer(ctx.registry, { host, port, healthy });
  ctx.shutdown.add("metrics", () => m.close());
  return m;
}

/** The tracker, from its preflight: keys and tokens files opened (and watched), the swarm store, the servers. */
export async function runTracker(plan: ReturnType<typeof preflightTracker>): Promise<void> {
  const { cfg, redisCa, tls, checksumTls } = plan;
  const ctx = setup("tracker", cfg);
  const ticketSigner = openTicketKeys(cfg.ticketKey, cfg.ticketKeyOverlap, ctx.log);
  ctx.shutdown.add("ticket keys", () => ticketSigner.close());
  const seederTokens = cfg.seederTokens === undefined ? undefined : openSeederTokens(cfg.seederTokens, ctx.log);
  if (seederTokens) ctx.shutdown.add("seeder tokens", () => seederTokens.close());
  else ctx.log.warn("insecure_open_seeding: any peer may publish as a seeder (no --seeder-tokens)");
  const store = await openStore(cfg.redis, redisCa, ctx.log);
  ctx.shutdown.add("store", () => store.close());
  let serving = false;
  // /healthz follows gRPC health: 503 while the swarm store does not answer
  const grpcHealth: { serving?: boolean } = {};
  await metrics(ctx, cfg.metricsHost, cfg.metricsPort, () => serving && grpcHealth.serving === true);
  const tracker = await startTracker({
    host: cfg.host,
    port: cfg.port,
    checksum: cfg.checksum,
    checksumTls,
    tls,
    limits: peerLimits(cfg.maxSessionsPerIp, cfg.maxMessagesPerIp),
    drainDelayMs: cfg.drainDelay * 1000,
    store,
    ticketSigner,
    chunkSize: cfg.chunkSize,
    peerTtlMs: cfg.peerTtl * 1000,
    streamRetireMs: cfg.streamRetireAfter * 1000,
    seederTokens,
    peerProbe: cfg.skipPeerProbe ? false : undefined,
    log: ctx.log,
    registry: ctx.registry,
  });
  Object.defineProperty(grpcHealth, "serving", { get: () => tracker.health.serving });
  serving = true;
  ctx.shutdown.add("tracker", async () => {
    serving = false;
    await tracker.drain();
  });
}

export async function runDashboard(plan: ReturnType<typeof preflightDashboard>): Promise<void> {
  const { cfg, redisCa, access } = plan;
  const ctx = setup("dashboard", cfg);
  const store = await openStore(cfg.redis, redisCa, ctx.log);
  ctx.shutdown.add("store", () => store.close());
  const dashboard = await startDashboard({
    host: cfg.host,
    port: cfg.port,
    store,
    registry: ctx.registry,
    log: ctx.log,
    access,
    checksum: cfg.checksumMetrics === undefined ? undefined : ChecksumProbe.fromUrl(cfg.checksumMetrics),
  });
  ctx.shutdown.add("dashboard", () => dashboard.close());
  process.stdout.write(`DistribuStream dashboard: ${dashboard.url}\n`);
}

export async function runChecksum(plan: ReturnType<typeof preflightChecksum>): Promise<void> {
  const { cfg, tls } = plan;
  const ctx = setup("checksum", cfg);
  const signer = loadOrCreateKey(cfg.networkKey, "network_key", ctx.log);
  let serving = false;
  await metrics(ctx, cfg.metricsHost, cfg.metricsPort, () => serving);
  const checksum = await startChecksum({
    host: cfg.host,
    port: cfg.port,
    drainDelayMs: cfg.drainDelay * 1000,
    signer,
    tls,
    originPolicy: plan.originPolicy,
    log: ctx.log,
    registry: ctx.registry,
  });
  serving = true;
  ctx.shutdown.add("checksum", async () => {
    serving = false;
    await checksum.drain();
  });
}

export async function runSeeder(plan: ReturnType<typeof preflightSeeder>): Promise<void> {
  const { cfg, tracker, trackerTls, origins, live, media, credential } = plan;
  const recordDir = makeRecordFolder(plan.recordDir);
  const ctx = setup("seeder", cfg);
  let serving = false;
  await metrics(ctx, cfg.metricsHost, cfg.metricsPort, () => serving);
  const seeder = await startSeederChecked({
    tracker: tracker.target,
    trackerTls,
    media,
    origins,
    originPollMs: cfg.originPoll * 1000,
    originPolicy: plan.originPolicy,
    live,
    stateDir: cfg.stateDir,
    recordDir,
    dataHost: cfg.dataHost,
    dataPort: cfg.dataPort,
    advertise: cfg.advertise,
    internalAddress: cfg.internalAddress,
    maxUploadRate: cfg.maxUploadRate,
    credential,
    onRefused: (err) => exitRefused(ctx, err),
    log: ctx.log,
    registry: ctx.registry,
  });
  serving = true;
  ctx.shutdown.add("seeder", async () => {
    serving = false;
    await seeder.drain();
  });
  ctx.log.info(
    { dataPort: seeder.dataPort, media, origins: origins.length, live: live.map((l) => l.name) },
    "seeder serving",
  );
}

/**
 * Tracker, checksum and seeder in one process on the memory store, with a
 * demo file and, without --live, a live demo.
 */
export async function runUp(plan: ReturnType<typeof preflightUp>): Promise<void> {
  const { cfg, redis, redisCa, tls, origins, originPolicy: policy, live: userLive, media } = plan;
  const recordDir = makeRecordFolder(plan.recordDir);
  const ctx = setup("distribustream", cfg);
  mkdirSync(media, { recursive: true });
  const demo = origins.length > 0 ? undefined : ensureDemoFile(media, ctx.log);
  const networkKey = loadOrCreateKey(plan.keys.networkKey, "network_key", ctx.log);
  const ticketSigner = openTicketKeys(plan.keys.ticketKey, 10, ctx.log);
  ctx.shutdown.add("ticket keys", () => ticketSigner.close());
  const upToken = ensureSeederToken(cfg.dataDir, "up");
  if (upToken.created) {
    ctx.log.info(
      { tokenId: upToken.tokenId, tokensFile: upToken.tokensFile, tokenFile: upToken.tokenFile },
      "created a seeder token for the embedded seeder",
    );
  }
  const seederTokens = openSeederTokens(upToken.tokensFile, ctx.log);
  ctx.shutdown.add("seeder tokens", () => seederTokens.close());
  let serving = false;
  const m = await metrics(ctx, cfg.metricsHost, cfg.metricsPort, () => serving);

  const checksum = await startChecksum({
    host: "127.0.0.1",
    port: cfg.checksumPort,
    signer: networkKey,
    originPolicy: policy,
    log: ctx.log.child({ part: "checksum" }),
    registry: ctx.registry,
  });
  ctx.shutdown.add("checksum", () => checksum.drain());
  const store = await openStore(redis, redisCa, ctx.log);
  ctx.shutdown.add("store", () => store.close());
  const tracker = await startTracker({
    host: cfg.host,
    port: cfg.port,
    checksum: `127.0.0.1:${checksum.port}`,
    tls,
    // the embedded seeder's way in: the certificate need not name 127.0.0.1
    plaintextLoopback: tls !== undefined,
    limits: peerLimits(cfg.maxSessionsPerIp, cfg.maxMessagesPerIp),
    store,
    ticketSigner,
    chunkSize: cfg.chunkSize,
    seederTokens,
    log: ctx.log.child({ part: "tracker" }),
    registry: ctx.registry,
  });
  ctx.shutdown.add("tracker", () => tracker.drain());
  const liveDemo = userLive.length > 0 ? undefined : startLiveDemo(ctx, demo ?? listMedia(media)[0], media);
  const live = liveDemo ? [liveDemo] : userLive;
  const seeder = await startSeederChecked({
    tracker: `127.0.0.1:${tracker.loopbackPort ?? tracker.port}`,
    media,
    origins,
    originPollMs: cfg.originPoll * 1000,
    originPolicy: policy,
    live,
    stateDir: cfg.stateDir ?? join(cfg.dataDir, "live"),
    recordDir,
    dataHost: cfg.host,
    dataPort: cfg.dataPort,
    advertise: cfg.vhost === undefined ? undefined : { host: parseDataAddress(cfg.vhost).host },
    credential: upToken.token,
    onRefused: (err) => exitRefused(ctx, err),
    log: ctx.log.child({ part: "seeder" }),
    registry: ctx.registry,
  });
  ctx.shutdown.add("seeder", async () => {
    serving = false;
    await seeder.drain();
  });
  // before the seeder drains (steps run in reverse): the demo's end is the broadcast's end, unpublished
  if (liveDemo?.stop) ctx.shutdown.add("live demo", liveDemo.stop);
  const dashboard = await upDashboard(ctx, plan, store, () => checksum.health.serving);
  serving = true;

  const liveNames = new Set(live.map((l) => l.name));
  const files = (demo ? [demo] : listMedia(media).slice(0, 3)).filter((n) => !liveNames.has(n));
  const names = [...origins.map((o) => o.name), ...files, ...liveNames];
  const host = cfg.vhost ?? "localhost";
  const scheme = tls ? "pdtps" : "pdtp";
  const ready = await Promise.allSettled(names.map((n) => seeder.whenReady(n)));
  const lines = [
    `DistribuStream is up: tracker ${scheme}://${host}:${tracker.port}, seeder data plane :${seeder.dataPort}, metrics http://${host}:${m.port}/metrics`,
    typeof dashboard === "string"
      ? `Dashboard not started: ${dashboard}`
      : `Dashboard: ${dashboard.url.replace("//127.0.0.1:", "//localhost:")}${cfg.dashboardAuthToken ? "?token=…" : ""}`,
    `Network key ${networkKey.keyId} (in ${plan.keys.networkKey}; ?key= pins it).`,
    `Publishing ${media}${origins.length > 0 ? ` and ${origins.length} origin${origins.length > 1 ? "s" : ""}` : ""}. Download with:`,
    ...names.map((n, i) =>
      ready[i]!.status === "fulfilled"
        ? `  npx dsclient '${scheme}://${host}:${tracker.port}/${encodeURI(n)}?key=${networkKey.keyId}'` +
          (liveNames.has(n) ? `   (live${n === liveDemo?.name ? `: ${describeDemo(liveDemo)}` : ""})` : "")
        : `  (${n} could not be published: ${(ready[i] as PromiseRejectedResult).reason})`,
    ),
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

/**
 * `up`'s dashboard, in process on its swarm store, its checksum service
 * seen through the process's registry. A port in use does not stop `up`
 * (the dashboard is for watching; another `up` may hold 6087): resolves the
 * reason instead.
 */
async function upDashboard(
  ctx: ReturnType<typeof setup>,
  { cfg, access }: ReturnType<typeof preflightUp>,
  store: Awaited<ReturnType<typeof openStore>>,
  checksumServing: () => boolean,
): Promise<RunningDashboard | string> {
  try {
    const dashboard = await startDashboard({
      host: cfg.dashboardHost,
      port: cfg.dashboardPort,
      store,
      registry: ctx.registry,
      log: ctx.log.child({ part: "dashboard" }),
      access,
      checksum: ChecksumProbe.fromRegistry(ctx.registry, checksumServing),
    });
    ctx.shutdown.add("dashboard", () => dashboard.close());
    return dashboard;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    const why = `${cfg.dashboardHost}:${cfg.dashboardPort} is in use (choose another with --dashboard-port)`;
    ctx.log.warn({ host: cfg.dashboardHost, port: cfg.dashboardPort }, "dashboard not started: its port is in use");
    return why;
  }
}

const LIVE_DEMO = "demo-live";

/**
 * `up`'s live demo: an MPEG-TS test pattern with a tone (640x360, 25 fps,
 * H.264 at 1.5 Mbit/s and AAC, a key frame a second) from ffmpeg when it is
 * on the PATH (a child process; `stop` kills it), else `file` looped at
 * 2 Mbit/s; undefined with neither.
 */
function startLiveDemo(
  ctx: ReturnType<typeof setup>,
  file: string | undefined,
  media: string,
): (LiveSpec & { stop?: () => Promise<void> }) | undefined {
  const log = ctx.log.child({ part: "live demo" });
  const ffmpeg = onPath("ffmpeg");
  if (!ffmpeg) {
    if (file === undefined) return undefined;
    const path = join(media, file);
    log.info({ file: path }, "ffmpeg is not on the PATH: the live demo loops a media file at 2 Mbit/s");
    return { name: LIVE_DEMO, input: { kind: "file", path, bitrate: 2_000_000, loop: true } };
  }
  // prettier-ignore
  const args = [
    "-nostdin", "-v", "error", "-re",
    "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440",
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-b:v", "1500k", "-g", "25",
    "-c:a", "aac", "-b:a", "96k",
    "-f", "mpegts", "-",
  ];
  // its own process group: a Ctrl-C in the terminal stops `up`, which then stops it
  const child = spawn(ffmpeg, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let stopping = false;
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    if (stopping) return; // what it says of its pipe closing
    for (const line of text.split("\n")) if (line.trim()) log.warn({ ffmpeg: line.trim() }, "live demo encoder says");
  });
  child.on("error", (err) => log.warn({ err: err.message }, "live demo: ffmpeg did not start"));
  child.on("exit", (code, signal) => {
    if (!stopping) log.warn({ code, signal }, "live demo: ffmpeg exited, the live demo ends");
  });
  log.info({ pid: child.pid }, "live demo: ffmpeg test pattern");
  return {
    name: LIVE_DEMO,
    input: { kind: "stream", stream: child.stdout, label: "ffmpeg test pattern" },
    bitrate: 1_600_000,
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM"); // it ends its output: the broadcast's end
      // not read (the tracker refused the broadcast), it waits on a full pipe: closing it ends the wait
      const unblock = setTimeout(() => child.stdout.destroy(), 500);
      const kill = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(unblock);
      clearTimeout(kill);
    },
  };
}

function describeDemo(spec: LiveSpec): string {
  return spec.input.kind === "file" ? `${basename(spec.input.path)} looped` : "an ffmpeg test pattern";
}

/** The executable `cmd` on the PATH, or undefined. */
function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const path = join(dir, cmd);
    try {
      accessSync(path, constants.X_OK);
      if (statSync(path).isFile()) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The ticket key file, created with one key when missing, and watched for rotations. */
function openTicketKeys(path: string, overlapSeconds: number, log: Logger): TicketKeys {
  if (!existsSync(path)) loadOrCreateKey(path, "ticket_key", log);
  try {
    return TicketKeys.watch(path, log, { overlapMs: overlapSeconds * 1000 });
  } catch (err) {
    throw configError("ticket_key", (err as Error).message);
  }
}

/** The credentials file of seeder tokens, loaded now (a bad file stops the command) and polled for changes. */
function openSeederTokens(path: string, log: Logger): SeederTokens {
  try {
    return SeederTokens.open(path, log);
  } catch (err) {
    throw configError("seeder_tokens", (err as Error).message);
  }
}

/** Retrying cannot help a refused credential: stop everything and exit 3 with the tracker's reason. */
function exitRefused(ctx: ReturnType<typeof setup>, err: CredentialRefusedError): void {
  const me = basename(process.argv[1] ?? "distribustream", ".js");
  process.stderr.write(`${me}: ${err.message}\n`);
  setImmediate(() => void ctx.shutdown.run().then(() => process.exit(3)));
}

/**
 * The swarm store: Redis when a URL is given, else memory (one tracker
 * process only); `tlsCa` from `readRedisCa`. Connection errors (a wrong
 * password…) are logged with the redacted URL, once each until the
 * connection is ready again; meanwhile the tracker's health is NOT_SERVING.
 */
async function openStore(url: string | undefined, tlsCa: string | undefined, log: Logger) {
  const redacted = url ? redactUrl(url) : "memory";
  try {
    const store = await openSwarmStore(url, {
      tlsCa,
      onConnectionError: (err) => log.error({ store: redacted, err: err.message }, "swarm store connection failed"),
    });
    log.info({ store: redacted, tls: tlsCa ? "redis_ca" : undefined }, "swarm store opened");
    return store;
  } catch (err) {
    throw configError("redis", (err as Error).message);
  }
}

/** The live recordings' folder of the preflight, created if missing. */
function makeRecordFolder(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    mkdirSync(path, { recursive: true });
  } catch (err) {
    throw recordFolderError(path, err);
  }
  return path;
}

/** startSeeder, with a live state file it cannot use reported as a bad state_dir (exit 2, no stack). */
async function startSeederChecked(opts: Parameters<typeof startSeeder>[0]): ReturnType<typeof startSeeder> {
  try {
    return await startSeeder(opts);
  } catch (err) {
    if (err instanceof SequenceStateError) throw configError("state_dir", err.message);
    throw err;
  }
}

function listMedia(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => !f.split("/").some((s) => s.startsWith(".")) && statSync(join(dir, f)).isFile())
    .sort();
}

/** Writes media/demo.bin (16 MiB of random bytes) when the folder has no files; returns its name. */
function ensureDemoFile(dir: string, log: Logger): string | undefined {
  if (listMedia(dir).length > 0) return undefined;
  const name = "demo.bin";
  writeFileSync(join(dir, name), randomBytes(16 * 1024 * 1024));
  log.info({ file: join(dir, name) }, "media folder was empty: created a demo file");
  return name;
}
