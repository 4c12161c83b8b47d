import { loadConfig, host, port, z, type ConfigSources } from "@distribustream/runtime/config";

const bool = z.union([z.boolean(), z.stringbool()]);

/**
 * dsclient settings: flags, DS_* environment variables (DS_LISTEN_PORT,
 * DS_LINGER, ...) and the YAML file given with --conf (snake_case keys:
 * listen_port, listen_host, linger, quiet, log_level, connect_attempts, stall).
 */
export const clientConfigSchema = z.object({
  listenPort: port(0),
  listenHost: host("0.0.0.0"),
  linger: z.coerce.number().min(0).max(86_400).default(0),
  quiet: bool.default(false),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn"),
  connectAttempts: z.coerce.number().int().min(1).max(100).default(5),
  stall: z.coerce.number().min(1).max(86_400).default(60),
});

export type ClientConfig = z.infer<typeof clientConfigSchema>;

export function loadClientConfig(src: ConfigSources): Readonly<ClientConfig> {
  return loadConfig(clientConfigSchema, src);
}
