import type { Logger } from "@distribustream/runtime";

/** One captured log line: the child loggers' bindings, the fields logged, its level and message. */
export interface LogLine {
  level: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  msg: string;
  [field: string]: unknown;
}

/**
 * A logger that keeps its lines in memory instead of writing JSON to a file
 * descriptor (createLogger's pino writes straight to fd 1 or 2), for tests
 * that assert what was logged. It takes the calls the tracker makes:
 * `log.<level>(fields?, msg)` and `log.child(bindings)`.
 */
export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const make = (bindings: Record<string, unknown>): Logger => {
    const at =
      (level: LogLine["level"]) =>
      (fieldsOrMsg?: unknown, msg?: string): void => {
        const fields = typeof fieldsOrMsg === "object" && fieldsOrMsg !== null ? fieldsOrMsg : {};
        const text = typeof fieldsOrMsg === "string" ? fieldsOrMsg : (msg ?? "");
        lines.push({ ...bindings, ...fields, level, msg: text });
      };
    const log = {
      level: "trace",
      fatal: at("fatal"),
      error: at("error"),
      warn: at("warn"),
      info: at("info"),
      debug: at("debug"),
      trace: at("trace"),
      silent: () => undefined,
      isLevelEnabled: () => true,
      child: (more: Record<string, unknown>) => make({ ...bindings, ...more }),
    };
    return log as unknown as Logger;
  };
  return { log: make({}), lines };
}
