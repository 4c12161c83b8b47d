import { readFileSync } from "node:fs";
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "@distribustream/pdtp";
import { host, hostPort, logLevel, port, z } from "@distribustream/runtime";
import { parseRate } from "@distribustream/seeder";
import { parseToken } from "@distribustream/tracker";

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
/** "16M", "500K", "1048576" (bytes/s); "0" or unset: no limit. */
const rate = z
  .union([z.string(), z.number()])
  .optional()
  .transform((v, ctx) => {
    if (v === undefined) return undefined;
    try {
      return parseRate(String(v));
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  });
const file = (def: string) => z.string().min(1).default(def);

/** redis://, rediss:// (TLS), redis+cluster://host1:port1,host2:port2 (see README). */
const redis = z
  .string()
  .regex(/^rediss?(\+cluster)?:\/\/./, "expected redis://, rediss://, redis+cluster:// or rediss+cluster://")
  .optional();

/** PEM file of the CA that signed the Redis server certificates, for rediss:// with a private CA. */
const redisCa = z
  .string()
  .min(1)
  .superRefine((file, ctx) => {
    const problem = pemCertificateProblem(file);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .optional();

/** Why `file` is not a readable PEM certificate file, or undefined when it is one. */
function pemCertificateProblem(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    return `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----")) return `${file} holds no PEM certificate`;
  return undefined;
}

export const trackerSchema = z.strictObject({
  host: host("0.0.0.0"),
  redis,
  redisCa,
  port: port(6086),
  checksum: hostPort("127.0.0.1:6088"),
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
  logLevel,
});

export const seederSchema = z.strictObject({
  tracker: hostPort("127.0.0.1:6086"),
  media: file("./media"),
  dataHost: host("0.0.0.0"),
  dataPort: port(8000),
  advertise: vhost,
  metricsPort: port(9087),
  /** Upload cap of the data plane over all fetchers, e.g. "16M" (bytes/s). */
  maxUploadRate: rate,
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
  vhost,
  media: file("./media"),
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
