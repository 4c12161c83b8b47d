import {
  chunkSpan,
  chunksPath,
  encodeTicket,
  fetchProof,
  joinHostPort,
  LIVE_FRAME_PREFIX_BYTES,
  LiveChunkError,
  liveChunksPath,
  MAX_ATTESTATION_BYTES,
  MAX_CHUNK_SIZE,
  PROOF_HEADER,
  rangeSpan,
  SignedLiveAttestation,
  TICKET_HEADER,
} from "@distribustream/pdtp";
import type { ChunkRange, Signer, SignedTicket } from "@distribustream/pdtp";
import { Connection, DataPlaneAgent, type ConnectionUser } from "./agent.js";
import { parseResponseHead, ResponseHeadError } from "./responseHead.js";

/** What every fetch names: the peer, the stream and range, the ticket, and how long to wait. */
export interface FetchRequestOptions {
  host: string;
  port: number;
  streamId: string;
  range: ChunkRange;
  ticket: SignedTicket;
  /** The fetcher's session key (its Hello.peer_key), to prove the ticket is its own; tickets naming a fetcher key need it. */
  sessionKey?: Signer;
  signal?: AbortSignal;
  /** Keep-alive pool shared per process (see keepAliveAgent); without one, each fetch uses its own connection. */
  agent?: DataPlaneAgent;
  /** Longest wait for the next bytes (connect, headers, body); default 15 s. Time spent in onChunk does not count. */
  timeoutMs?: number;
}

export interface FetchOptions extends FetchRequestOptions {
  /**
   * How the range's chunks map onto bytes: a file's size and chunk size, or
   * for a live stream the attested length of each chunk of the range, in order.
   */
  layout: { size: number; chunkSize: number } | { lengths: readonly number[] };
  /**
   * Called with each whole chunk in order; the next bytes are not read until
   * it resolves (backpressure). `data` is reused for the next chunk once the
   * returned promise settles: copy it to keep it. If it throws, the transfer stops and fetchChunks rejects with that same error.
   */
  onChunk: (index: number, data: Buffer) => Promise<void> | void;
}

export interface LiveFetchOptions extends FetchRequestOptions {
  /** Longest chunk taken (the live descriptor's maxChunkBytes): bounds the one chunk buffer and each frame. */
  maxChunkBytes: number;
  /**
   * Called with the attestation framed with chunk `seq` (seqs come in order,
   * range.first to range.last) before its bytes are read: returns the chunk's
   * length, e.g. `verifier.open(signed, seq).length`, or throws (e.g.
   * LiveChunkError), and then the transfer stops and fetchLiveChunks rejects
   * with that same error.
   */
  onAttestation: (seq: number, signed: SignedLiveAttestation) => number;
  /**
   * Called with each whole chunk in order, of the length onAttestation gave;
   * as FetchOptions.onChunk (backpressure, `data` reused, a throw stops the
   * transfer with that error). Hash here, once: `verifier.accept(att, data)`.
   */
  onChunk: (seq: number, data: Buffer) => Promise<void> | void;
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

/** A keep-alive pool for the data plane: up to 8 idle connections per peer, closed after 25 s idle (the server keeps them 30 s). */
export function keepAliveAgent(): DataPlaneAgent {
  return new DataPlaneAgent();
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** A chunk's rest is read in place (see Exchange.readTarget) when at least this long; shorter rests are read with what follows. */
const MIN_DIRECT_READ_BYTES = 64 * 1024;
/** The response head (status line and headers) must fit in this much. */
const MAX_HEAD_BYTES = 16 * 1024;
/** Of an error answer's body, this much becomes the error's reason. */
const MAX_REASON_BYTES = 512;
/** An error answer's body is read (to reuse the connection) up to this much; beyond, the connection is closed. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * GETs `range` of a stream from a peer's data plane and hands it over one
 * whole chunk at a time (the last chunk of the stream may be short). At most
 * one chunk is buffered. Resolves with the payload bytes when every chunk of
 * the range was delivered; otherwise throws a FetchError (or onChunk's error),
 * and the chunks delivered before stay delivered.
 *
 * Reads land in the transfer's one chunk buffer, straight from the socket
 * where they can (see Exchange.readTarget), else through the process's one
 * shared read buffer: in the steady state no chunk data is allocated per read
 * or chunk.
 */
export async function fetchChunks(opts: FetchOptions): Promise<{ bytes: number }> {
  const bytes = rangeBytes(opts);
  if (!(opts.range.first <= opts.range.last) || bytes <= 0) {
    const what = "lengths" in opts.layout ? `does not fit its ${opts.layout.lengths.length} chunk lengths` : "is empty";
    throw new FetchError("failed", `range ${opts.range.first}-${opts.range.last} ${what}`);
  }
  if (opts.signal?.aborted) throw new FetchError("failed", "aborted");
  const request = requestHead(opts, chunksPath(opts.streamId, opts.range));
  return { bytes: await exchange(opts, request, new ChunkSink(opts, bytes)) };
}

/**
 * GETs `range` of a live stream from a peer's data plane as frames (see
 * @distribustream/pdtp dataPlane.ts): for each chunk in order, hands its
 * attestation to onAttestation, which gives the chunk's length, then the
 * chunk's bytes to onChunk. At most one chunk is buffered, in one buffer of
 * at most maxChunkBytes. Resolves with the payload bytes (the chunks', not the
 * frames') when every chunk of the range was delivered. Otherwise throws
 * onAttestation's or onChunk's error; a LiveChunkError("bad-signature") for an
 * attestation that does not decode (the peer sent something no attestation
 * key signed: count it as the verifier's rejections are counted); or a
 * FetchError, "failed" for a bad frame (an attestation prefix of 0 or over
 * MAX_ATTESTATION_BYTES, a chunk over maxChunkBytes, a body that ends inside a
 * frame or goes on after the last) as for any other bad body. The chunks
 * delivered before stay delivered.
 */
export async function fetchLiveChunks(opts: LiveFetchOptions): Promise<{ bytes: number }> {
  const { first, last } = opts.range;
  if (!(Number.isSafeInteger(first) && Number.isSafeInteger(last) && first >= 0 && first <= last)) {
    throw new FetchError("failed", `range ${first}-${last} is not a range of sequence numbers`);
  }
  const max = opts.maxChunkBytes;
  if (!(Number.isSafeInteger(max) && max >= 1 && max <= MAX_CHUNK_SIZE)) {
    throw new FetchError("failed", `maxChunkBytes ${max} is not between 1 and ${MAX_CHUNK_SIZE}`);
  }
  if (opts.signal?.aborted) throw new FetchError("failed", "aborted");
  const request = requestHead(opts, liveChunksPath(opts.streamId, opts.range));
  return { bytes: await exchange(opts, request, new FrameSink(opts)) };
}

/** Runs one request; a keep-alive connection the peer closed just as we reused it gets one more try on a fresh one. */
async function exchange(opts: FetchRequestOptions, request: string, sink: BodySink): Promise<number> {
  try {
    return await new Exchange(opts, connection(opts, false), request, sink).run();
  } catch (err) {
    if (!(err instanceof StaleConnection)) throw err;
    return await new Exchange(opts, connection(opts, true), request, sink).run();
  }
}

/** Payload bytes of the whole range; -1 when the live lengths do not match the range. */
function rangeBytes(opts: FetchOptions): number {
  const layout = opts.layout;
  if (!("lengths" in layout)) {
    const { start, end } = rangeSpan(opts.range, layout.size, layout.chunkSize);
    return end - start;
  }
  if (layout.lengths.length !== opts.range.last - opts.range.first + 1) return -1;
  let sum = 0;
  for (const n of layout.lengths) {
    if (!(Number.isSafeInteger(n) && n > 0)) return -1;
    sum += n;
  }
  return sum;
}

function connection(opts: FetchRequestOptions, fresh: boolean): Connection {
  if (opts.agent) return opts.agent.acquire(opts.host, opts.port, fresh);
  return new Connection(`${opts.host}:${opts.port}`, opts.host, opts.port, () => {});
}

function requestHead(opts: FetchRequestOptions, path: string): string {
  return (
    `GET ${path} HTTP/1.1\r\n` +
    `Host: ${joinHostPort(opts.host, opts.port)}\r\n` +
    `${TICKET_HEADER}: ${encodeTicket(opts.ticket)}\r\n` +
    (opts.sessionKey ? `${PROOF_HEADER}: ${fetchProof(opts.ticket, opts.range, opts.sessionKey)}\r\n` : "") +
    `Connection: keep-alive\r\n\r\n`
  );
}

/**
 * Where a 200's body goes, one part at a time. The exchange copies body bytes
 * into `view` from `filled` on; when the view is full, `step` says whether a
 * whole chunk is there (the exchange stops reading, awaits `deliver`, then
 * calls `advance`) or the sink moved on to its next part. `begin`, `step` and
 * `advance` throw (a FetchError, or the caller's error) to stop the transfer.
 */
interface BodySink {
  /** The chunk being read. */
  readonly index: number;
  /** Payload bytes of the chunks onChunk has taken. */
  readonly delivered: number;
  readonly view: Buffer;
  filled: number;
  readonly done: boolean;
  /** A 200 with this content-length came: throws when it cannot carry the range. */
  begin(contentLength: number): void;
  step(): boolean;
  /** Hands the whole chunk in `view` to onChunk. */
  deliver(): Promise<void> | void;
  /** The chunk was delivered: move on to the next. */
  advance(): void;
}

/** Raw chunks, back to back: one buffer per transfer, handed to onChunk once per whole chunk. */
class ChunkSink implements BodySink {
  index: number;
  delivered = 0;
  filled = 0;
  private whole: Buffer | undefined;
  private short: Buffer | undefined;
  private current: Buffer | undefined;

  constructor(
    private readonly opts: FetchOptions,
    /** Bytes of the whole range. */
    private readonly expected: number,
  ) {
    this.index = opts.range.first;
  }

  begin(contentLength: number): void {
    if (contentLength !== this.expected) {
      throw new FetchError("failed", `peer sent content-length ${contentLength}, expected ${this.expected}`, 200);
    }
  }

  /** The view is always a whole chunk. */
  step(): boolean {
    return true;
  }

  deliver(): Promise<void> | void {
    return this.opts.onChunk(this.index, this.view);
  }

  /** The chunk being filled; allocates the transfer's buffer on first use. */
  get view(): Buffer {
    if (!this.current) {
      const layout = this.opts.layout;
      this.whole = Buffer.allocUnsafe(
        "lengths" in layout
          ? layout.lengths.reduce((a, b) => Math.max(a, b), 0)
          : Math.min(layout.chunkSize, layout.size - this.opts.range.first * layout.chunkSize),
      );
      this.current = this.viewOf(this.index);
    }
    return this.current;
  }

  get done(): boolean {
    return this.index > this.opts.range.last;
  }

  /** The current chunk was delivered: move to the next one. */
  advance(): void {
    this.delivered += this.view.length;
    this.index++;
    this.filled = 0;
    if (!this.done) this.current = this.viewOf(this.index);
  }

  private viewOf(index: number): Buffer {
    const layout = this.opts.layout;
    const whole = this.whole!;
    if ("lengths" in layout) {
      // Live chunks have their own lengths: a view of the one buffer each.
      const n = layout.lengths[index - this.opts.range.first]!;
      return n === whole.length ? whole : whole.subarray(0, n);
    }
    const { start, end } = chunkSpan(index, layout.size, layout.chunkSize);
    if (end - start === whole.length) return whole;
    // Only the stream's last chunk is shorter: one view, made once.
    this.short ??= whole.subarray(0, end - start);
    return this.short;
  }
}

const enum FramePart {
  Prefix,
  Attestation,
  Data,
}

/**
 * Live frames: each chunk's attestation prefix, its attestation, then its
 * bytes. The prefix and attestation land in one small buffer, the bytes in
 * one chunk buffer, grown (up to maxChunkBytes) only when a longer chunk
 * comes. Nothing is read past what the content-length announced.
 */
class FrameSink implements BodySink {
  index: number;
  delivered = 0;
  filled = 0;
  view: Buffer;
  private part = FramePart.Prefix;
  /** Body bytes the content-length leaves after the current view. */
  private left = 0;
  private readonly head = Buffer.allocUnsafe(LIVE_FRAME_PREFIX_BYTES + MAX_ATTESTATION_BYTES);
  private readonly prefix: Buffer;
  private chunk: Buffer | undefined;

  constructor(private readonly opts: LiveFetchOptions) {
    this.index = opts.range.first;
    this.prefix = this.head.subarray(0, LIVE_FRAME_PREFIX_BYTES);
    this.view = this.prefix;
  }

  get done(): boolean {
    return this.index > this.opts.range.last;
  }

  begin(contentLength: number): void {
    const count = this.opts.range.last - this.opts.range.first + 1;
    const most = count * (LIVE_FRAME_PREFIX_BYTES + MAX_ATTESTATION_BYTES + this.opts.maxChunkBytes);
    if (contentLength > most) {
      throw new FetchError(
        "failed",
        `peer sent content-length ${contentLength}, over the ${most} bytes ${count} live frames may take`,
        200,
      );
    }
    this.left = contentLength;
    this.next(FramePart.Prefix, this.prefix);
  }

  step(): boolean {
    switch (this.part) {
      case FramePart.Prefix: {
        const n = this.prefix.readUInt16BE(0);
        if (n < 1 || n > MAX_ATTESTATION_BYTES) {
          throw new FetchError(
            "failed",
            `frame of chunk ${this.index} announces an attestation of ${n} bytes, expected 1 to ${MAX_ATTESTATION_BYTES}`,
            200,
          );
        }
        this.next(FramePart.Attestation, this.head.subarray(LIVE_FRAME_PREFIX_BYTES, LIVE_FRAME_PREFIX_BYTES + n));
        return false;
      }
      case FramePart.Attestation: {
        let signed: SignedLiveAttestation;
        try {
          signed = SignedLiveAttestation.decode(this.view);
        } catch (err) {
          throw new LiveChunkError(
            "bad-signature",
            `attestation of chunk ${this.index} does not decode: ${(err as Error).message}`,
          );
        }
        const length = this.opts.onAttestation(this.index, signed);
        const max = this.opts.maxChunkBytes;
        if (!(Number.isSafeInteger(length) && length >= 1 && length <= max)) {
          throw new FetchError(
            "failed",
            `frame of chunk ${this.index} announces ${length} bytes, expected 1 to maxChunkBytes ${max}`,
            200,
          );
        }
        let chunk = this.chunk;
        if (!chunk || chunk.length < length) {
          // Chunks are delivered and released before the next one is read: the old buffer is free.
          chunk = this.chunk = Buffer.allocUnsafe(Math.min(max, Math.max(length, (chunk?.length ?? 0) * 2)));
        }
        this.next(FramePart.Data, length === chunk.length ? chunk : chunk.subarray(0, length));
        return false;
      }
      case FramePart.Data:
        return true;
    }
  }

  deliver(): Promise<void> | void {
    return this.opts.onChunk(this.index, this.view);
  }

  advance(): void {
    this.delivered += this.view.length;
    this.index++;
    if (!this.done) return this.next(FramePart.Prefix, this.prefix);
    if (this.left > 0) {
      throw new FetchError("failed", `peer sent content-length for ${this.left} bytes after the last frame`, 200);
    }
  }

  /** Reads `view` next: throws when the content-length leaves less than it. */
  private next(part: FramePart, view: Buffer): void {
    if (view.length > this.left) {
      throw new FetchError(
        "failed",
        `short body: it ends inside the frame of chunk ${this.index} of ${this.opts.range.first}-${this.opts.range.last}`,
        200,
      );
    }
    this.left -= view.length;
    this.part = part;
    this.view = view;
    this.filled = 0;
  }
}

/** A reused connection failed before any answer: fetchChunks retries once on a fresh one. */
class StaleConnection extends Error {}

const enum Phase {
  Head,
  Body,
  ErrorBody,
  Done,
}

/** One request/response on one connection. */
class Exchange implements ConnectionUser {
  private phase = Phase.Head;
  private headBytes = 0;
  private answered = false;
  private status = 0;
  private keepAlive = false;
  private bodyLength = -1;
  private errorBodyBytes = 0;
  private reasonBytes = 0;
  /** Bytes past a chunk boundary, kept in the connection's scratch buffer while onChunk runs. */
  private carryStart = 0;
  private carryEnd = 0;
  private delivering = false;
  /** The buffer readTarget gave for the next read. */
  private target: Buffer | undefined;
  private failure: unknown;
  private timer: NodeJS.Timeout | undefined;
  private resolve: (bytes: number) => void = () => {};
  private reject: (err: unknown) => void = () => {};
  private readonly peer: string;

  constructor(
    private readonly opts: FetchRequestOptions,
    private readonly conn: Connection,
    private readonly request: string,
    private readonly sink: BodySink,
  ) {
    this.peer = `${opts.host}:${opts.port}`;
  }

  run(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.conn.attach(this);
      this.opts.signal?.addEventListener("abort", this.onAbort, { once: true });
      this.timer = setTimeout(this.onIdle, this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      if (this.opts.signal?.aborted) return this.onAbort(); // aborted before a retry
      this.conn.socket.write(this.request);
    });
  }

  onBytes(buf: Buffer, n: number): void {
    if (this.phase === Phase.Done || this.failure !== undefined) return;
    this.answered = true;
    this.timer?.refresh();
    if (buf === this.target) {
      // read in place, into the rest of the chunk being filled
      this.target = undefined;
      const sink = this.sink;
      sink.filled += n;
      if (sink.filled === sink.view.length && this.viewFull()) this.startDelivery();
      return;
    }
    let off = 0;
    if (this.phase === Phase.Head) {
      off = this.readHead(buf, n);
      if (off < 0) return;
    }
    if (this.phase === Phase.ErrorBody) this.readErrorBody(buf, off, n);
    else if (this.phase === Phase.Body && this.fill(buf, off, n)) this.startDelivery();
  }

  /**
   * The rest of the chunk being filled, when the next bytes of the body can
   * only be its own (nothing is being delivered or kept in scratch) and it is
   * big enough to be worth a read of its own: the kernel copies them there,
   * and there is no copy out of the shared read buffer. The range's last
   * byte is left to the shared buffer, so that bytes a peer sends past the
   * range arrive with it and fail this transfer (see fill) instead of waiting
   * in the socket for the next request on the connection.
   *
   * Safe because `filled` and `delivering` change only in this exchange's
   * read callbacks and deliveries, never between this call and the read
   * that fills the target.
   */
  readTarget(): Buffer | undefined {
    this.target = undefined;
    if (this.phase !== Phase.Body || this.delivering || this.failure !== undefined) return undefined;
    const sink = this.sink;
    if (sink.done) return undefined;
    const end = sink.index === this.opts.range.last ? sink.view.length - 1 : sink.view.length;
    if (end - sink.filled < MIN_DIRECT_READ_BYTES) return undefined;
    this.target = sink.view.subarray(sink.filled, end);
    return this.target;
  }

  onEnd(): void {
    this.lost(undefined, false);
  }

  onError(err: Error): void {
    this.lost(err, true);
  }

  onClose(): void {
    this.lost(undefined, true);
  }

  /** The peer ended its side (`closed` false), or the connection broke or was closed, before the response was complete. */
  private lost(err: Error | undefined, closed: boolean): void {
    if (this.phase === Phase.Done || this.failure !== undefined) return;
    const why = err ? describe(err) : "connection closed";
    switch (this.phase) {
      case Phase.ErrorBody:
        this.keepAlive = false;
        return this.refuse();
      case Phase.Head:
        if (!this.answered && this.conn.reused && !this.opts.signal?.aborted) {
          return this.fail(new StaleConnection(why));
        }
        return this.fail(
          new FetchError(
            "failed",
            err ? `cannot fetch from ${this.peer}: ${why}` : `${this.peer} closed the connection before answering`,
          ),
        );
      case Phase.Body:
        return this.fail(
          closed
            ? new FetchError("failed", `connection ${err ? "failed" : "closed"} mid-body${err ? `: ${why}` : ""}`, 200)
            : new FetchError(
                "failed",
                `short body: got chunks up to ${this.sink.index - 1} of ${this.opts.range.first}-${this.opts.range.last}`,
                200,
              ),
        );
    }
  }

  private readonly onIdle = (): void => {
    if (this.delivering) return; // onChunk's time is not the peer's fault; refreshed when it settles
    const ms = this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (this.phase === Phase.ErrorBody) {
      this.keepAlive = false;
      this.refuse();
    } else if (this.phase === Phase.Head) {
      this.fail(new FetchError("failed", `no answer from ${this.peer} within ${ms} ms`));
    } else {
      this.fail(new FetchError("failed", `no data for ${ms} ms`, 200));
    }
  };

  private readonly onAbort = (): void => {
    this.fail(new FetchError("failed", "aborted", this.status || undefined));
  };

  /** Copies head bytes into scratch; returns where the body starts in `buf`, or -1 while the head is incomplete (or bad). */
  private readHead(buf: Buffer, n: number): number {
    const head = this.conn.scratch;
    const before = this.headBytes;
    const take = Math.min(n, MAX_HEAD_BYTES - before);
    buf.copy(head, before, 0, take);
    this.headBytes += take;
    const endsAt = headEnd(head, Math.max(0, before - 3), this.headBytes);
    if (endsAt < 0) {
      if (this.headBytes >= MAX_HEAD_BYTES) {
        this.fail(new FetchError("failed", `${this.peer} sent a response head over ${MAX_HEAD_BYTES} bytes`));
      }
      return -1;
    }
    let parsed;
    try {
      parsed = parseResponseHead(head.toString("latin1", 0, endsAt - 4));
    } catch (err) {
      if (!(err instanceof ResponseHeadError)) throw err;
      this.fail(new FetchError("failed", `${this.peer} sent a bad response: ${err.message}`));
      return -1;
    }
    this.status = parsed.status;
    this.keepAlive = parsed.keepAlive;
    const bodyStart = endsAt - before;
    if (parsed.status !== 200) {
      if (bodyStart < n && parsed.contentLength === 0) this.keepAlive = false; // bytes past an empty answer
      if (parsed.status < 200 || parsed.status === 204 || parsed.status === 304 || parsed.chunked) {
        // no body to read through (or one framed in a way not read here)
        this.keepAlive = parsed.status >= 200 && parsed.contentLength === 0 && !parsed.chunked && this.keepAlive;
        this.refuse();
        return -1;
      }
      this.phase = Phase.ErrorBody;
      this.bodyLength = parsed.contentLength ?? -1;
      if (this.bodyLength < 0) this.keepAlive = false; // delimited by the close
      if (this.bodyLength === 0) {
        this.refuse();
        return -1;
      }
      return bodyStart;
    }
    if (parsed.chunked) {
      this.fail(new FetchError("failed", `${this.peer} sent a chunked body; the data plane sends content-length`, 200));
    } else if (parsed.contentLength === undefined) {
      this.fail(new FetchError("failed", `${this.peer} sent no content-length`, 200));
    } else {
      try {
        this.sink.begin(parsed.contentLength);
      } catch (err) {
        this.fail(err);
        return -1;
      }
      this.phase = Phase.Body;
      this.bodyLength = parsed.contentLength;
      return bodyStart;
    }
    return -1;
  }

  /** Reads an error answer's body (keeping the start as the reason) so the connection can be reused. */
  private readErrorBody(buf: Buffer, off: number, end: number): void {
    let take = end - off;
    if (this.bodyLength >= 0 && take > this.bodyLength - this.errorBodyBytes) {
      take = this.bodyLength - this.errorBodyBytes;
      this.keepAlive = false; // bytes past the answer: do not trust this connection
    }
    const keep = Math.min(take, MAX_REASON_BYTES - this.reasonBytes);
    if (keep > 0) this.reasonBytes += buf.copy(this.conn.scratch, this.reasonBytes, off, off + keep);
    this.errorBodyBytes += take;
    if (this.bodyLength >= 0 && this.errorBodyBytes === this.bodyLength) {
      this.refuse();
    } else if (this.errorBodyBytes >= MAX_ERROR_BODY_BYTES) {
      this.keepAlive = false; // not a short reason; stop reading
      this.refuse();
    }
  }

  /** Settles with the peer's non-200 answer. */
  private refuse(): void {
    const status = this.status;
    const reason = this.conn.scratch
      .toString("utf8", 0, this.reasonBytes)
      .replace(/[^\x20-\x7e]+/g, " ")
      .trim();
    const kind = status >= 400 && status < 500 ? "refused" : "failed";
    this.complete(new FetchError(kind, `peer answered ${status}${reason ? `: ${reason}` : ""}`, status));
  }

  /**
   * Copies body bytes into the sink. Returns true when a chunk is whole; the
   * bytes after it are then kept in scratch (from `carryStart`).
   */
  private fill(src: Buffer, off: number, end: number): boolean {
    const sink = this.sink;
    while (off < end) {
      if (sink.done) {
        this.fail(new FetchError("failed", "peer sent more bytes than the range holds", 200));
        return false;
      }
      const view = sink.view;
      const n = Math.min(end - off, view.length - sink.filled);
      src.copy(view, sink.filled, off, off + n);
      sink.filled += n;
      off += n;
      if (sink.filled === view.length) {
        if (!this.viewFull()) {
          if (this.failure !== undefined) return false;
          continue; // a live frame's prefix or attestation: read on
        }
        if (src === this.conn.scratch) {
          this.carryStart = off;
          this.carryEnd = end;
        } else {
          this.carryStart = 0;
          this.carryEnd = off < end ? src.copy(this.conn.scratchFor(end - off), 0, off, end) : 0;
        }
        return true;
      }
    }
    return false;
  }

  /**
   * The sink's view was just filled: true when that is a whole chunk to
   * deliver; false when the sink moved on to its next part (a live frame's
   * prefix or attestation), or failed (then the exchange failed too).
   */
  private viewFull(): boolean {
    try {
      return this.sink.step();
    } catch (err) {
      this.fail(err);
      return false;
    }
  }

  /** A chunk is full: stop reading until onChunk settles. */
  private startDelivery(): void {
    this.conn.socket.pause();
    this.delivering = true;
    this.deliver().catch(this.onChunkError);
  }

  private readonly onChunkError = (err: unknown): void => {
    this.delivering = false;
    this.conn.destroy();
    this.settle(err); // unchanged
  };

  private async deliver(): Promise<void> {
    const sink = this.sink;
    const scratch = this.conn.scratch;
    for (;;) {
      const pending = sink.deliver();
      if (pending) await pending;
      sink.advance();
      if (this.failure === undefined && this.opts.signal?.aborted) this.onAbort();
      if (this.failure !== undefined) {
        this.delivering = false;
        this.settle(this.failure);
        return;
      }
      const from = this.carryStart;
      const to = this.carryEnd;
      this.carryStart = this.carryEnd = 0;
      if (sink.done) {
        if (from < to) this.fill(scratch, from, to); // fails: more bytes than the range
        this.delivering = false;
        if (this.failure !== undefined) this.settle(this.failure);
        else this.complete(undefined);
        return;
      }
      if (!(from < to && this.fill(scratch, from, to))) break;
    }
    this.delivering = false;
    if (this.failure !== undefined) return this.settle(this.failure); // a bad frame in the bytes kept
    this.timer?.refresh();
    this.conn.socket.resume();
  }

  /** Stops the exchange for `err`: closes the connection now, settles once onChunk is not running. */
  private fail(err: unknown): void {
    if (this.phase === Phase.Done || this.failure !== undefined) return;
    this.failure = err;
    this.conn.destroy();
    if (!this.delivering) this.settle(err);
  }

  /** The response was read to its end: the connection may serve another request. */
  private complete(err: FetchError | undefined): void {
    this.phase = Phase.Done;
    this.cleanup();
    if (this.opts.agent) this.opts.agent.release(this.conn, this.keepAlive);
    else this.conn.destroy();
    if (err) this.reject(err);
    else this.resolve(this.sink.delivered);
  }

  private settle(err: unknown): void {
    this.phase = Phase.Done;
    this.cleanup();
    if (this.opts.agent) this.opts.agent.release(this.conn, false);
    this.reject(err instanceof FetchError ? withBytes(err, this.sink.delivered) : err);
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    this.conn.detach();
  }
}

/** Index just past the first CRLFCRLF in buf[from, to), or -1. */
function headEnd(buf: Buffer, from: number, to: number): number {
  for (let i = from + 3; i < to; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i + 1;
  }
  return -1;
}

function withBytes(err: FetchError, bytes: number): FetchError {
  return err.bytes === bytes ? err : new FetchError(err.kind, err.message, err.status, bytes);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}
