import { connect as tlsConnect } from "node:tls";

/**
 * A connection failure at the TLS layer, which retrying cannot fix:
 * "plaintext-tracker" (TLS asked of a tracker that speaks plaintext),
 * "tls-tracker" (plaintext asked of a tracker that speaks TLS),
 * "untrusted-certificate". `reason` is the TLS error, one line.
 */
export interface TlsProblem {
  kind: "plaintext-tracker" | "tls-tracker" | "untrusted-certificate";
  reason: string;
}

/** How long the probe of a failed plaintext connection waits for a TLS handshake. */
const TLS_PROBE_MS = 2_000;

/** What grpc-js says when a TLS client meets a plaintext server. */
const PLAINTEXT_ANSWER =
  /wrong version number|WRONG_VERSION_NUMBER|packet length too long|unknown protocol|http request/i;
/** What Node's TLS says about a certificate it does not accept. */
const CERTIFICATE_PROBLEM = /certificate|altnames|CERT_/i;

/**
 * The TLS problem a failed connection's status details tell of, if any.
 * `tls`: the connection was over TLS; `speaksTls`: a plaintext connection's
 * server answered a TLS handshake (see speaksTlsAt).
 */
export function tlsProblem(details: string, ctx: { tls: boolean; speaksTls?: boolean }): TlsProblem | undefined {
  if (!ctx.tls) return ctx.speaksTls ? { kind: "tls-tracker", reason: tlsReason(details) } : undefined;
  if (PLAINTEXT_ANSWER.test(details)) return { kind: "plaintext-tracker", reason: tlsReason(details) };
  if (CERTIFICATE_PROBLEM.test(details)) return { kind: "untrusted-certificate", reason: tlsReason(details) };
  return undefined;
}

/** Whether a plaintext connection failure is worth a TLS probe: the server closed it, no socket error (ECONNREFUSED, …). */
export function worthTlsProbe(details: string): boolean {
  return !/\bE[A-Z]{3,}/.test(details);
}

/** The TLS error out of a grpc-js "No connection established. Last error: Error: …" detail, one line. */
function tlsReason(details: string): string {
  const last = details
    .replace(/^No connection established\. Last error: (Error: )?/, "")
    .replace(/\. Resolution note:.*$/s, "");
  const ssl = /:SSL routines:[^:]*:([^:]+):/.exec(last);
  const line = (ssl ? ssl[1]! : last).split("\n")[0]!.trim();
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

/**
 * Whether a TLS handshake succeeds at `target` ("host:port"), the server's
 * certificate unchecked: asked after a plaintext connection failed without
 * a socket error (the server closed it), to tell a plaintext link to a TLS
 * tracker from a tracker that is down.
 */
export function speaksTlsAt(target: string): Promise<boolean> {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(target);
  if (!m) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: m[1], port: Number(m[2]), rejectUnauthorized: false, ALPNProtocols: ["h2"] });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), TLS_PROBE_MS);
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}
