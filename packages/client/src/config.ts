import { parseRate } from "@distribustream/data-plane";
import { loadConfig, host, port, z, type ConfigSources } from "@distribustream/runtime/config";

const bool = z.union([z.boolean(), z.stringbool()]);

/** "8M", "500K", "1048576" (bytes/s); "0" or unset: no limit. */
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

/**
 * dsclient settings: flags, DS_* environment variables (DS_LISTEN_PORT,
 * DS_LINGER, ...) and the YAML file given with --conf (snake_case keys:
 * listen_port, listen_host, linger, quiet, log_level, connect_attempts, stall,
 * max_download_rate, max_upload_rate).
 */
export const clientConfigSchema = z.object({
  listenPort: port(0),
  listenHost: host("0.0.0.0"),
  linger: z.coerce.number().min(0).max(86_400).default(0),
  quiet: bool.default(false),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn"),
  connectAttempts: z.coerce.number().int().min(1).max(100).default(5),
  stall: z.coerce.number().min(1).max(86_400).default(60),
  maxDownloadRate: rate,
  maxUploadRate: rate,
});

export type ClientConfig = z.infer<typeof clientConfigSchema>;

export function loadClientConfig(src: ConfigSources): Readonly<ClientConfig> {
  return loadConfig(clientConfigSchema, src);
}
