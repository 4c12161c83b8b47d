import { isIP } from "node:net";

/** Default PDTP port, as in the original DistribuStream. */
export const DEFAULT_PDTP_PORT = 6086;

export interface PdtpUrl {
  host: string;
  port: number;
  /** Stream name: the URL path without its leading slash, percent-decoded. */
  name: string;
  /** "host:port" for a gRPC channel target. */
  target: string;
  /** Fingerprint of the network key to pin, from `?key=` (32 lowercase hex digits), if given. */
  networkKey?: string;
  /** pdtps://: the tracker is reached over TLS (same default port). */
  tls: boolean;
}

/** A network key fingerprint: hex of the first 16 bytes of the key's SHA-256 (see keyId). */
export const KEY_FINGERPRINT = /^[0-9a-f]{32}$/;

export class PdtpUrlError extends Error {
  override name = "PdtpUrlError";
}

/** Parses pdtp://host[:port]/name[?key=FINGERPRINT] (plaintext) or pdtps://… (TLS); throws PdtpUrlError saying what is wrong. */
export function parsePdtpUrl(input: string): PdtpUrl {
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    throw new PdtpUrlError(`not a URL: "${input}" (expected pdtp://HOST[:PORT]/NAME or pdtps://…)`);
  }
  if (u.protocol !== "pdtp:" && u.protocol !== "pdtps:")
    throw new PdtpUrlError(`unsupported scheme "${u.protocol}" in "${input}" (expected pdtp:// or pdtps://)`);
  if (!u.hostname) throw new PdtpUrlError(`no host in "${input}"`);
  if (u.username || u.password) throw new PdtpUrlError(`credentials in a ${u.protocol}// URL are not supported`);
  if (u.hash) throw new PdtpUrlError(`fragment in "${input}" is not supported`);
  let networkKey: string | undefined;
  for (const [k, v] of u.searchParams) {
    if (k !== "key" || networkKey !== undefined) {
      throw new PdtpUrlError(`query "${k}" in "${input}" is not supported (only one ?key=NETWORK_KEY_FINGERPRINT)`);
    }
    networkKey = v.toLowerCase();
    if (!KEY_FINGERPRINT.test(networkKey)) {
      throw new PdtpUrlError(`?key= in "${input}" is not a network key fingerprint (32 hex digits)`);
    }
  }
  // URL parsing silently resolves "." and ".." segments; a name must not contain them at all.
  const rawPath = input.replace(/^[a-z]+:\/\/[^/]*/i, "").replace(/\?.*$/, "");
  if (/(^|\/)\.\.?(\/|$)/.test(rawPath)) throw new PdtpUrlError(`stream name has a "." or ".." segment in "${input}"`);
  let name: string;
  try {
    name = decodeURIComponent(u.pathname.replace(/^\//, ""));
  } catch {
    throw new PdtpUrlError(`bad percent-encoding in "${input}"`);
  }
  const problem = streamNameProblem(name);
  if (problem) throw new PdtpUrlError(`${problem} in "${input}"`);
  const port = u.port ? Number(u.port) : DEFAULT_PDTP_PORT;
  const host = u.hostname;
  return {
    host,
    port,
    name,
    target: `${host}:${port}`,
    tls: u.protocol === "pdtps:",
    ...(networkKey ? { networkKey } : {}),
  };
}

/**
 * Why `name` cannot be a stream name, or undefined when it can. Names are
 * relative slash-separated paths: no empty, "." or ".." segments, no NUL or
 * backslash, at most 1024 bytes.
 */
export function streamNameProblem(name: string): string | undefined {
  if (name.length === 0) return "no stream name";
  if (Buffer.byteLength(name) > 1024) return "stream name longer than 1024 bytes";
  if (/[\0\\]/.test(name)) return "stream name contains NUL or backslash";
  for (const seg of name.split("/")) {
    if (seg === "" || seg === "." || seg === "..") return `stream name "${name}" has an empty, "." or ".." segment`;
  }
  return undefined;
}

/**
 * A tracker address without a stream name: "host:port" (plaintext) or
 * "pdtps://host:port" (TLS), as the seeder's --tracker takes it.
 */
export function parseTrackerAddress(input: string): { target: string; tls: boolean } {
  const m = /^(?:(pdtps?):\/\/)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(input);
  if (!m || Number(m[3]) > 65535) {
    throw new PdtpUrlError(`not a tracker address: "${input}" (expected HOST:PORT, or pdtps://HOST:PORT for TLS)`);
  }
  return { target: `${m[2]}:${Number(m[3])}`, tls: m[1] === "pdtps" };
}

/** "host:port" for a URL authority or a gRPC target, with an IPv6 literal in brackets. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for a DNS host name or an IP literal (IPv6 without brackets): what a peer can be reached by. */
export function isHostName(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  if (isIP(host)) return true;
  return /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(
    host,
  );
}

/** A data-plane address: a host, and a port when one was given. */
export interface DataAddress {
  /** Host name or IP literal, an IPv6 one without brackets. */
  host: string;
  /** 1-65535; undefined when the address gave none. */
  port?: number;
}

/**
 * Parses "HOST[:PORT]" as a seeder's --advertise and --internal-address take
 * it: a host name, an IPv4 literal, an IPv6 literal in brackets ("[::1]:8000")
 * or bare without a port ("::1"), and a port 1-65535. Throws PdtpUrlError
 * saying what is wrong.
 */
export function parseDataAddress(input: string): DataAddress {
  const bad = (why: string) =>
    new PdtpUrlError(`not a data address: "${input.slice(0, 80)}" (${why}; expected HOST or HOST:PORT)`);
  let host: string;
  let port: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::([^:]*))?$/.exec(input);
  if (bracketed) {
    [, host, port] = bracketed as unknown as [string, string, string | undefined];
    if (isIP(host) !== 6) throw bad("only an IPv6 address goes in brackets");
  } else if (isIP(input) === 6) {
    host = input;
  } else {
    const parts = input.split(":");
    if (parts.length > 2) throw bad("an IPv6 address with a port goes in brackets, [ADDR]:PORT");
    [host, port] = parts as [string, string | undefined];
    if (!isHostName(host)) throw bad(`"${host.slice(0, 64)}" is not a host name or IP address`);
  }
  if (port === undefined) return { host };
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw bad(`port "${port.slice(0, 16)}" is not 1-65535`);
  }
  return { host, port: Number(port) };
}
