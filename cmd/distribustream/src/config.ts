import {
  DEFAULT_CHUNK_SIZE,
  MAX_CHUNK_SIZE,
  MAX_WINDOW_CHUNKS,
  MIN_CHUNK_SIZE,
  parseDataAddress,
  parseTrackerAddress,
} from "@distribustream/pdtp";
import { host, hostPort, logFormat, logLevel, pemFileProblem, port, z } from "@distribustream/runtime";
import {
  checkLiveSpecs,
  parseBitrate,
  parseLiveEntry,
  originPolicy,
  parseOriginEntry,
  rateSetting,
  type LiveSpec,
} from "@distribustream/seeder";
import { DEFAULT_PEER_LIMITS, parseToken } from "@distribustream/tracker";

/**
 * Settings of each subcommand. Every key can be set by a flag (--data-port),
 * an environment variable (DS_DATA_PORT) or a key in the --conf YAML file
 * (data_port). The original DistribuStream's YAML keys are accepted where
 * they still mean something: port, host, vhost, listen_port, file_root,
 * chunk_size.
 */

const chunkSize = z.coerce
  .number()
  .int()
  .min(MIN_CHUNK_SIZE, `must be at least ${MIN_CHUNK_SIZE} bytes`)
  .max(MAX_CHUNK_SIZE, `must be at most ${MAX_CHUNK_SIZE} bytes`)
  .default(DEFAULT_CHUNK_SIZE);
const vhost = z
  .string()
  .regex(/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/, "expected a host name or IP address")
  .optional();
const file = (def: string) => z.string().min(1).default(def);
/** A seeder's data-plane address, "HOST[:PORT]" (IPv6 literal with a port in brackets). */
const dataAddress = z
  .string()
  .transform((v, ctx) => {
    try {
      return parseDataAddress(v);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  })
  .optional();

/** Bind addresses that reach this machine only. */
const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/;
/** A dashboard bearer token: long enough not to be guessed. */
const dashboardToken = z.string().min(16, "must be at least 16 characters").optional();

/** A list setting: repeated flags, a YAML list, or a string (environment, YAML) with one entry per line. */
const lines = (v: unknown) =>
  typeof v === "string"
    ? v
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== "")
    : v;

/**
 * HTTP(S) origins to relay, each "URL [NAME]": repeated --origin flags, a
 * YAML list, or a string (DS_ORIGIN, YAML) with one entry per line.
 */
const origin = z
  .preprocess(
    lines,
    z.array(
      z.string().superRefine((entry, ctx) => {
        try {
          parseOriginEntry(entry, "");
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
        }
      }),
    ),
  )
  .optional();
/**
 * Address ranges HTTP origins may be fetched from although private,
 * loopback or reserved (see originPolicy): CIDRs or single addresses,
 * repeated flags, a YAML list, or a string (DS_ORIGIN_ALLOW) separated by
 * commas, spaces or lines.
 */
const originAllow = z
  .preprocess(
    (v) => {
      const list: unknown = typeof v === "string" ? [v] : (v ?? []);
      if (!Array.isArray(list)) return v;
      return list.flatMap((e: unknown) => (typeof e === "string" ? e.split(/[\s,]+/).filter((x) => x !== "") : [e]));
    },
    z.array(z.string()).superRefine((entries, ctx) => {
      try {
        originPolicy(entries);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
      }
    }),
  )
  .default([]);
/** File with one origin per line ("URL [NAME]", # comments); read at start. */
const originList = z.string().min(1).optional();
/** Seconds between checks of every origin for a new version. */
const originPoll = z.coerce
  .number()
  .min(0.2, "must be at least 0.2 seconds")
  .max(86_400, "must be at most 86400 seconds (a day)")
  .default(30);

/** true/false from a flag or YAML; "true", "false", "1", "0" from the environment. */
const switchSetting = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1")])
  .default(false);

/** A bitrate in bits per second (not bytes, unlike max_upload_rate): "2M" is 2 Mbit/s, "1500k", "64000". */
const bitrate = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseBitrate(String(v));
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
    return z.NEVER;
  }
});

/**
 * Live broadcasts, each "NAME=SOURCE" (SOURCE: "-" for standard input, an
 * http(s):// URL, or a file played at live_bitrate): repeated --live flags,
 * a YAML list, or a string (DS_LIVE, YAML) with one entry per line. A YAML
 * item may also be a mapping {name, source, bitrate, loop} for a file of
 * its own bitrate.
 */
const live = z
  .preprocess(
    lines,
    z.array(
      z.union([
        z.string(),
        z.strictObject({
          name: z.string(),
          source: z.string(),
          bitrate: bitrate.optional(),
          loop: z.boolean().optional(),
        }),
      ]),
    ),
  )
  .optional();
/** Chunks each broadcast keeps to serve (default 150: 30 s at the default 200 ms chunks). */
const liveWindow = z.coerce
  .number()
  .int()
  .min(2, "must be at least 2 chunks")
  .max(MAX_WINDOW_CHUNKS, `must be at most ${MAX_WINDOW_CHUNKS} chunks`)
  .optional();
const liveSettings = {
  live,
  liveBitrate: bitrate.optional(),
  liveLoop: switchSetting,
  liveWindow,
  /** Folder of the live sequence numbers (a restart continues them). */
  stateDir: z.string().min(1).optional(),
  /** Folder where each live broadcast is recorded whole, then published as a file under its name once it ended. */
  liveRecord: z.string().min(1).optional(),
};

type LiveSettings = {
  live?: z.infer<typeof live>;
  liveBitrate?: number | undefined;
  liveLoop: boolean;
  liveWindow?: number | undefined;
};

/**
 * The live broadcasts of the live settings, checked (see checkLiveSpecs):
 * throws an Error saying what is wrong with them.
 */
export function liveSpecs(cfg: LiveSettings): LiveSpec[] {
  const specs = (cfg.live ?? []).map((e) =>
    typeof e === "string"
      ? parseLiveEntry(e, { bitrate: cfg.liveBitrate, loop: cfg.liveLoop, windowChunks: cfg.liveWindow })
      : parseLiveEntry(`${e.name}=${e.source}`, {
          bitrate: e.bitrate ?? cfg.liveBitrate,
          loop: e.loop ?? cfg.liveLoop,
          windowChunks: cfg.liveWindow,
        }),
  );
  checkLiveSpecs(specs);
  return specs;
}

/** Reports what liveSpecs refuses as a problem of the live setting, where it was given; not when a setting is already invalid. */
const checkLive = (cfg: LiveSettings, ctx: z.RefinementCtx) => {
  try {
    liveSpecs(cfg);
  } catch (err) {
    ctx.addIssue({ code: "custom", path: ["live"], message: (err as Error).message });
  }
};

/** redis://, rediss:// (TLS), redis+cluster://host1:port1,host2:port2 (see README). */
const redis = z
  .string()
  .regex(/^rediss?(\+cluster)?:\/\/./, "expected redis://, rediss://, redis+cluster:// or rediss+cluster://")
  .optional();

/** A readable PEM file holding a certificate (or a private key); whether the pair matches is checked when read. */
const pemFile = (kind: "certificate" | "private key") =>
  z
    .string()
    .min(1)
    .superRefine((file, ctx) => {
      const problem = pemFileProblem(file, kind);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional();

/** PEM file of the CA that signed the Redis server certificates, for rediss:// with a private CA. */
const redisCa = pemFile("certificate");
/** Certificate chain and key of a TLS gRPC port (tls_cert, tls_key); both or neither. */
const tlsCert = pemFile("certificate");
const tlsKey = pemFile("private key");
/** PEM CA certificate(s) to trust for a TLS peer instead of the system's roots. */
const caFile = pemFile("certificate");

/** Per-address limits of the tracker's public port (0 = off). */
const maxSessionsPerIp = z.coerce.number().int().min(0).max(1_000_000).default(DEFAULT_PEER_LIMITS.maxSessions);
const maxMessagesPerIp = z.coerce.number().int().min(0).max(10_000_000).default(DEFAULT_PEER_LIMITS.messagesPerSecond);

/** The tracker for a seeder: HOST:PORT (plaintext) or pdtps://HOST:PORT (TLS). */
const trackerAddress = z
  .string()
  .refine((v) => {
    try {
      parseTrackerAddress(v);
      return true;
    } catch {
      return false;
    }
  }, "expected HOST:PORT, or pdtps://HOST:PORT for a tracker that speaks TLS")
  .default("127.0.0.1:6086");

export const trackerSchema = z
  .strictObject({
    host: host("0.0.0.0"),
    redis,
    redisCa,
    port: port(6086),
    checksum: hostPort("127.0.0.1:6088"),
    /** CA of the checksum service's certificate: the tracker reaches it over TLS. */
    checksumCa: caFile,
    tlsCert,
    tlsKey,
    maxSessionsPerIp,
    maxMessagesPerIp,
    chunkSize,
    metricsPort: port(9086),
    /** Where /metrics, /healthz and /livez listen: loopback unless something outside the host scrapes or probes them. */
    metricsHost: host("127.0.0.1"),
    /** Seconds a stopping service answers NOT_SERVING, still serving, before it closes: a load balancer's time to stop sending. */
    drainDelay: z.coerce.number().int().min(0).max(300).default(0),
    ticketKey: file(".distribustream/ticket-key.pem"),
    /** Seconds a key added to the ticket key file is published before it signs. */
    ticketKeyOverlap: z.coerce.number().int().min(1).max(3600).default(10),
    peerTtl: z.coerce.number().int().min(5).max(3600).default(30),
    /** Seconds a stream stays without any peer before it is retired (forgotten). */
    streamRetireAfter: z.coerce
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .default(300),
    /** Credentials file of seeder tokens (hashed): required, unless insecure_open_seeding. */
    seederTokens: z.string().min(1).optional(),
    /** Any peer may publish as a seeder: only for a tracker no stranger can reach. */
    insecureOpenSeeding: switchSetting,
    /** Every viewer's data port counts as reachable, without the connect-back probe: a trusted LAN. */
    skipPeerProbe: switchSetting,
    /** A missing ticket_key file is a startup error instead of being created (deployments: keys init makes it). */
    requireKeys: switchSetting,
    logLevel,
    logFormat,
  })
  .superRefine(
    (cfg, ctx) => {
      // the public port faces the internet: who may publish is the operator's explicit choice
      if (cfg.seederTokens === undefined && !cfg.insecureOpenSeeding) {
        ctx.addIssue({
          code: "custom",
          path: ["seederTokens"],
          message:
            "not set, and without it any peer could publish as a seeder; issue credentials with `distribustream keys init --dir DIR` (or `seeder-token create --file FILE`) and pass --seeder-tokens DIR/seeder-tokens, or accept any seeder with --insecure-open-seeding (a tracker no stranger can reach)",
        });
      } else if (cfg.seederTokens !== undefined && cfg.insecureOpenSeeding) {
        ctx.addIssue({
          code: "custom",
          path: ["insecureOpenSeeding"],
          message: "contradicts seeder_tokens: give one or the other",
        });
      }
    },
    { when: (payload) => payload.issues.length === 0 },
  );

export const checksumSchema = z.strictObject({
  // Internal service: loopback unless the operator opens it to the trackers.
  host: host("127.0.0.1"),
  port: port(6088),
  metricsPort: port(9088),
  /** Where /metrics, /healthz and /livez listen: loopback unless something outside the host scrapes or probes them. */
  metricsHost: host("127.0.0.1"),
  /** Seconds a stopping service answers NOT_SERVING, still serving, before it closes: a load balancer's time to stop sending. */
  drainDelay: z.coerce.number().int().min(0).max(300).default(0),
  networkKey: file(".distribustream/network-key.pem"),
  /** A missing network_key file is a startup error instead of being created (deployments: keys init makes it). */
  requireKeys: switchSetting,
  tlsCert,
  tlsKey,
  originAllow,
  logLevel,
  logFormat,
});

export const seederSchema = z
  .strictObject({
    tracker: trackerAddress,
    /** CA of the tracker's certificate, for a pdtps:// tracker with a private CA. */
    tlsCa: caFile,
    /** Default ./media, unless origins are given (then no folder unless set). */
    media: z.string().min(1).optional(),
    origin,
    originList,
    originPoll,
    originAllow,
    ...liveSettings,
    dataHost: host("0.0.0.0"),
    dataPort: port(8000),
    /** What other peers are told: HOST[:PORT] (a published or NodePort port may differ from data_port). */
    advertise: dataAddress,
    /** What the checksum service reads from (default: the address the tracker sees, and data_port). */
    internalAddress: dataAddress,
    metricsPort: port(9087),
    /** Where /metrics, /healthz and /livez listen: loopback unless something outside the host scrapes or probes them. */
    metricsHost: host("127.0.0.1"),
    /** Upload cap of the data plane over all fetchers, e.g. "16M" (bytes/s). */
    maxUploadRate: rateSetting,
    /** Seeder token (--token; a secret: never echoed in errors or logs). */
    seederToken: z
      .string()
      .refine((t) => parseToken(t) !== undefined, "expected a seeder token of the form dss_<id>_<secret>")
      .optional(),
    /** File holding the seeder token (--token-file), e.g. a mounted Kubernetes Secret. */
    seederTokenFile: z.string().min(1).optional(),
    logLevel,
    logFormat,
  })
  .superRefine(checkLive, { when: (payload) => payload.issues.length === 0 });

/** `seeder-token revoke|list`: the credentials file (--file). */
export const seederTokenFileSchema = z.strictObject({ seederTokens: file(".distribustream/seeder-tokens") });
/** `seeder-token create`: the credentials file and a label. */
export const seederTokenSchema = seederTokenFileSchema.extend({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._@:/-]{1,64}$/, "expected 1-64 characters of A-Z a-z 0-9 . _ @ : / -")
    .optional(),
});

export const upSchema = z
  .strictObject({
    host: host("0.0.0.0"),
    redis,
    redisCa,
    port: port(6086),
    tlsCert,
    tlsKey,
    maxSessionsPerIp,
    maxMessagesPerIp,
    vhost,
    media: file("./media"),
    origin,
    originList,
    originPoll,
    originAllow,
    ...liveSettings,
    dataPort: port(8000),
    checksumPort: port(6088),
    metricsPort: port(9086),
    /** Where /metrics, /healthz and /livez listen: loopback unless something outside the host scrapes or probes them. */
    metricsHost: host("127.0.0.1"),
    chunkSize,
    dataDir: file(".distribustream"),
    /** The dashboard inside up: loopback by default, any free port with 0. */
    dashboardHost: host("127.0.0.1"),
    dashboardPort: port(6087),
    dashboardAuthToken: dashboardToken,
    dashboardAuthFile: z.string().min(1).optional(),
    logLevel,
    logFormat,
  })
  .superRefine(checkLive, { when: (payload) => payload.issues.length === 0 })
  .superRefine((cfg, ctx) => {
    if (!LOOPBACK.test(cfg.dashboardHost) && !cfg.dashboardAuthToken && !cfg.dashboardAuthFile) {
      ctx.addIssue({
        code: "custom",
        path: ["dashboardHost"],
        message: `the dashboard on ${cfg.dashboardHost} would be open to anyone: set --dashboard-auth-token or --dashboard-auth-file, or bind it to 127.0.0.1`,
      });
    }
  });

export const dashboardSchema = z
  .strictObject({
    host: host("127.0.0.1"),
    port: port(6087),
    /** The trackers' swarm store (required: the dashboard is a process of its own). */
    redis,
    redisCa,
    /** Bearer token (also ?token= once in a browser, which keeps it in a cookie). */
    authToken: dashboardToken,
    /** File holding the bearer token (e.g. keys init's dashboard-token, a mounted Secret); read at start. */
    authTokenFile: z.string().min(1).optional(),
    /** File with one "user:password" line: HTTP basic auth. */
    authFile: z.string().min(1).optional(),
    /** "user:password" for HTTP basic auth, from DS_AUTH_CREDENTIALS (a flag would show in ps). */
    authCredentials: z
      .string()
      .min(3)
      .optional()
      .describe('"user:password" for HTTP basic auth, instead of --auth-file (no flag: a flag would show in ps)'),
    /** http://host:port of the checksum service's metrics server: its health and hash rate. */
    checksumMetrics: z
      .string()
      .regex(/^https?:\/\/[^/\s]+\/?$/, "expected http://HOST:PORT of the checksum service's metrics server")
      .optional(),
    logLevel,
    logFormat,
  })
  .superRefine((cfg, ctx) => {
    if (cfg.redis === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["redis"],
        message: "the dashboard reads the trackers' swarm store: give the same --redis URL as the trackers",
      });
    }
    if (cfg.authToken !== undefined && cfg.authTokenFile !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["authTokenFile"],
        message: "give the dashboard token either as auth_token or as auth_token_file, not both",
      });
    }
    if (!LOOPBACK.test(cfg.host) && !cfg.authToken && !cfg.authTokenFile && !cfg.authFile && !cfg.authCredentials) {
      ctx.addIssue({
        code: "custom",
        path: ["host"],
        message: `the dashboard on ${cfg.host} would be open to anyone: set --auth-token, --auth-token-file, --auth-file or DS_AUTH_CREDENTIALS, or bind it to 127.0.0.1`,
      });
    }
  });

/** YAML keys of the original DistribuStream mapped to today's settings. */
export const originalAliases: Record<string, Record<string, string>> = {
  tracker: {},
  checksum: {},
  dashboard: {},
  seeder: { file_root: "media", listen_port: "dataPort", vhost: "advertise" },
  up: { file_root: "media", listen_port: "dataPort" },
};

/** `ticket-key rotate|list`: the ticket key file. */
export const ticketKeyFileSchema = z.strictObject({ ticketKey: file(".distribustream/ticket-key.pem") });
/** `network-key`: the network key file. */
export const networkKeyFileSchema = z.strictObject({ networkKey: file(".distribustream/network-key.pem") });
/** `keys init`: the keys' folder (--dir; required, checked by keys init) and whether to make a dashboard token. */
export const keysInitSchema = z.strictObject({ keysDir: z.string().min(1).optional(), dashboardAuth: switchSetting });

/** What each command reads its settings from, besides DS_<SETTING> and, with yaml, the --conf file's keys. */
export interface CommandSettings {
  schema: z.ZodObject;
  /** Takes --conf FILE.yml (and DS_CONF). */
  yaml: boolean;
  /** YAML keys of the original DistribuStream (see originalAliases). */
  aliases?: Record<string, string>;
  /** Flags whose name is not their setting's: flag attribute -> setting. */
  flags?: Record<string, string>;
  /** Environment variables read when the setting's DS_ variable is not set. */
  envFallbacks?: Record<string, string>;
}

/** REDIS_URL, the name most tools know, for every command with a swarm store (DS_REDIS wins). */
const REDIS_URL = { redis: "REDIS_URL" };

/**
 * The commands that load settings with loadConfig, and from where: used by
 * their preflight (preflight.ts, seederToken.ts) and by the README's
 * reference (scripts/readme.mjs), so that what the README says a command
 * reads is what it reads.
 */
export const commandSettings = {
  up: { schema: upSchema, yaml: true, aliases: originalAliases.up!, envFallbacks: REDIS_URL },
  tracker: { schema: trackerSchema, yaml: true, envFallbacks: REDIS_URL },
  checksum: { schema: checksumSchema, yaml: true },
  dashboard: { schema: dashboardSchema, yaml: true, envFallbacks: REDIS_URL },
  seeder: {
    schema: seederSchema,
    yaml: true,
    aliases: originalAliases.seeder!,
    flags: { token: "seederToken", tokenFile: "seederTokenFile" },
  },
  "seeder-token create": { schema: seederTokenSchema, yaml: false, flags: { file: "seederTokens" } },
  "seeder-token revoke": { schema: seederTokenFileSchema, yaml: false, flags: { file: "seederTokens" } },
  "seeder-token list": { schema: seederTokenFileSchema, yaml: false, flags: { file: "seederTokens" } },
  "ticket-key rotate": { schema: ticketKeyFileSchema, yaml: false },
  "ticket-key list": { schema: ticketKeyFileSchema, yaml: false },
  "network-key": { schema: networkKeyFileSchema, yaml: false },
  "keys init": { schema: keysInitSchema, yaml: false, flags: { dir: "keysDir" } },
} satisfies Record<string, CommandSettings>;

/** Flags keyed by setting: `commandSettings[…].flags` renames applied. */
export function settingFlags(flags: Record<string, unknown>, renames: Record<string, string> | undefined) {
  return Object.fromEntries(Object.entries(flags).map(([k, v]) => [renames?.[k] ?? k, v]));
}
