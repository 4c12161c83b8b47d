import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type ClientRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { isIP } from "node:net";
import { originUrlProblem, originValidatorProblem, type OriginValidator } from "@distribustream/pdtp";
import { originDenied, originPolicy, type OriginPolicy } from "./originPolicy.js";

/**
 * HTTP(S) origins: a file a seeder relays from a web server instead of its
 * own disk. Every read is a range request made conditional on the version's
 * validator (If-Match with a strong ETag, else If-Unmodified-Since; If-Range
 * as well, for servers that ignore those), and the answer is checked again
 * (206, the exact Content-Range and total size, the same ETag or
 * Last-Modified): bytes of another version are never passed on.
 */

/** One version of an origin: where it is, how long, and the validator that pins its bytes. */
export interface OriginVersion extends OriginValidator {
  url: string;
  size: number;
}

/**
 * Why an origin request did not give the bytes. "changed": the origin now
 * has another version (412, another validator, size or range); "unsupported":
 * it cannot be relayed (no byte ranges, no length, no strong validator);
 * "gone": 404 or 410; "denied": its address is one the origin policy
 * denies (see originPolicy); "failed": anything else (network, timeout, 5xx,
 * redirect, short body).
 */
export class OriginError extends Error {
  override name = "OriginError";
  constructor(
    readonly kind: "changed" | "unsupported" | "gone" | "denied" | "failed",
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }

  /** On a data plane relaying the origin: 404, the version asked for is no longer served. */
  get refusalStatus(): number | undefined {
    return this.kind === "changed" || this.kind === "gone" ? 404 : undefined;
  }
}

export interface OriginRequestOptions {
  /** Keep-alive agents (see originAgents); without them each request has its own connection. */
  agents?: OriginAgents;
  /** Longest wait for the next bytes (connect, headers, body); default 15 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface OriginAgents {
  http: HttpAgent;
  https: HttpsAgent;
  /** Where their connections may go: every request through them is checked against it. */
  policy: OriginPolicy;
  destroy(): void;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const HIGH_WATER_MARK = 64 * 1024;

/** The policy without an allowed range: loopback, private, link-local and reserved addresses denied. */
const DEFAULT_POLICY = originPolicy();

/**
 * Keep-alive agents for origin requests, one pair per process part. Their
 * connections go only where `policy` allows (by default no loopback,
 * private, link-local or reserved address): the policy resolves names.
 */
export function originAgents(policy: OriginPolicy = DEFAULT_POLICY, maxSockets = 16): OriginAgents {
  const opts = { keepAlive: true, maxSockets, maxFreeSockets: 4, scheduling: "lifo" as const, lookup: policy.lookup };
  const http = new HttpAgent(opts);
  const https = new HttpsAgent(opts);
  return {
    http,
    https,
    policy,
    destroy() {
      http.destroy();
      https.destroy();
    },
  };
}

/**
 * Learns an origin's size and validator with one ranged GET (bytes 0-0):
 * a 206 proves byte-range support and its Content-Range gives the length.
 * Rejects with an OriginError saying why an origin cannot be relayed.
 */
export async function probeOrigin(url: string, opts: OriginRequestOptions = {}): Promise<OriginVersion> {
  const problem = originUrlProblem(url);
  if (problem) throw new OriginError("unsupported", problem);
  const res = await send(url, { range: "bytes=0-0", "accept-encoding": "identity" }, opts);
  res.resume();
  const status = res.statusCode ?? 0;
  const fail = statusError(url, res);
  if (fail) throw fail;
  let size: number;
  if (status === 206) {
    const cr = parseContentRange(res.headers["content-range"]);
    if (!cr || cr.total === undefined) {
      throw new OriginError(
        "unsupported",
        `${url} gives no total length in Content-Range (${res.headers["content-range"] ?? "none"}); cannot publish it`,
        status,
      );
    }
    size = cr.total;
  } else if (status === 416 && /^bytes \*\/0$/.test(res.headers["content-range"] ?? "")) {
    size = 0; // an empty file: no byte to ask for
  } else if (status === 200) {
    throw new OriginError(
      "unsupported",
      `${url} does not support byte ranges (answered 200 to a Range request); cannot relay it`,
      status,
    );
  } else {
    throw new OriginError("failed", `${url} answered ${status} to a Range request`, status);
  }
  if (contentEncoded(res)) {
    throw new OriginError(
      "unsupported",
      `${url} answers with Content-Encoding ${res.headers["content-encoding"]}; need the identity encoding`,
    );
  }
  const validator = validatorOf(res);
  if (!validator) {
    throw new OriginError(
      "unsupported",
      `${url} gives neither a strong ETag nor a Last-Modified date; its versions cannot be told apart, so it is not published`,
      status,
    );
  }
  return { url, size, ...validator };
}

/**
 * Bytes [start, end) of one origin version, streamed as they arrive (memory
 * stays at the stream's buffer whatever the range). The readable errors with
 * an OriginError before it yields a byte if the origin no longer has that
 * version, and if the body ends short. Destroying it aborts the request.
 */
export function readOrigin(
  origin: OriginVersion,
  start: number,
  end: number,
  opts: OriginRequestOptions = {},
): Readable {
  let req: ClientRequest | undefined;
  let res: IncomingMessage | undefined;
  let got = 0;
  const want = end - start;
  const out = new Readable({
    highWaterMark: HIGH_WATER_MARK,
    read() {
      res?.resume();
    },
    destroy(err, cb) {
      req?.destroy();
      res?.destroy();
      cb(err);
    },
  });
  if (want <= 0) {
    out.push(null);
    return out;
  }
  const headers: Record<string, string> = {
    range: `bytes=${start}-${end - 1}`,
    "accept-encoding": "identity",
    ...conditionalHeaders(origin),
  };
  send(origin.url, headers, opts, (r) => (req = r)).then(
    (r) => {
      res = r;
      if (out.destroyed) return r.destroy();
      const problem = rangeResponseProblem(origin, r, start, end);
      if (problem) {
        r.resume();
        return out.destroy(problem);
      }
      r.on("data", (d: Buffer) => {
        got += d.length;
        if (got > want) return out.destroy(new OriginError("failed", `${origin.url} sent more than ${want} bytes`));
        if (!out.push(d)) r.pause();
      });
      r.on("end", () => {
        if (got === want) out.push(null);
        else out.destroy(new OriginError("failed", `${origin.url} ended after ${got} of ${want} bytes`));
      });
      r.on("error", (err) => out.destroy(new OriginError("failed", `${origin.url}: ${err.message}`)));
      r.on("aborted", () => out.destroy(new OriginError("failed", `${origin.url}: response aborted`)));
    },
    (err: Error) => out.destroy(err),
  );
  return out;
}

/**
 * Resolves once the origin confirms it still has this version (a
 * conditional request for its first byte); rejects with an OriginError
 * ("changed" when it has another one).
 */
export async function confirmOrigin(origin: OriginVersion, opts: OriginRequestOptions = {}): Promise<void> {
  if (origin.size === 0) {
    const now = await probeOrigin(origin.url, opts);
    if (now.size !== 0 || now.etag !== origin.etag || now.lastModified !== origin.lastModified) {
      throw new OriginError("changed", `${origin.url} changed`);
    }
    return;
  }
  const r = readOrigin(origin, 0, 1, opts);
  for await (const piece of r) void piece;
}

/** If-Match (strong ETag) or If-Unmodified-Since, and If-Range with the same validator. */
export function conditionalHeaders(v: OriginValidator): Record<string, string> {
  if (v.etag) return { "if-match": v.etag, "if-range": v.etag };
  if (v.lastModified) return { "if-unmodified-since": v.lastModified, "if-range": v.lastModified };
  return {};
}

/** Why a response to a conditional range request does not carry the asked bytes of this version, or undefined. */
function rangeResponseProblem(
  origin: OriginVersion,
  res: IncomingMessage,
  start: number,
  end: number,
): OriginError | undefined {
  const url = origin.url;
  const status = res.statusCode ?? 0;
  const changed = (why: string) => new OriginError("changed", `${url} changed since it was published (${why})`, status);
  if (status === 412) return changed("412 Precondition Failed");
  const fail = statusError(url, res);
  if (fail) return fail;
  const { etag, lastModified } = validatorOf(res) ?? {};
  if (origin.etag && res.headers.etag !== undefined && res.headers.etag !== origin.etag) {
    return changed(`ETag now ${res.headers.etag.slice(0, 80)}`);
  }
  if (!origin.etag && origin.lastModified && lastModified !== undefined && lastModified !== origin.lastModified) {
    return changed(`Last-Modified now ${lastModified}`);
  }
  if (status === 416) return changed(`416, Content-Range ${res.headers["content-range"] ?? "none"}`);
  if (status === 200) {
    // If-Range failed (another version), or the server ignores Range: neither gives the asked bytes
    return etag !== undefined && etag === origin.etag
      ? new OriginError("unsupported", `${url} ignored the Range header (answered 200)`, status)
      : changed("answered 200 to a conditional Range request");
  }
  if (status !== 206) return new OriginError("failed", `${url} answered ${status}`, status);
  if (contentEncoded(res)) return new OriginError("unsupported", `${url} answered with a Content-Encoding`, status);
  const cr = parseContentRange(res.headers["content-range"]);
  if (!cr || cr.first !== start || cr.last !== end - 1) {
    return new OriginError(
      "failed",
      `${url} answered Content-Range ${res.headers["content-range"] ?? "none"} for bytes ${start}-${end - 1}`,
      status,
    );
  }
  if (cr.total !== undefined && cr.total !== origin.size) return changed(`size now ${cr.total}, was ${origin.size}`);
  return undefined;
}

/** An error for statuses that are never an answer with bytes (404/410 gone, 3xx, 5xx), or undefined. */
function statusError(url: string, res: IncomingMessage): OriginError | undefined {
  const status = res.statusCode ?? 0;
  if (status === 404 || status === 410) return new OriginError("gone", `${url} answered ${status} (not found)`, status);
  if (status >= 300 && status < 400) {
    const to = res.headers.location ? ` to ${res.headers.location.slice(0, 200)}` : "";
    return new OriginError(
      "failed",
      `${url} redirects (${status})${to}; give the final URL (redirects are not followed)`,
      status,
    );
  }
  if (status >= 500 || status === 0) return new OriginError("failed", `${url} answered ${status}`, status);
  return undefined;
}

/** The strong ETag, else the Last-Modified date, of a response; undefined with neither (a weak ETag does not count). */
function validatorOf(res: IncomingMessage): OriginValidator | undefined {
  const etag = res.headers.etag;
  if (etag && originValidatorProblem({ etag }) === undefined) return { etag };
  const lastModified = res.headers["last-modified"];
  if (lastModified && originValidatorProblem({ lastModified }) === undefined) return { lastModified };
  return undefined;
}

function contentEncoded(res: IncomingMessage): boolean {
  const enc = res.headers["content-encoding"];
  return enc !== undefined && enc !== "" && enc.toLowerCase() !== "identity";
}

/** "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"). */
function parseContentRange(v: string | undefined): { first: number; last: number; total?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v?.trim() ?? "");
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const total = m[3] === "*" ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) return undefined;
  if (total !== undefined && (!Number.isSafeInteger(total) || last >= total)) return undefined;
  return total === undefined ? { first, last } : { first, last, total };
}

/** One GET; resolves with the response head, rejects with an OriginError("failed") on network errors and timeouts. */
function send(
  url: string,
  headers: Record<string, string>,
  opts: OriginRequestOptions,
  onRequest?: (req: ClientRequest) => void,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const https = u.protocol === "https:";
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const policy = opts.agents?.policy ?? DEFAULT_POLICY;
    // a literal address is never looked up, so the policy's lookup does not see it
    const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const why = isIP(host) ? policy.denies(host) : undefined;
    if (why) {
      const err = originDenied(`${url}: ${host} is a ${why} address, which the origin policy denies`);
      return reject(new OriginError("denied", err.message));
    }
    const req = (https ? httpsRequest : httpRequest)(
      u,
      {
        method: "GET",
        headers: { ...headers, "user-agent": "distribustream-origin/0.1.0" },
        agent: (https ? opts.agents?.https : opts.agents?.http) ?? false,
        lookup: policy.lookup,
        timeout: timeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      resolve,
    );
    onRequest?.(req);
    req.on("timeout", () => req.destroy(new OriginError("failed", `${url}: no answer for ${timeoutMs} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(
        err instanceof OriginError
          ? err
          : err.code === "EORIGINDENIED"
            ? new OriginError("denied", `${url}: ${err.message}`)
            : new OriginError("failed", `${url}: ${err.name === "AbortError" ? "aborted" : (err.code ?? err.message)}`),
      ),
    );
    req.end();
  });
}
