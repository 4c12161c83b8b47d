import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Structured JSON logs, one object a line. Services log to stdout (what
 * container runtimes collect); `dsclient` logs to stderr so stdout stays the
 * download. Secrets are redacted by key name wherever they appear.
 */
export function createLogger(service: string, opts: { level?: string; destination?: 1 | 2 } = {}): Logger {
  return pino(
    {
      name: service,
      level: opts.level ?? "info",
      base: { service },
      redact: { paths: ["*.credential", "*.ticket", "*.privateKey", "credential", "ticket"], censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: opts.destination ?? 1, sync: false }),
  );
}
