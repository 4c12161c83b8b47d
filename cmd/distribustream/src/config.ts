import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, parseTrackerAddress } from "@distribustream/pdtp";
import { host, hostPort, logLevel, pemFileProblem, port, z } from "@distribustream/runtime";
import { parseOriginEntry, rateSetting } from "@distribustream/seeder";
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

/**
 * HTTP(S) origins to relay, each "URL [NAME]": repeated --origin flags, a
 * YAML list, or a string (DS_ORIGIN, YAML) with one entry per line.
 */
const origin = z
  .preprocess(
    (v) =>
      typeof v === "string"
        ? v
            .split(/\r?\n/)
            .map((l) => l.trim())
            .filter((l) => l !== "")
        : v,
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
/** File with one origin per line ("URL [NAME]", # comments); read at start. */
const originList = z.string().min(1).optional();
/** Seconds between checks of every origin for a new version. */
const originPoll = z.coerce
  .number()
  .min(0.2, "must be at least 0.2 seconds")
  .max(86_400, "must be at most 86400 seconds (a day)")
  .default(30);

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

export const trackerSchema = z.strictObject({
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
  ticketKey: file(".distribustream/ticket-key.pem"),
  /** Seconds a key added to the ticket key file is published before it signs. */
  ticketKeyOverlap: z.coerce.number().int().min(1).max(3600).default(10),
  peerTtl: z.coerce.number().int().min(5).max(3600).default(30),
  /** Credentials file of seeder tokens (hashed); without it any seeder may publish. */
  seederTokens: z.string().min(1).optional(),
  logLevel,
});

export const checksumSchema = z.strictObject({
  // Internal service: loopback unless the operator opens it to the trackers.
  host: host("127.0.0.1"),
  port: port(6088),
  metricsPort: port(9088),
  networkKey: file(".distribustream/network-key.pem"),
  tlsCert,
  tlsKey,
  logLevel,
});

export const seederSchema = z.strictObject({
  tracker: trackerAddress,
  /** CA of the tracker's certificate, for a pdtps:// tracker with a private CA. */
  tlsCa: caFile,
  /** Default ./media, unless origins are given (then no folder unless set). */
  media: z.string().min(1).optional(),
  origin,
  originList,
  originPoll,
  dataHost: host("0.0.0.0"),
  dataPort: port(8000),
  advertise: vhost,
  metricsPort: port(9087),
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
});

/** `seeder-token create|revoke|list`: the credentials file (--file) and, for create, a label. */
export const seederTokenSchema = z.strictObject({
  seederTokens: file(".distribustream/seeder-tokens"),
  name: z
    .string()
    .regex(/^[A-Za-z0-9._@:/-]{1,64}$/, "expected 1-64 characters of A-Z a-z 0-9 . _ @ : / -")
    .optional(),
});

export const upSchema = z.strictObject({
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
  dataPort: port(8000),
  checksumPort: port(6088),
  metricsPort: port(9086),
  chunkSize,
  dataDir: file(".distribustream"),
  logLevel,
});

/** YAML keys of the original DistribuStream mapped to today's settings. */
export const originalAliases: Record<string, Record<string, string>> = {
  tracker: {},
  checksum: {},
  seeder: { file_root: "media", listen_port: "dataPort", vhost: "advertise" },
  up: { file_root: "media", listen_port: "dataPort" },
};
