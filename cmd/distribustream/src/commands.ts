import { spawn } from "node:child_process";
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, delimiter, dirname, join, resolve } from "node:path";
import { startChecksum } from "@distribustream/checksum";
import {
  ChecksumProbe,
  parseBasicCredentials,
  startDashboard,
  type AccessControl,
  type RunningDashboard,
} from "@distribustream/dashboard";
import { parseDataAddress, parseTrackerAddress } from "@distribustream/pdtp";
import {
  ConfigError,
  createLogger,
  createRegistry,
  loadConfig,
  readPemCertificates,
  readServerTls,
  Shutdown,
  startMetricsServer,
  type ClientTls,
  type Logger,
} from "@distribustream/runtime";
import {
  checkLiveSpecs,
  checkOriginNames,
  parseOriginEntry,
  parseOriginList,
  SequenceStateError,
  startSeeder,
  type CredentialRefusedError,
  type LiveSpec,
  type OriginSpec,
} from "@distribustream/seeder";
import { openSwarmStore, redactUrl } from "@distribustream/swarm-store";
import { parseToken, peerLimits, SeederTokens, startTracker, TicketKeys } from "@distribustream/tracker";
import {
  checksumSchema,
  dashboardSchema,
  liveSpecs,
  originalAliases,
  seederSchema,
  trackerSchema,
  upSchema,
} from "./config.js";
import { loadOrCreateKey } from "./keys.js";
import { ensureSeederToken } from "./seederToken.js";

type Flags = Record<string, unknown>;

function setup(service: string, logLevel: string) {
  const log = createLogger(service, { level: logLevel });
  const shutdown = new Shutdown(log);
  shutdown.listen();
  const registry = createRegistry();
  return { log, shutdown, registry };
}

async function metrics(ctx: ReturnType<typeof setup>, host: string, port: number, healthy: () => boolean) {
  const m = await startMetricsServer(ctx.registry, { host, port, healthy });
  ctx.shutdown.add("metrics", () => m.close());
  return m;
}

export async function runTracker(flags: Flags, confFile: string | undefined): Promise<void> {
  const cfg = loadConfig(trackerSchema, { flags, env: process.env, confFile, aliases: originalAliases.tracker });
  const tlsCa = readRedisCa(cfg.redis, cfg.redisCa);
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  const checksumTls: ClientTls | undefined =
    cfg.checksumCa === undefined ? undefined : { ca: readPemCertificates(cfg.checksumCa, "checksum_ca") };
  if (cfg.requireKeys) requireKeyFile(cfg.ticketKey, "ticket_key");
  const ctx = setup("tracker", cfg.logLevel);
  const ticketSigner = openTicketKeys(cfg.ticketKey, cfg.ticketKeyOverlap, ctx.log);
  ctx.shutdown.add("ticket keys", () => ticketSigner.close());
  const seederTokens = cfg.seederTokens === undefined ? undefined : openSeederTokens(cfg.seederTokens, ctx.log);
  if (seederTokens) ctx.shutdown.add("seeder tokens", () => seederTokens.close());
  const store = await openStore(cfg.redis, tlsCa, ctx.log);
  ctx.shutdown.add("store", () => store.close());
  let serving = false;
  // /healthz follows gRPC health: 503 while the swarm store does not answer
  const grpcHealth: { serving?: boolean } = {};
  await metrics(ctx, cfg.host, cfg.metricsPort, () => serving && grpcHealth.serving === true);
  const tracker = await startTracker({
    host: cfg.host,
    port: cfg.port,
    checksum: cfg.checksum,
    checksumTls,
    tls,
    limits: peerLimits(cfg.maxSessionsPerIp, cfg.maxMessagesPerIp),
    store,
    ticketSigner,
    chunkSize: cfg.chunkSize,
    peerTtlMs: cfg.peerTtl * 1000,
    seederTokens,
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

export async function runDashboard(flags: Flags, confFile: string | undefined): Promise<void> {
  const cfg = loadConfig(dashboardSchema, { flags, env: process.env, confFile, aliases: originalAliases.dashboard });
  const tlsCa = readRedisCa(cfg.redis, cfg.redisCa);
  const token = cfg.authTokenFile === undefined ? cfg.authToken : readDashboardToken(cfg.authTokenFile);
  const access = dashboardAccess(token, cfg.authFile, cfg.authCredentials, "auth_file", "auth_credentials");
  const ctx = setup("dashboard", cfg.logLevel);
  const store = await openStore(cfg.redis, tlsCa, ctx.log);
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

/** The dashboard's bearer token from auth_token_file: its one line, 16+ characters; never part of a message. */
function readDashboardToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw configError("auth_token_file", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (text.length < 16 || /\s/.test(text)) {
    throw configError("auth_token_file", `${file} does not hold a token (one line of at least 16 characters)`);
  }
  return text;
}

/**
 * With require_keys, a key file that does not exist stops the service
 * (exit 2) instead of being created: in a deployment a key made by one
 * replica alone would differ from its peers' (tickets refused) or from the
 * one viewers pinned.
 */
function requireKeyFile(path: string, setting: string): void {
  if (existsSync(path)) return;
  throw configError(
    setting,
    `${path} does not exist and require_keys is set (a deployment never creates keys by itself); ` +
      `create it with: distribustream keys init --dir ${dirname(path) || "."}`,
  );
}

/**
 * Who may read the dashboard: a bearer token, and/or a basic-auth user from
 * a file or a "user:password" setting; undefined when none is set (the
 * config allows that on loopback only).
 */
function dashboardAccess(
  token: string | undefined,
  file: string | undefined,
  credentials: string | undefined,
  fileSetting: string,
  credentialsSetting: string,
): AccessControl | undefined {
  if (file !== undefined && credentials !== undefined) {
    throw configError(
      fileSetting,
      `give the basic-auth user either as ${fileSetting} or as ${credentialsSetting}, not both`,
    );
  }
  let basic: AccessControl["basic"];
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw configError(fileSetting, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    try {
      basic = parseBasicCredentials(text, file);
    } catch (err) {
      throw configError(fileSetting, (err as Error).message);
    }
  } else if (credentials !== undefined) {
    try {
      basic = parseBasicCredentials(credentials, credentialsSetting);
    } catch (err) {
      throw configError(credentialsSetting, (err as Error).message);
    }
  }
  return token === undefined && basic === undefined ? undefined : { token, basic };
}

export async function runChecksum(flags: Flags, confFile: string | undefined): Promise<void> {
  const cfg = loadConfig(checksumSchema, { flags, env: process.env, confFile, aliases: originalAliases.checksum });
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  if (cfg.requireKeys) requireKeyFile(cfg.networkKey, "network_key");
  const ctx = setup("checksum", cfg.logLevel);
  const signer = loadOrCreateKey(cfg.networkKey, "network_key", ctx.log);
  let serving = false;
  await metrics(ctx, cfg.host, cfg.metricsPort, () => serving);
  const checksum = await startChecksum({
    host: cfg.host,
    port: cfg.port,
    signer,
    tls,
    log: ctx.log,
    registry: ctx.registry,
  });
  serving = true;
  ctx.shutdown.add("checksum", async () => {
    serving = false;
    await checksum.drain();
  });
}

export async function runSeeder(flags: Flags, confFile: string | undefined): Promise<void> {
  // --token and --token-file set seeder_token and seeder_token_file (DS_SEEDER_TOKEN, DS_SEEDER_TOKEN_FILE)
  const { token, tokenFile, ...rest } = flags;
  const cfg = withFlagNames(() =>
    loadConfig(seederSchema, {
      flags: { ...rest, seederToken: token, seederTokenFile: tokenFile },
      env: process.env,
      confFile,
      aliases: originalAliases.seeder,
    }),
  );
  const credential = seederCredential(cfg.seederToken, cfg.seederTokenFile);
  const tracker = parseTrackerAddress(cfg.tracker);
  if (cfg.tlsCa !== undefined && !tracker.tls) {
    throw configError(
      "tls_ca",
      `${cfg.tlsCa} is a CA for a pdtps:// tracker, but the tracker ${cfg.tracker} is plaintext`,
    );
  }
  const trackerTls: ClientTls | undefined = tracker.tls
    ? { ca: cfg.tlsCa === undefined ? undefined : readPemCertificates(cfg.tlsCa, "tls_ca") }
    : undefined;
  const origins = originSpecs(cfg.origin, cfg.originList);
  const live = liveBroadcasts(cfg, origins);
  const recordDir = recordFolder(cfg.liveRecord);
  const ctx = setup("seeder", cfg.logLevel);
  // with origins or live inputs, a media folder is published only when one is set
  const mediaDir = cfg.media ?? (origins.length > 0 || live.length > 0 ? undefined : "./media");
  const media = mediaDir === undefined ? undefined : checkMediaFolder(mediaDir, false);
  let serving = false;
  await metrics(ctx, cfg.dataHost, cfg.metricsPort, () => serving);
  const seeder = await startSeederChecked({
    tracker: tracker.target,
    trackerTls,
    media,
    origins,
    originPollMs: cfg.originPoll * 1000,
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
export async function runUp(flags: Flags, confFile: string | undefined): Promise<void> {
  const cfg = loadConfig(upSchema, { flags, env: process.env, confFile, aliases: originalAliases.up });
  const redis = cfg.redis ?? process.env.REDIS_URL;
  const tlsCa = readRedisCa(redis, cfg.redisCa);
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  const origins = originSpecs(cfg.origin, cfg.originList);
  const userLive = liveBroadcasts(cfg, origins);
  const recordDir = recordFolder(cfg.liveRecord);
  const ctx = setup("distribustream", cfg.logLevel);
  const media = checkMediaFolder(cfg.media, true);
  const demo = origins.length > 0 ? undefined : ensureDemoFile(media, ctx.log);
  const networkKey = loadOrCreateKey(join(cfg.dataDir, "network-key.pem"), "network_key", ctx.log);
  const ticketSigner = openTicketKeys(join(cfg.dataDir, "ticket-key.pem"), 10, ctx.log);
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
  const m = await metrics(ctx, cfg.host, cfg.metricsPort, () => serving);

  const checksum = await startChecksum({
    host: "127.0.0.1",
    port: cfg.checksumPort,
    signer: networkKey,
    log: ctx.log.child({ part: "checksum" }),
    registry: ctx.registry,
  });
  ctx.shutdown.add("checksum", () => checksum.drain());
  const store = await openStore(redis, tlsCa, ctx.log);
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
  const dashboard = await upDashboard(ctx, cfg, store, () => checksum.health.serving);
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
    `Network key ${networkKey.keyId} (in ${join(cfg.dataDir, "network-key.pem")}; ?key= pins it).`,
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
  cfg: ReturnType<typeof loadConfig<typeof upSchema>>,
  store: Awaited<ReturnType<typeof openStore>>,
  checksumServing: () => boolean,
): Promise<RunningDashboard | string> {
  const access = dashboardAccess(
    cfg.dashboardAuthToken,
    cfg.dashboardAuthFile,
    undefined,
    "dashboard_auth_file",
    "dashboard_auth_file",
  );
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

/**
 * The live broadcasts of the live settings (validated with the config), and
 * none named as an origin.
 */
function liveBroadcasts(cfg: Parameters<typeof liveSpecs>[0], origins: readonly OriginSpec[]): LiveSpec[] {
  try {
    const specs = liveSpecs(cfg);
    checkLiveSpecs(specs, new Set(origins.map((o) => o.name)));
    return specs;
  } catch (err) {
    throw configError("live", (err as Error).message);
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

/**
 * The origins of --origin entries and an --origin-list file, parsed now so
 * that a bad entry stops the command with a message naming it (the file's
 * errors name FILE:LINE).
 */
function originSpecs(entries: readonly string[] | undefined, listFile: string | undefined): OriginSpec[] {
  const specs = (entries ?? []).map((e, i) => parseOriginEntry(e, `origin ${i + 1}`));
  if (listFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(listFile, "utf8");
    } catch (err) {
      throw configError("origin_list", `cannot read ${listFile}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    try {
      specs.push(...parseOriginList(text, listFile));
    } catch (err) {
      throw configError("origin_list", (err as Error).message);
    }
    if (specs.length === 0) throw configError("origin_list", `${listFile} lists no origin`);
  }
  try {
    checkOriginNames(specs);
  } catch (err) {
    throw configError("origin", (err as Error).message);
  }
  return specs;
}

/** The credentials file of seeder tokens, loaded now (a bad file stops the command) and polled for changes. */
function openSeederTokens(path: string, log: Logger): SeederTokens {
  try {
    return SeederTokens.open(path, log);
  } catch (err) {
    throw configError("seeder_tokens", (err as Error).message);
  }
}

/** Config errors name the seeder's token flags as the user typed them. */
function withFlagNames<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      err.message = err.message.replace(
        /from --seeder-token(-file)?\b/g,
        (_, f: string | undefined) => `from --token${f ?? ""}`,
      );
    }
    throw err;
  }
}

/** The seeder's token from seeder_token or seeder_token_file (trimmed); the secret is never part of a message. */
function seederCredential(token: string | undefined, tokenFile: string | undefined): string | undefined {
  if (token !== undefined && tokenFile !== undefined) {
    throw configError("seeder_token", "give the seeder token either as seeder_token or as seeder_token_file, not both");
  }
  if (tokenFile === undefined) return token;
  let text: string;
  try {
    text = readFileSync(tokenFile, "utf8").trim();
  } catch (err) {
    throw configError("seeder_token_file", `cannot read ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (!parseToken(text)) {
    throw configError("seeder_token_file", `${tokenFile} does not hold a seeder token (expected dss_<id>_<secret>)`);
  }
  return text;
}

/** Retrying cannot help a refused credential: stop everything and exit 3 with the tracker's reason. */
function exitRefused(ctx: ReturnType<typeof setup>, err: CredentialRefusedError): void {
  const me = basename(process.argv[1] ?? "distribustream", ".js");
  process.stderr.write(`${me}: ${err.message}\n`);
  setImmediate(() => void ctx.shutdown.run().then(() => process.exit(3)));
}

/**
 * The CA to trust for the swarm store's TLS (redis_ca), read now, so that a
 * mismatch stops the command before it starts anything.
 */
function readRedisCa(url: string | undefined, caFile: string | undefined): string | undefined {
  if (caFile === undefined) return undefined;
  if (!url?.startsWith("rediss"))
    throw configError(
      "redis_ca",
      `${caFile} is a CA for rediss:// URLs, but the swarm store is ${url ? redactUrl(url) : "memory"}`,
    );
  try {
    return readFileSync(caFile, "utf8");
  } catch (err) {
    throw configError("redis_ca", `cannot read ${caFile}: ${(err as Error).message}`);
  }
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

function checkMediaFolder(dir: string, create: boolean): string {
  const path = resolve(dir);
  if (!existsSync(path)) {
    if (!create) throw configError("media", `folder ${path} does not exist`);
    mkdirSync(path, { recursive: true });
  } else if (!statSync(path).isDirectory()) {
    throw configError("media", `${path} is not a folder`);
  }
  return path;
}

/** The live recordings' folder, created if missing; a path that is not a writable folder is a config error. */
function recordFolder(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  const path = resolve(dir);
  try {
    mkdirSync(path, { recursive: true });
    if (!statSync(path).isDirectory()) throw new Error("not a folder");
    accessSync(path, constants.W_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw configError("live_record", `${path} is not a folder the seeder can write to (${e.code ?? e.message})`);
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

function configError(setting: string, msg: string) {
  return new ConfigError(`invalid setting ${setting}: ${msg}`);
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
