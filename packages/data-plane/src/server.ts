import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { pipeline, Readable, Transform, type TransformCallback } from "node:stream";
import {
  checkTicket,
  decodeTicket,
  parseChunksPath,
  PROOF_HEADER,
  rangeSpan,
  rangeWithin,
  TICKET_HEADER,
  TicketError,
} from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime/log";
import type { Registry } from "@distribustream/runtime/metrics";
import { FileRangeReadable, READ_PIECE_BYTES } from "./fileRange.js";
import { dataPlaneMetrics, type DataPlaneMetrics } from "./metrics.js";
import type { RateLimiter } from "./rateLimiter.js";
import { refusalStatusOf, type ChunkSource, type DataPlaneIdentity } from "./source.js";

export interface DataPlaneOptions {
  /** Bind address, e.g. "0.0.0.0". */
  host: string;
  /** Port; 0 picks any free port. */
  port: number;
  source: ChunkSource;
  /** Undefined until the tracker's Welcome; requests meanwhile get 503. */
  identity: () => DataPlaneIdentity | undefined;
  log: Logger;
  registry?: Registry;
  /** How long close() lets responses in flight finish before cutting them (default 5 s). */
  closeGraceMs?: number;
  /** Limits the bytes this peer uploads per second, over all requests. */
  uploadLimiter?: RateLimiter;
}

export interface RunningDataPlane {
  port: number;
  /** Stops accepting, lets responses in flight finish (bounded), then cuts what is left. */
  close(): Promise<void>;
}

/** Keep idle connections between peers open this long (peers fetch range after range). */
const KEEP_ALIVE_MS = 30_000;
/** A request's headers must arrive within this time. */
const HEADERS_TIMEOUT_MS = 10_000;
/** A socket with no traffic in either direction for this long is closed (a stalled reader). */
const SOCKET_IDLE_MS = 120_000;
/** Longest a /live/ request for chunks held but not yet attested waits for their attestations. */
const ATTESTATION_WAIT_MS = 2_000;

/**
 * Serves chunk ranges over HTTP/1.1 (see the wire format in
 * @distribustream/pdtp dataPlane.ts). Every chunk request must carry a ticket
 * signed by the tracker naming this peer, the stream and a range covering the
 * request, and the proof of the fetcher the ticket names (its session key's
 * signature over ticket and range); nothing of a stream is sent otherwise. Checks run in the order
 * ticket (403), stream (404), range (416), so that a caller without a ticket
 * learns nothing about what this peer holds. /chunks/ serves the bytes of
 * any stream (for a live one, what its layout's `span` maps the range onto:
 * the checksum service reads chunks so before they are attested); /live/
 * serves a live stream's chunks framed with their attestations (404 for a
 * file stream).
 */
export async function startDataPlane(opts: DataPlaneOptions): Promise<RunningDataPlane> {
  const metrics = opts.registry ? await dataPlaneMetrics(opts.registry) : undefined;
  const log = opts.log;
  const sockets = new Set<Socket>();

  // no virtual hosts here: a request without Host is answered like any other (node's own 400 says nothing)
  const server: Server = createServer({ requireHostHeader: false }, (req, res) => {
    if (metrics) res.once("close", () => metrics.requests.inc({ code: String(res.statusCode) }));
    try {
      handle(req, res, opts, metrics);
    } catch (err) {
      log.error({ err, url: req.url }, "data-plane request failed");
      if (!res.headersSent) text(res, 500, "internal error");
      else res.destroy();
    }
  });
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  // A GET has no body worth waiting for; bound the whole request read as well.
  server.requestTimeout = HEADERS_TIMEOUT_MS * 2;
  server.setTimeout(SOCKET_IDLE_MS, (socket) => socket.destroy());
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    log.debug({ err: err.message, code: err.code }, "data-plane client error");
    if (socket.writable && !socket.writableEnded && err.code !== "ECONNRESET") {
      const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
      const body = tooLarge ? "request headers too large\n" : "malformed HTTP request\n";
      socket.end(
        `HTTP/1.1 ${tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\n` +
          `content-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy();
  });
  // CONNECT goes to a "connect" listener, not the handler; without one node drops the connection unanswered
  server.on("connect", (req: IncomingMessage, socket: Socket) => {
    const body = `method CONNECT not allowed, use GET\n`;
    socket.on("error", () => socket.destroy());
    socket.end(
      `HTTP/1.1 405 Method Not Allowed\r\nallow: GET\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  // node answers an Expect other than 100-continue with a bare 417; say why, like every refusal
  server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    res.shouldKeepAlive = false;
    text(res, 417, `expectation "${String(req.headers.expect).slice(0, 64)}" not supported`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err }, "data-plane server error"));
  const port = (server.address() as AddressInfo).port;
  log.info({ host: opts.host, port }, "data plane listening");

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, opts.closeGraceMs ?? 5_000);
        cut.unref();
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

function handle(req: IncomingMessage, res: ServerResponse, opts: DataPlaneOptions, metrics?: DataPlaneMetrics): void {
  req.resume(); // a GET carries no body; drain anything sent so keep-alive stays usable
  const url = req.url ?? "/";
  const path = url.split("?")[0] ?? "/";
  if (req.method !== "GET") {
    res.setHeader("allow", "GET");
    return text(res, 405, `method ${req.method ?? "?"} not allowed, use GET`);
  }
  if (path === "/healthz") return text(res, 200, "ok");

  const parsed = parseChunksPath(path);
  if (!parsed.ok)
    return text(res, parsed.error === "unknown path" && !path.startsWith("/pdtp/") ? 404 : 400, parsed.error);
  const { streamId, range } = parsed;

  const me = opts.identity();
  if (!me) {
    res.setHeader("retry-after", "1");
    return text(res, 503, "not yet registered with the tracker");
  }

  const header = req.headers[TICKET_HEADER];
  if (typeof header !== "string" || header.length === 0) return text(res, 403, "missing ticket");
  const proof = req.headers[PROOF_HEADER];
  try {
    checkTicket(decodeTicket(header), me.ticketKeys, {
      serverId: me.peerId,
      streamId,
      range,
      nowMs: Date.now(),
      proof: typeof proof === "string" ? proof : undefined,
    });
  } catch (err) {
    if (err instanceof TicketError) {
      opts.log.debug({ streamId, fault: err.fault, remote: req.socket.remoteAddress }, "ticket refused");
      return text(res, 403, err.message);
    }
    throw err;
  }

  const layout = opts.source.layout(streamId);
  if (!layout) return text(res, 404, "unknown stream");
  if (parsed.kind === "live") {
    // Framed live chunks exist only for live streams; a file stream has no /live/ resource.
    if (layout.kind !== "live") return text(res, 404, "not a live stream");
    const held = opts.source.holds(streamId, range);
    const frames = held ? layout.attested?.(range) : undefined;
    if (frames) return sendFrames(res, frames, streamId, opts, metrics);
    if (!held || !layout.whenAttested) return text(res, 416, "range not held");
    // held, its attestations on their way from the tracker: answered when they come
    void layout.whenAttested(range, ATTESTATION_WAIT_MS).then((later) => {
      if (res.destroyed) return;
      if (!later) return text(res, 416, "range not held");
      sendFrames(res, later, streamId, opts, metrics);
    });
    return;
  }
  let span: { start: number; end: number } | undefined;
  if (layout.kind === "live") {
    span = opts.source.holds(streamId, range) ? layout.span(range) : undefined;
    if (!span) return text(res, 416, "range not held");
  } else {
    if (!rangeWithin(range, layout.chunkCount) || !opts.source.holds(streamId, range)) {
      res.setHeader("content-range", `chunks */${layout.chunkCount}`);
      return text(res, 416, "range not held");
    }
    span = rangeSpan(range, layout.size, layout.chunkSize);
  }
  const { start, end } = span;
  const body = opts.source.read(streamId, start, end);
  const done = (err?: Error | null) => {
    if (err && err.name !== "AbortError" && (err as NodeJS.ErrnoException).code !== "ERR_STREAM_PREMATURE_CLOSE") {
      opts.log.warn({ err: err.message, streamId, start, end }, "data-plane read failed");
    }
  };
  // A read refused before any byte (a relayed origin that changed, a published file that did) is
  // answered with its status; a failure later cuts the response (the fetcher sees a short body).
  const failed = (err: Error) => {
    const status = refusalStatusOf(err);
    if (status !== undefined && !res.headersSent) {
      // the reason stays in the log: it may name an origin URL
      opts.log.info({ streamId, status, reason: err.message }, "data-plane read refused");
      return text(res, status, status === 404 ? "unknown stream: no longer served here" : "range not held");
    }
    done(err);
    res.destroy();
  };
  const head = () =>
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(end - start),
      "cache-control": "no-store",
    });
  if (body instanceof FileRangeReadable) {
    const piece = pieceMeter(streamId, opts, metrics);
    // the connection's close, which a pipelined response still queued behind another never hears
    const connection = new AbortController();
    const closed = () => connection.abort();
    req.socket.once("close", closed);
    body
      .sendTo(res, { head, signal: connection.signal, ...(piece ? { piece } : {}) })
      .finally(() => req.socket.off("close", closed))
      .then(
        () => res.end(),
        (err: Error) => failed(err),
      );
    return;
  }
  // The head waits for the read's first bytes, so that a read refused before
  // any is answered with its status.
  const refused = (err: Error) => {
    body.off("readable", send);
    res.off("close", gone);
    failed(err);
  };
  const gone = () => body.destroy();
  const send = () => {
    body.off("error", refused);
    res.off("close", gone);
    head();
    // pipeline destroys the read when the fetcher goes away, and the
    // response when the read fails (the fetcher then sees a short body).
    sendBody(body, res, streamId, opts, metrics, done);
  };
  body.once("error", refused);
  body.once("readable", send);
  res.once("close", gone);
}

/** Answers a /live/ request with the frames the live layout holds, in memory: nothing to wait for. */
function sendFrames(
  res: ServerResponse,
  frames: readonly Buffer[],
  streamId: string,
  opts: DataPlaneOptions,
  metrics: DataPlaneMetrics | undefined,
): void {
  let length = 0;
  for (const f of frames) length += f.length;
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": String(length),
    "cache-control": "no-store",
  });
  const done = (err?: Error | null) => {
    if (err && err.name !== "AbortError" && (err as NodeJS.ErrnoException).code !== "ERR_STREAM_PREMATURE_CLOSE") {
      opts.log.warn({ err: err.message, streamId }, "data-plane live send failed");
    }
  };
  sendBody(Readable.from(frames, { objectMode: false }), res, streamId, opts, metrics, done);
}

/** Streams a 200's body with backpressure, counted and held to the upload rate. */
function sendBody(
  body: Readable,
  res: ServerResponse,
  streamId: string,
  opts: DataPlaneOptions,
  metrics: DataPlaneMetrics | undefined,
  done: (err?: Error | null) => void,
): void {
  const piece = pieceMeter(streamId, opts, metrics);
  if (!piece) pipeline(body, res, done);
  else pipeline(body, meter(piece), res, done);
}

/**
 * What each piece sent goes through: counted, then held until the upload
 * rate allows it (undefined when there is neither a counter nor a rate).
 */
function pieceMeter(
  streamId: string,
  opts: DataPlaneOptions,
  metrics: DataPlaneMetrics | undefined,
): ((bytes: number) => Promise<void> | undefined) | undefined {
  const sent = metrics?.sentBytes.labels({ stream: metrics.streamLabel(streamId) });
  const limiter = opts.uploadLimiter;
  if (!sent && !limiter) return undefined;
  return (bytes) => {
    sent?.inc(bytes);
    return limiter?.take(bytes);
  };
}

/** A stream stage applying `piece` to each piece that passes. */
function meter(piece: (bytes: number) => Promise<void> | undefined): Transform {
  return new Transform({
    highWaterMark: READ_PIECE_BYTES,
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      const held = piece(chunk.length);
      if (!held) return cb(null, chunk);
      held.then(() => cb(null, chunk), cb);
    },
  });
}

function text(res: ServerResponse, code: number, message: string): void {
  const body = `${message}\n`;
  res.writeHead(code, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}
