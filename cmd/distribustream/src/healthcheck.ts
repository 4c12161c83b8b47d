import type { ClientTls } from "@distribustream/runtime/tls";

/**
 * `distribustream healthcheck TARGET`: the probe a container engine or a
 * Kubernetes exec probe runs inside the image. gRPC health (grpc.health.v1,
 * the overall service "") of the tracker and the checksum service, or an
 * HTTP GET (the dashboard's /healthz, a metrics server's /healthz).
 *
 * Exit status: 0 healthy, 1 unhealthy or no answer in time (one line on
 * stderr saying which), 2 bad usage (HealthcheckUsageError).
 */

export const HEALTHCHECK_USAGE =
  "usage: distribustream healthcheck [--timeout MS] [--ca FILE.pem] TARGET\n" +
  "  TARGET: grpc://HOST:PORT (gRPC health), grpcs://HOST:PORT (over TLS; --ca to trust a private CA)\n" +
  "          or http(s)://HOST:PORT/PATH (GET; healthy on 2xx)";

export const DEFAULT_HEALTHCHECK_TIMEOUT_MS = 3000;

/** Bad usage: the message says what is wrong; the command adds the usage text and exits 2. */
export class HealthcheckUsageError extends Error {
  override name = "HealthcheckUsageError";
}

export type HealthTarget =
  { kind: "grpc"; target: string; tls: boolean; shown: string } | { kind: "http"; url: string; shown: string };

/** Parses TARGET; throws HealthcheckUsageError naming it. */
export function parseHealthTarget(input: string): HealthTarget {
  const grpc = /^(grpcs?):\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(input);
  if (grpc) {
    const port = Number(grpc[3]);
    if (port < 1 || port > 65535) throw new HealthcheckUsageError(`port ${grpc[3]} in "${input}" is not 1-65535`);
    const target = `${grpc[2]}:${port}`;
    return { kind: "grpc", target, tls: grpc[1] === "grpcs", shown: `${grpc[1]}://${target}` };
  }
  if (/^https?:\/\//i.test(input)) {
    let url: URL;
    try {
      url = new URL(input);
    } catch {
      throw new HealthcheckUsageError(`"${input.slice(0, 200)}" is not a URL`);
    }
    if (url.username || url.password) throw new HealthcheckUsageError(`credentials in "${url.host}" are not supported`);
    return { kind: "http", url: url.href, shown: url.href };
  }
  throw new HealthcheckUsageError(
    `bad target "${input.slice(0, 200)}": expected grpc://HOST:PORT, grpcs://HOST:PORT or http://HOST:PORT/PATH`,
  );
}

/** --timeout: whole milliseconds, 1 ms to 10 minutes. */
export function parseHealthTimeout(value: string | undefined): number {
  if (value === undefined) return DEFAULT_HEALTHCHECK_TIMEOUT_MS;
  const ms = Number(value);
  if (!/^\d+$/.test(value) || ms < 1 || ms > 600_000) {
    throw new HealthcheckUsageError(`--timeout "${value.slice(0, 32)}" is not a number of milliseconds (1-600000)`);
  }
  return ms;
}

export interface HealthResult {
  healthy: boolean;
  /** One line for a person: what was asked and what it answered. */
  line: string;
}

/** Asks `target` once, within `timeoutMs`; never rejects. */
export async function probeHealth(target: HealthTarget, timeoutMs: number, tls?: ClientTls): Promise<HealthResult> {
  if (target.kind === "grpc") {
    // gRPC loads for a gRPC target only: an http:// probe stays a small process
    const { checkHealth } = await import("@distribustream/runtime/health");
    if (target.tls) (await import("@distribustream/runtime/tls")).ignoreIpServernameWarning();
    const answer = await checkHealth(target.target, timeoutMs, target.tls ? (tls ?? {}) : undefined);
    if (answer === "SERVING") return { healthy: true, line: `${target.shown}: SERVING` };
    if (answer === "NOT_SERVING" || answer.startsWith("status "))
      return { healthy: false, line: `${target.shown} is ${answer}` };
    // grpc-js adds an empty "Resolution note:" to connection errors
    const why = answer.replace(/\.?\s*Resolution note:\s*$/, "");
    return { healthy: false, line: `${target.shown} did not answer a health check: ${why}` };
  }
  try {
    const res = await fetch(target.url, { redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel().catch(() => undefined);
    const status = `${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
    return res.status >= 200 && res.status < 300
      ? { healthy: true, line: `${target.shown}: ${status}` }
      : { healthy: false, line: `${target.shown} answered ${status}` };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why =
      e.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { healthy: false, line: `${target.shown} did not answer: ${why}` };
  }
}

/**
 * The command: parses its arguments (throwing HealthcheckUsageError), asks
 * once and resolves the exit status, having written one line (stdout when
 * healthy, stderr when not).
 */
export async function runHealthcheck(
  targetArg: string,
  opts: { timeout?: string; ca?: string },
  io: { out: (s: string) => void; err: (s: string) => void },
): Promise<number> {
  const target = parseHealthTarget(targetArg);
  const timeoutMs = parseHealthTimeout(opts.timeout);
  let tls: ClientTls | undefined;
  if (opts.ca !== undefined) {
    if (target.kind !== "grpc" || !target.tls) {
      throw new HealthcheckUsageError(`--ca is for grpcs:// targets, not ${target.shown}`);
    }
    try {
      const { readPemCertificates } = await import("@distribustream/runtime/tls");
      tls = { ca: readPemCertificates(opts.ca, "ca") };
    } catch (err) {
      throw new HealthcheckUsageError((err as Error).message.replace(/^invalid setting ca: /, "--ca: "));
    }
  }
  const result = await probeHealth(target, timeoutMs, tls);
  if (result.healthy) io.out(`${result.line}\n`);
  else io.err(`distribustream healthcheck: ${result.line}\n`);
  return result.healthy ? 0 : 1;
}
