import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseBasicCredentials, type AccessControl } from "@distribustream/dashboard";
import { parseTrackerAddress, Signer } from "@distribustream/pdtp";
import {
  ConfigError,
  loadConfig,
  readPemCertificates,
  readSecretFile,
  readServerTls,
  type ClientTls,
} from "@distribustream/runtime";
import {
  checkLiveSpecs,
  checkOriginNames,
  originPolicy,
  parseOriginEntry,
  parseOriginList,
  type LiveSpec,
  type OriginSpec,
} from "@distribustream/seeder";
import { parseStoreUrl, redactUrl } from "@distribustream/swarm-store";
import { parseToken, readTicketKeyFile, readTokenFile } from "@distribustream/tracker";
import {
  checksumSchema,
  commandSettings,
  dashboardSchema,
  liveSpecs,
  originalAliases,
  seederSchema,
  settingFlags,
  trackerSchema,
  upSchema,
} from "./config.js";
import { readKeyFile } from "./keys.js";

/**
 * Preflight: everything a service checks before it serves, in one function
 * per service. Each loads the whole configuration (schema defaults, --conf
 * YAML, DS_* environment, flags) and checks what it names: TLS and CA files
 * (readable PEM, key matching certificate), key files (present with
 * require_keys, loadable when present), token and credentials files, the
 * media folder, live inputs, origins, the swarm store URL. It reads files
 * but writes none, connects nowhere and listens on nothing; a bad setting
 * throws ConfigError naming it. The services' start (commands.ts) runs it
 * first and starts from what it returns; `--check-config` runs it alone.
 */

type Flags = Record<string, unknown>;
type Env = NodeJS.ProcessEnv;

export function preflightTracker(flags: Flags, confFile: string | undefined, env: Env) {
  const { envFallbacks } = commandSettings.tracker;
  const cfg = loadConfig(trackerSchema, { flags, env, confFile, aliases: originalAliases.tracker, envFallbacks });
  const redisCa = readRedisCa(cfg.redis, cfg.redisCa);
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  const checksumTls: ClientTls | undefined =
    cfg.checksumCa === undefined ? undefined : { ca: readPemCertificates(cfg.checksumCa, "checksum_ca") };
  if (cfg.requireKeys) requireKeyFile(cfg.ticketKey, "ticket_key");
  checkTicketKeys(cfg.ticketKey);
  if (cfg.seederTokens !== undefined) checkSeederTokens(cfg.seederTokens, false);
  checkStoreUrl(cfg.redis, redisCa);
  return { cfg, redisCa, tls, checksumTls };
}

export function preflightChecksum(flags: Flags, confFile: string | undefined, env: Env) {
  const cfg = loadConfig(checksumSchema, { flags, env, confFile, aliases: originalAliases.checksum });
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  if (cfg.requireKeys) requireKeyFile(cfg.networkKey, "network_key");
  readKeyFile(cfg.networkKey, "network_key", (pem) => Signer.fromPem(pem));
  return { cfg, tls, originPolicy: originPolicy(cfg.originAllow) };
}

export function preflightDashboard(flags: Flags, confFile: string | undefined, env: Env) {
  const { envFallbacks } = commandSettings.dashboard;
  const cfg = loadConfig(dashboardSchema, { flags, env, confFile, aliases: originalAliases.dashboard, envFallbacks });
  const redisCa = readRedisCa(cfg.redis, cfg.redisCa);
  const token = cfg.authTokenFile === undefined ? cfg.authToken : readDashboardToken(cfg.authTokenFile);
  const access = dashboardAccess(token, cfg.authFile, cfg.authCredentials, "auth_file", "auth_credentials");
  checkStoreUrl(cfg.redis, redisCa);
  return { cfg, redisCa, access };
}

export function preflightSeeder(flags: Flags, confFile: string | undefined, env: Env) {
  // --token and --token-file set seeder_token and seeder_token_file (DS_SEEDER_TOKEN, DS_SEEDER_TOKEN_FILE)
  const cfg = withFlagNames(() =>
    loadConfig(seederSchema, {
      flags: settingFlags(flags, commandSettings.seeder.flags),
      env,
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
  // with origins or live inputs, a media folder is published only when one is set
  const mediaDir = cfg.media ?? (origins.length > 0 || live.length > 0 ? undefined : "./media");
  const media = mediaDir === undefined ? undefined : mediaFolder(mediaDir, false);
  return {
    cfg,
    credential,
    tracker,
    trackerTls,
    origins,
    originPolicy: originPolicy(cfg.originAllow),
    live,
    recordDir,
    media,
  };
}

/**
 * `up`: tracker, checksum, seeder and dashboard in one process. Its keys and
 * seeder token in data_dir and its media folder are created at start when
 * missing; when present they are checked here.
 */
export function preflightUp(flags: Flags, confFile: string | undefined, env: Env) {
  const { envFallbacks } = commandSettings.up;
  const cfg = loadConfig(upSchema, { flags, env, confFile, aliases: originalAliases.up, envFallbacks });
  const redis = cfg.redis;
  const redisCa = readRedisCa(redis, cfg.redisCa);
  const tls = readServerTls(cfg.tlsCert, cfg.tlsKey);
  const origins = originSpecs(cfg.origin, cfg.originList);
  const policy = originPolicy(cfg.originAllow);
  const live = liveBroadcasts(cfg, origins);
  const recordDir = recordFolder(cfg.liveRecord);
  const media = mediaFolder(cfg.media, true);
  const keys = {
    networkKey: join(cfg.dataDir, "network-key.pem"),
    ticketKey: join(cfg.dataDir, "ticket-key.pem"),
  };
  readKeyFile(keys.networkKey, "network_key", (pem) => Signer.fromPem(pem));
  checkTicketKeys(keys.ticketKey);
  checkSeederTokens(join(cfg.dataDir, "seeder-tokens"), true);
  const access = dashboardAccess(
    cfg.dashboardAuthToken,
    cfg.dashboardAuthFile,
    undefined,
    "dashboard_auth_file",
    "dashboard_auth_file",
  );
  checkStoreUrl(redis, redisCa);
  return { cfg, redis, redisCa, tls, origins, originPolicy: policy, live, recordDir, media, keys, access };
}

/** Settings whose values are secrets: shown as "[redacted]" when set. */
const SECRET_SETTINGS = new Set(["seederToken", "authToken", "authCredentials", "dashboardAuthToken"]);

/**
 * The settings as `--check-config` prints them: secrets replaced, passwords
 * in URLs (swarm store, origins, live sources) masked; file names are shown,
 * never their contents.
 */
export function redactedSettings(cfg: object): Record<string, unknown> {
  const redact = (v: unknown): unknown =>
    typeof v === "string"
      ? v.includes("://")
        ? redactUrl(v)
        : v
      : Array.isArray(v)
        ? v.map(redact)
        : v !== null && typeof v === "object"
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redact(x)]))
          : v;
  return Object.fromEntries(
    Object.entries(cfg).map(([k, v]) => [k, SECRET_SETTINGS.has(k) && v !== undefined ? "[redacted]" : redact(v)]),
  );
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

/** A ticket key file, when present, holds Ed25519 keys (a missing one is created at start). */
function checkTicketKeys(path: string): void {
  if (!existsSync(path)) return;
  try {
    readTicketKeyFile(path);
  } catch (err) {
    throw configError("ticket_key", (err as Error).message);
  }
}

/** A seeder tokens credentials file parses (each bad line named); `missingOk` where start creates it. */
function checkSeederTokens(path: string, missingOk: boolean): void {
  try {
    readTokenFile(path, missingOk);
  } catch (err) {
    throw configError("seeder_tokens", (err as Error).message);
  }
}

/** The swarm store URL parses (no connection is made); a memory store when undefined. */
function checkStoreUrl(url: string | undefined, redisCa: string | undefined): void {
  if (url === undefined || url === "") return;
  try {
    parseStoreUrl(url, { tlsCa: redisCa });
  } catch (err) {
    throw configError("redis", (err as Error).message);
  }
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

/** The dashboard's bearer token from auth_token_file: its one line, 16+ characters; never part of a message. */
function readDashboardToken(file: string): string {
  let text: string;
  try {
    text = readSecretFile(file).trim();
  } catch (err) {
    throw configError("auth_token_file", (err as Error).message);
  }
  if (text.length < 16 || /\s/.test(text)) {
    throw configError("auth_token_file", `${file} does not hold a token (one line of at least 16 characters)`);
  }
  return text;
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
      text = readSecretFile(file);
    } catch (err) {
      throw configError(fileSetting, (err as Error).message);
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
    text = readSecretFile(tokenFile).trim();
  } catch (err) {
    throw configError("seeder_token_file", (err as Error).message);
  }
  if (!parseToken(text)) {
    throw configError("seeder_token_file", `${tokenFile} does not hold a seeder token (expected dss_<id>_<secret>)`);
  }
  return text;
}

/** The media folder's absolute path: an existing folder, or (`mayCreate`: created at start) a missing one. */
function mediaFolder(dir: string, mayCreate: boolean): string {
  const path = resolve(dir);
  if (!existsSync(path)) {
    if (!mayCreate) throw configError("media", `folder ${path} does not exist`);
  } else if (!statSync(path).isDirectory()) {
    throw configError("media", `${path} is not a folder`);
  }
  return path;
}

/**
 * The live recordings' folder (created at start if missing): a writable
 * folder, or a missing one under a writable folder.
 */
function recordFolder(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  const path = resolve(dir);
  let at = path;
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  try {
    if (!statSync(at).isDirectory()) throw new Error("not a folder");
    accessSync(at, constants.W_OK);
  } catch (err) {
    throw recordFolderError(path, err);
  }
  return path;
}

export function recordFolderError(path: string, err: unknown): ConfigError {
  const e = err as NodeJS.ErrnoException;
  return configError("live_record", `${path} is not a folder the seeder can write to (${e.code ?? e.message})`);
}

export function configError(setting: string, msg: string): ConfigError {
  return new ConfigError(`invalid setting ${setting}: ${msg}`);
}
