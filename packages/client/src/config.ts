import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { rateSetting } from "@distribustream/data-plane";
import { KEY_FINGERPRINT, keyId } from "@distribustream/pdtp";
import { loadConfig, host, logFormat, port, z, type ConfigSources } from "@distribustream/runtime/config";
import { DEFAULT_PREBUFFER_MS } from "./livePlayout.js";

const bool = z.union([z.boolean(), z.stringbool()]);

/**
 * The network key to pin, as its fingerprint: given as the fingerprint
 * itself (32 hex digits, as `distribustream network-key` prints it) or as a
 * PEM file of the key (public, or the private key file itself).
 */
const networkKey = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v === "") return undefined;
    if (KEY_FINGERPRINT.test(v.toLowerCase())) return v.toLowerCase();
    let pem: string;
    try {
      pem = readFileSync(v, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      ctx.addIssue({
        code: "custom",
        message:
          code === "ENOENT"
            ? `${v} is neither a key fingerprint (32 hex digits) nor an existing file`
            : `cannot read ${v}: ${code ?? (err as Error).message}`,
      });
      return z.NEVER;
    }
    try {
      const key = createPublicKey(pem);
      const x = key.asymmetricKeyType === "ed25519" ? key.export({ format: "jwk" }).x : undefined;
      if (typeof x !== "string") throw new Error(`a ${key.asymmetricKeyType ?? "non-Ed25519"} key`);
      return keyId(Buffer.from(x, "base64url"));
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `${v} is not an Ed25519 PEM key (${(err as Error).message})` });
      return z.NEVER;
    }
  });

/**
 * dsclient settings: flags, DS_* environment variables (DS_LISTEN_PORT,
 * DS_LINGER, ...) and the YAML file given with --conf (the keys below in
 * snake_case: listen_port, linger, ...). The help text lists them from here.
 */
export const clientConfigSchema = z.object({
  listenPort: port(0),
  listenHost: host("0.0.0.0"),
  linger: z.coerce.number().min(0).max(86_400).default(0),
  quiet: bool.default(false),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn"),
  /** json or pretty; unset: pretty when stderr is a terminal. */
  logFormat,
  connectAttempts: z.coerce.number().int().min(1).max(100).default(5),
  stall: z.coerce.number().min(1).max(86_400).default(60),
  maxDownloadRate: rateSetting,
  maxUploadRate: rateSetting,
  networkKey,
  /** PEM file of a private CA to trust for pdtps:// (read and checked by the CLI). */
  tlsCa: z.string().min(1).optional(),
  /** Live streams: ms of media behind the live edge to start at. */
  prebuffer: z.coerce.number().int().min(0).max(300_000).default(DEFAULT_PREBUFFER_MS),
  /** Live streams: start at the oldest chunk the swarm holds (replay the window). */
  fromStart: bool.default(false),
  /** Keep a partial download when stopped early, and resume one kept earlier (-c). */
  continue: bool.default(false),
  /** Progress events and summaries as JSON lines on stderr. */
  json: bool.default(false),
  /** Downloads at once when several URLs are given. */
  jobs: z.coerce.number().int().min(1).max(64).default(1),
});

export type ClientConfig = z.infer<typeof clientConfigSchema>;

export function loadClientConfig(src: ConfigSources): Readonly<ClientConfig> {
  return loadConfig(clientConfigSchema, src);
}
