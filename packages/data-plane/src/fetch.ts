import { Agent, request, type ClientRequest, type IncomingMessage } from "node:http";
import { chunkSpan, chunksPath, encodeTicket, rangeSpan, TICKET_HEADER } from "@distribustream/pdtp";
import type { ChunkRange, SignedTicket } from "@distribustream/pdtp";

export interface FetchOptions {
  host: string;
  port: number;
  streamId: string;
  range: ChunkRange;
  ticket: SignedTicket;
  layout: { size: number; chunkSize: number };
  /**
   * Called with each whole chunk in order; the next bytes are not read until
   * it resolves (backpressure). `data` is reused for the next chunk once the
   * returned promise settles: copy it to keep it. If it throws, the transfer stops and fetchChunks rejects with that same error.
   */
  onChunk: (index: number, data: Buffer) => Promise<void> | void;
  signal?: AbortSignal;
  /** Keep-alive agent shared per process (see keepAliveAgent). */
  agent?: Agent;
  /** Longest wait for the next bytes (connect, headers, body); default 15 s. Time spent in onChunk does not count. */
  timeoutMs?: number;
}

/**
 * A transfer that did not deliver every chunk. "refused": the peer answered
 * 4xx (status says which: 403 ticket, 404 stream, 416 range); "failed":
 * anything else (5xx, connection error, timeout, short body, abort).
 */
export class FetchError extends Error {
  override name = "FetchError";
  constructor(
    readonly kind: "refused" | "failed",
    message: string,
    readonly status?: number,
    /** Payload bytes of the whole chunks delivered before the failure. */
    readonly bytes = 0,
  ) {
    super(message);
  }
}

/** An HTTP agent for the data plane: keep-alive, idle sockets closed before the server's 30 s keep-alive ends. */
export function keepAliveAgent(): Agent {
  return new Agent({
    keepAlive: true,
    keepAliveMsecs: 10_000,
    maxSockets: 32,
    maxFreeSockets: 16,
    timeout: 20_000,
    scheduling: "lifo",
  });
}

const DEFAULT_TIMEOUT_MS = 15_000;
const MAX_REASON_BYTES = 512;

/**
 * GETs `range` of a stream from a peer's data plane and hands it over one
 * whole chunk at a time (the last chunk of the stream may be short). At most
 * one chunk is buffered. Resolves with the payload bytes when every chunk of
 * the range was delivered; otherwise throws a FetchError (or onChunk's error),
 * and the chunks delivered before stay delivered.
 */
export async function fetchChunks(opts: FetchOptions): Promise<{ bytes: number }> {
  const { start, end } = rangeSpan(opts.range, opts.layout.size, opts.layout.chunkSize);
  if (!(opts.range.first <= opts.range.last) || end <= start) {
    throw new FetchError(
      "failed",
      `range ${opts.range.first}-${opts.range.last} is empty for a ${opts.layout.size}-byte stream`,
    );
  }
  let res: IncomingMessage;
  let req: ClientRequest;
  const idle = new IdleTimer(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    ({ req, res } = await open(opts, idle, true));
  } catch (err) {
    idle.stop();
    throw err;
  }

  try {
    if (res.statusCode !== 200) {
      const reason = await readReason(res, idle);
      const status = res.statusCode ?? 0;
      const kind = status >= 400 && status < 500 ? "refused" : "failed";
      throw new FetchError(kind, `peer answered ${status}${reason ? `: ${reason}` : ""}`, status);
    }
    const expected = end - start;
    const declared = Number(res.headers["content-length"]);
    if (res.headers["content-length"] !== undefined && declared !== expected) {
      throw new FetchError("failed", `peer sent content-length ${declared}, expected ${expected}`, 200);
    }
    return { bytes: await readChunks(opts, res, idle) };
  } catch (err) {
    if (!res.complete) req.destroy(); // never return a half-read socket to the pool
    throw err;
  } finally {
    idle.stop();
  }
}

async function readChunks(opts: FetchOptions, res: IncomingMessage, idle: IdleTimer): Promise<number> {
  const { size, chunkSize } = opts.layout;
  let index = opts.range.first;
  // One buffer per transfer, reused for every chunk once onChunk has settled:
  // no garbage per chunk, so a peer's memory stays flat however much it moves.
  const whole = Buffer.allocUnsafe(Math.min(chunkSize, size - index * chunkSize));
  let span = chunkSpan(index, size, chunkSize);
  let buf = whole.subarray(0, span.end - span.start);
  let filled = 0;
  let delivered = 0;
  const onIdle = () => res.destroy(new FetchError("failed", `no data for ${idle.ms} ms`, 200, delivered));
  idle.arm(onIdle);
  try {
    for await (const piece of res as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < piece.length) {
        if (index > opts.range.last)
          throw new FetchError("failed", "peer sent more bytes than the range holds", 200, delivered);
        const n = Math.min(piece.length - off, buf.length - filled);
        piece.copy(buf, filled, off, off + n);
        filled += n;
        off += n;
        if (filled === buf.length) {
          idle.stop(); // the reader is paused while onChunk runs; that is not the peer's fault
          await opts.onChunk(index, buf);
          delivered += buf.length;
          index++;
          if (opts.signal?.aborted) throw new FetchError("failed", "aborted", 200, delivered);
          if (index <= opts.range.last) {
            span = chunkSpan(index, size, chunkSize);
            buf = whole.subarray(0, span.end - span.start);
            filled = 0;
          }
        }
      }
      idle.arm(onIdle);
    }
  } catch (err) {
    if (err instanceof FetchError) throw withBytes(err, delivered);
    if (opts.signal?.aborted) throw new FetchError("failed", "aborted", 200, delivered);
    if (isTransportError(err)) {
      throw new FetchError("failed", `connection failed mid-body: ${describe(err)}`, 200, delivered);
    }
    throw err; // onChunk's own error
  }
  if (index <= opts.range.last) {
    throw new FetchError(
      "failed",
      `short body: got chunks up to ${index - 1} of ${opts.range.first}-${opts.range.last}`,
      200,
      delivered,
    );
  }
  return delivered;
}

function open(
  opts: FetchOptions,
  idle: IdleTimer,
  mayRetry: boolean,
): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let response: IncomingMessage | undefined;
    const req = request({
      host: opts.host,
      port: opts.port,
      method: "GET",
      path: chunksPath(opts.streamId, opts.range),
      headers: { [TICKET_HEADER]: encodeTicket(opts.ticket) },
      agent: opts.agent,
    });
    // Abort by hand rather than with request({ signal }): that one also destroys a
    // socket already handed back to the keep-alive pool, with nobody listening.
    const onAbort = () => {
      if (!response?.complete) req.destroy(new FetchError("failed", "aborted"));
    };
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.once("close", () => opts.signal?.removeEventListener("abort", onAbort));
    idle.arm(() =>
      req.destroy(new FetchError("failed", `no answer from ${opts.host}:${opts.port} within ${idle.ms} ms`)),
    );
    req.once("response", (res) => {
      settled = true;
      response = res;
      idle.stop();
      resolve({ req, res });
    });
    req.on("error", (err) => {
      if (settled) return;
      settled = true;
      idle.stop();
      // A keep-alive socket the server closed just as we reused it: retry once on a fresh one.
      if (
        mayRetry &&
        req.reusedSocket &&
        (err as NodeJS.ErrnoException).code === "ECONNRESET" &&
        !opts.signal?.aborted
      ) {
        open(opts, idle, false).then(resolve, reject);
        return;
      }
      if (err instanceof FetchError) reject(err);
      else if (opts.signal?.aborted) reject(new FetchError("failed", "aborted"));
      else reject(new FetchError("failed", `cannot fetch from ${opts.host}:${opts.port}: ${describe(err)}`));
    });
    req.end();
  });
}

/** Reads at most a short text reason from an error answer. */
async function readReason(res: IncomingMessage, idle: IdleTimer): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  idle.arm(() => res.destroy());
  try {
    for await (const piece of res as AsyncIterable<Buffer>) {
      if (n < MAX_REASON_BYTES) parts.push(piece.subarray(0, MAX_REASON_BYTES - n));
      n += piece.length;
      if (n > 64 * 1024) break; // not a short reason; stop reading
    }
  } catch {
    // the status says enough
  } finally {
    idle.stop();
  }
  return Buffer.concat(parts)
    .toString("utf8")
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim();
}

function withBytes(err: FetchError, bytes: number): FetchError {
  return err.bytes === bytes ? err : new FetchError(err.kind, err.message, err.status, bytes);
}

function isTransportError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return err.name === "AbortError" || err.message === "aborted" || (typeof code === "string" && /^(E|ERR_)/.test(code));
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}

/** A resettable timer for "no progress for ms". */
class IdleTimer {
  private t: NodeJS.Timeout | undefined;
  private fire: (() => void) | undefined;
  constructor(readonly ms: number) {}
  arm(fire: () => void): void {
    if (this.t && this.fire === fire) {
      this.t.refresh();
      return;
    }
    this.stop();
    this.fire = fire;
    this.t = setTimeout(fire, this.ms);
  }
  stop(): void {
    if (this.t) clearTimeout(this.t);
    this.t = undefined;
  }
}
