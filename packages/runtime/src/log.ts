import { isatty } from "node:tty";
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

/** How log records are written: one JSON object a line, or one short human line each. */
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * Structured logs, one record a line. Services log to stdout (what
 * container runtimes collect); `dsclient` logs to stderr so stdout stays the
 * download. Without a `format`, a terminal gets short human lines and
 * anything else (a pipe, a file, a container runtime) JSON. Secrets are
 * redacted by key name wherever they appear, in both formats.
 */
export function createLogger(
  service: string,
  opts: { level?: string; destination?: 1 | 2; format?: LogFormat | undefined } = {},
): Logger {
  const fd = opts.destination ?? 1;
  const format = opts.format ?? (isatty(fd) ? "pretty" : "json");
  return pino(
    {
      name: service,
      level: opts.level ?? "info",
      base: { service },
      redact: { paths: ["*.credential", "*.ticket", "*.privateKey", "credential", "ticket"], censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    format === "pretty" ? prettyStream(fd) : pino.destination({ fd, sync: false }),
  );
}

/**
 * Human lines on `fd`, written synchronously so that they keep their order
 * with what the command prints itself (a terminal is slow to fill anyway).
 * Formatted in process, from the record pino serialised (redactions done):
 * no worker thread, nothing to load at run time.
 */
function prettyStream(fd: number): DestinationStream {
  const out = pino.destination({ fd, sync: true });
  return {
    write: (line: string) => {
      out.write(prettyLine(line));
    },
  };
}

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
/** Record fields the line shows in its head, or not at all. */
const HEAD = new Set(["level", "time", "service", "name", "part", "msg", "pid", "hostname"]);

/**
 * One JSON record as a line a person reads:
 * `12:04:05.123 WARN  tracker: swarm store connection failed store=memory err="…"`.
 * Time of day in local time; then the level, who logs (the service, and the
 * part of `up` that does), the message, and every other field as key=value
 * (strings quoted when they hold spaces or quotes, objects compact). An
 * error's stack follows on indented lines. A line that is not a JSON record
 * is passed on as it is.
 */
export function prettyLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  const time = typeof rec.time === "string" || typeof rec.time === "number" ? new Date(rec.time) : new Date();
  const clock = [time.getHours(), time.getMinutes(), time.getSeconds()].map((n) => String(n).padStart(2, "0"));
  const level = (LEVELS[rec.level as number] ?? String(rec.level)).padEnd(5);
  const who = [rec.service ?? rec.name, rec.part].filter((w) => w !== undefined).join("/");
  let line = `${clock.join(":")}.${String(time.getMilliseconds()).padStart(3, "0")} ${level} ${who}:`;
  if (rec.msg !== undefined) line += ` ${String(rec.msg)}`;
  let stack = "";
  for (const [key, value] of Object.entries(rec)) {
    if (HEAD.has(key) || value === undefined) continue;
    if (isSerializedError(value)) {
      line += ` ${key}=${quote(value.message)}`;
      if (typeof value.stack === "string") stack += value.stack.split("\n").slice(1).join("\n") + "\n";
    } else {
      line += ` ${key}=${typeof value === "string" ? quote(value) : JSON.stringify(value)}`;
    }
  }
  return `${line}\n${stack}`;
}

/** What pino's error serializer makes of an Error: { type, message, stack, … }. */
function isSerializedError(v: unknown): v is { message: string; stack?: unknown } {
  return typeof v === "object" && v !== null && "type" in v && typeof (v as { message?: unknown }).message === "string";
}

function quote(s: string): string {
  return s !== "" && !/[\s"=\\]/.test(s) ? s : JSON.stringify(s);
}
