import { status } from "@grpc/grpc-js";
import { tlsProblem, type TlsProblem } from "@distribustream/tracker-link";
import type { DownloadResult } from "./download.js";

/**
 * Exit codes of `dsclient`, also carried by every DownloadError so that the
 * library's callers can tell failures apart without parsing messages.
 */
export const ExitCode = {
  OK: 0,
  /** Unexpected error (a bug, or the tracker rejected a request as invalid). */
  UNEXPECTED: 1,
  /** Bad usage: unknown flag, invalid setting, bad URL. */
  USAGE: 2,
  /** The tracker does not know the stream name. */
  NOT_FOUND: 3,
  /** The tracker could not be reached after the bounded retries. */
  UNREACHABLE: 4,
  /** Local I/O error, such as a full disk. */
  IO: 5,
  /** Verification failure the client cannot recover from (bad manifest signature). */
  INTEGRITY: 6,
  /** The download stalled or the tracker ended it. */
  STALLED: 7,
  /**
   * TLS failure: the URL's scheme does not match the tracker (pdtps:// to a
   * plaintext tracker, pdtp:// to a TLS one) or its certificate is not trusted.
   */
  TLS: 8,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A failure of a download, with a one-line message and the exit code the CLI uses. */
export class DownloadError extends Error {
  override name = "DownloadError";
  /** What the download did until it stopped, once it had begun (set by download()). */
  result?: DownloadResult;
  constructor(
    message: string,
    readonly exitCode: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The reader of the output went away (EPIPE): the download stops, successfully. */
export class OutputClosed extends DownloadError {
  override name = "OutputClosed";
  constructor(what: string) {
    super(`${what} was closed by its reader`, ExitCode.OK);
  }
}

/** Exit code for anything thrown out of a download or the CLI. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof DownloadError) return err.exitCode;
  if (err instanceof Error && err.name === "ConfigError") return ExitCode.USAGE;
  if (err instanceof Error && err.name === "PdtpUrlError") return ExitCode.USAGE;
  return ExitCode.UNEXPECTED;
}

/** Maps a local file-system error to a DownloadError with exit code 5 and a clear message. */
export function ioError(err: unknown, action: string, file: string): DownloadError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC") return new DownloadError(`disk full ${action} ${file}`, ExitCode.IO, { cause: err });
  if (code === "EDQUOT") return new DownloadError(`disk quota exceeded ${action} ${file}`, ExitCode.IO, { cause: err });
  const why = code ?? (err as Error | undefined)?.message ?? String(err);
  return new DownloadError(`I/O error ${action} ${file}: ${why}`, ExitCode.IO, { cause: err });
}

/** An error writing to the output `name`: its reader going away is OutputClosed (exit 0), the rest exit 5. */
export function outputError(err: unknown, name: string): DownloadError {
  if (err instanceof DownloadError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EPIPE" || code === "ECONNRESET" || code === "ERR_STREAM_DESTROYED") return new OutputClosed(name);
  return ioError(err, "writing", name);
}

/** Short reason out of a grpc-js connection error, e.g. "connect ECONNREFUSED". */
export function connectionReason(details: string): string {
  const m = /(connect|getaddrinfo|read|write) (E[A-Z_]+)/.exec(details);
  if (m) return `${m[1]} ${m[2]}`;
  const short = details.replace(/^No connection established\. Last error: /, "").split("\n")[0] ?? "";
  return short.length > 120 ? `${short.slice(0, 117)}...` : short || "no connection";
}

/**
 * A connection failure that retrying cannot fix, at the TLS layer: a
 * pdtps:// URL for a plaintext tracker, a pdtp:// URL for a TLS tracker
 * (`speaksTls`, found by a probe after a failed plaintext connection), or a
 * certificate not trusted. Undefined for anything else. Exit code 8.
 */
export function tlsFailure(
  details: string,
  ctx: { target: string; tls: boolean; speaksTls?: boolean },
): DownloadError | undefined {
  const problem = tlsProblem(details, ctx);
  return problem && tlsError(problem, ctx.target);
}

/** The message and exit code (8) of a TLS problem the tracker link found at `target`. */
export function tlsError(problem: TlsProblem, target: string): DownloadError {
  switch (problem.kind) {
    case "tls-tracker":
      return new DownloadError(
        `tracker ${target} speaks TLS: use a pdtps:// URL for it (pdtp:// is plaintext)`,
        ExitCode.TLS,
      );
    case "plaintext-tracker":
      return new DownloadError(
        `tracker ${target} does not speak TLS (${problem.reason}): use a pdtp:// URL for it, pdtps:// is for trackers started with --tls-cert`,
        ExitCode.TLS,
      );
    case "untrusted-certificate":
      return new DownloadError(
        `TLS certificate of tracker ${target} not trusted (${problem.reason}); for a private CA give it with --tls-ca FILE`,
        ExitCode.TLS,
      );
  }
}

/**
 * What a tracker's final session status means for the download. A retry may
 * carry the error to end with once the bounded retries run out.
 */
export type SessionEnd =
  { retry: true; reason: string; giveUp?: DownloadError } | { retry: false; error: DownloadError };

export interface SessionContext {
  name: string;
  target: string;
  /** The download had joined the stream (it has its manifest): this end interrupts it. */
  joined?: boolean;
}

/**
 * Classifies the status a Session ended with before the download finished.
 * UNAVAILABLE (tracker restarting or unreachable), CANCELLED (the tracker
 * cancelled the call, e.g. while shutting down), DEADLINE_EXCEEDED and a clean
 * end are retried. Once the download has joined, NOT_FOUND (a restarted
 * tracker with a memory store learns the stream again only when its seeder
 * reconnects) and INTERNAL (a tracker failing mid-download, e.g. its store)
 * are retried too. Before that, NOT_FOUND is an unknown name (exit 3) and
 * INTERNAL is not retried: on a first contact it means an incompatible or
 * broken tracker (an answer to Hello that is not a Welcome is reported as
 * INTERNAL), which waiting does not fix. The rest end the download.
 */
export function classifySessionEnd(code: status, details: string, ctx: SessionContext): SessionEnd {
  const notFound = () => new DownloadError(`no stream named "${ctx.name}" on ${ctx.target}`, ExitCode.NOT_FOUND);
  switch (code) {
    case status.UNAVAILABLE:
      return { retry: true, reason: connectionReason(details) };
    case status.OK:
      return { retry: true, reason: "tracker closed the session" };
    case status.CANCELLED:
      return { retry: true, reason: `tracker cancelled the session${details ? `: ${details}` : ""}` };
    case status.DEADLINE_EXCEEDED:
      return { retry: true, reason: "deadline exceeded" };
    case status.NOT_FOUND:
      if (ctx.joined) return { retry: true, reason: "tracker does not know the stream (yet)", giveUp: notFound() };
      return { retry: false, error: notFound() };
    case status.INTERNAL:
      if (ctx.joined) return { retry: true, reason: `tracker error: ${details || "no detail"}` };
      break;
    case status.INVALID_ARGUMENT:
      return {
        retry: false,
        error: new DownloadError(`tracker ${ctx.target} rejected the request: ${details}`, ExitCode.UNEXPECTED),
      };
    default:
      break; // every other status ends the download, below
  }
  return {
    retry: false,
    error: new DownloadError(
      `tracker ${ctx.target} ended the download (${status[code] ?? code}): ${details || "no detail"}`,
      ExitCode.STALLED,
    ),
  };
}
