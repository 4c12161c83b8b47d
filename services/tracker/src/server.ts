import * as grpc from "@grpc/grpc-js";
import {
  MalformedMessage,
  tolerantService,
  TrackerService,
  joinHostPort,
  type DescribeStreamRequest,
  type GetHashPiecesRequest,
  type GetHashPiecesResponse,
  type ListStreamsResponse,
  type PeerMessage,
  type StreamDescriptor,
  type TrackerMessage,
} from "@distribustream/pdtp";
import {
  Health,
  resourceExhausted,
  serverCredentials,
  unavailable,
  type Logger,
  type PublicError,
  type ServerTls,
} from "@distribustream/runtime";
import { LogThrottle, PeerLimits, type PeerLimitOptions, type Refusal } from "./limits.js";
import type { TrackerMetrics } from "./metrics.js";
import { hostFromPeer } from "./peerAddress.js";
import { toPeerStatus } from "./peerErrors.js";
import type { Session } from "./session.js";
import { dropAnswersAfterStatus } from "./statusGuard.js";

export const TRACKER_SERVICE_NAME = "pdtp.v1.Tracker";
/**
 * Largest message a peer may send. The largest legitimate one is a Have or a
 * Join with the most ranges validate.ts accepts (MAX_RANGES = 4096): a range
 * of chunk numbers below 2^32 encodes in at most 14 bytes, 56 KiB in all;
 * dsclient keeps its messages under 32 KiB. Manifests only flow outwards.
 */
export const MAX_PEER_MESSAGE_BYTES = 64 * 1024;
/**
 * A connection with no call open for this long is closed (GOAWAY; a client's channel
 * reconnects when it next calls). Without it a client that ended its sessions but kept
 * its connection, as a pooled or long-running client does, held the tracker's native
 * HTTP/2 state (about 20 KiB per connection) for as long as it pinged: the soak's
 * tracker RSS grew with every connection its churn left behind.
 */
export const CONNECTION_IDLE_MS = 60_000;
/** How often addresses with no session and a full bucket are dropped from the limits table. */
const LIMITS_SWEEP_MS = 5_000;

export type SessionCall = grpc.ServerDuplexStream<PeerMessage | MalformedMessage, TrackerMessage>;

export interface TrackerServerOptions {
  host: string;
  port: number;
  tls?: ServerTls | undefined;
  /** Also listen in plaintext on 127.0.0.1 (any free port). */
  plaintextLoopback?: boolean | undefined;
  /** Largest inbound gRPC message. */
  maxMessageBytes: number;
  /** A connection with no call for this long is closed (default CONNECTION_IDLE_MS). */
  connectionIdleMs?: number | undefined;
  limits: PeerLimitOptions;
  metrics: TrackerMetrics;
  log: Logger;
}

/** What the PDTP service does with the calls the server admits. */
export interface TrackerHandlers {
  /** A new Session call: its Session (which takes the call's events from here on). */
  session(call: SessionCall): Session;
  describeStream(req: DescribeStreamRequest | MalformedMessage): Promise<StreamDescriptor>;
  listStreams(req: unknown): Promise<ListStreamsResponse>;
  hashPieces(req: GetHashPiecesRequest | MalformedMessage): Promise<GetHashPiecesResponse>;
}

/** What drain stops, in order, around the gRPC server's own shutdown. */
export interface DrainSteps {
  /** Stops the tracker's work and ends its sessions (before the server shuts down). */
  stopWork(): Promise<void>;
  /** Closes the clients of other services (once no call is left). */
  closeClients(): void;
}

/**
 * The PDTP gRPC server and its lifecycle: binds the port(s) with the
 * service and gRPC health, admits calls under the per-address limits,
 * answers every failure through toPeerStatus, and drains.
 */
export class TrackerServer {
  /** SERVING once started; NOT_SERVING while draining (or while the store does not answer). */
  readonly health = new Health([TRACKER_SERVICE_NAME]);
  private readonly server: grpc.Server;
  private readonly limits: PeerLimits;
  private readonly limitLog = new LogThrottle();
  private limitsSweep: NodeJS.Timeout | undefined;
  private drainingNow = false;
  private stoppingNow = false;

  constructor(
    private readonly o: TrackerServerOptions,
    private readonly handlers: TrackerHandlers,
  ) {
    if (o.connectionIdleMs !== undefined && !(o.connectionIdleMs >= 100)) {
      // shorter would close a connection before its first call arrives
      throw new Error(`connectionIdleMs must be at least 100 ms, not ${o.connectionIdleMs}`);
    }
    this.limits = new PeerLimits(o.limits);
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": o.maxMessageBytes,
      // ping idle connections so dead sessions are noticed; grpc-js servers
      // accept client pings at any rate, so clients pinging every >= 10 s are fine
      "grpc.keepalive_time_ms": 20_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.max_connection_idle_ms": o.connectionIdleMs ?? CONNECTION_IDLE_MS,
      interceptors: [dropAnswersAfterStatus],
    });
  }

  /** True once drain began, after its delay: work stops. */
  get draining(): boolean {
    return this.drainingNow;
  }

  /** True once drain was called: health stays NOT_SERVING. */
  get stopping(): boolean {
    return this.stoppingNow;
  }

  /** Adds the service and binds; resolves the bound ports. The health stays NOT_SERVING until `serve`. */
  async listen(): Promise<{ port: number; loopbackPort: number | undefined }> {
    const h = this.handlers;
    this.server.addService(this.meteredService(), {
      session: (call: SessionCall) => this.openSession(call),
      describeStream: (
        call: grpc.ServerUnaryCall<DescribeStreamRequest | MalformedMessage, StreamDescriptor>,
        cb: grpc.sendUnaryData<StreamDescriptor>,
      ) => this.unary(call, cb, () => h.describeStream(call.request)),
      listStreams: (
        call: grpc.ServerUnaryCall<unknown, ListStreamsResponse>,
        cb: grpc.sendUnaryData<ListStreamsResponse>,
      ) => this.unary(call, cb, () => h.listStreams(call.request)),
      getHashPieces: (
        call: grpc.ServerUnaryCall<GetHashPiecesRequest | MalformedMessage, GetHashPiecesResponse>,
        cb: grpc.sendUnaryData<GetHashPiecesResponse>,
      ) => this.unary(call, cb, () => h.hashPieces(call.request)),
    });
    this.health.addTo(this.server);
    const bind = (address: string, creds: grpc.ServerCredentials) =>
      new Promise<number>((resolve, reject) =>
        this.server.bindAsync(address, creds, (err, bound) => (err ? reject(err) : resolve(bound))),
      );
    const port = await bind(joinHostPort(this.o.host, this.o.port), serverCredentials(this.o.tls));
    const loopbackPort = this.o.plaintextLoopback
      ? await bind("127.0.0.1:0", grpc.ServerCredentials.createInsecure())
      : undefined;
    this.limitsSweep = setInterval(() => this.limits.sweep(), LIMITS_SWEEP_MS);
    this.limitsSweep.unref();
    return { port, loopbackPort };
  }

  /** SERVING, and the "tracker listening" line (with `about`: what else the operator should see). */
  serve(port: number, loopbackPort: number | undefined, about: Record<string, unknown>): void {
    this.health.set("SERVING");
    const { maxSessions, messagesPerSecond, messageBurst } = this.limits.opts;
    this.o.log.info(
      {
        host: this.o.host,
        port,
        tls: this.o.tls ? this.o.tls.certFile : false,
        loopbackPort,
        ...about,
        limits: { maxSessions, messagesPerSecond, messageBurst },
      },
      "tracker listening",
    );
  }

  /**
   * Stops accepting sessions (NOT_SERVING; a session opened now is ended
   * with UNAVAILABLE), runs `steps.stopWork`, shuts the gRPC server down
   * (forced after 5 s), then closes the clients.
   */
  /**
   * Health NOT_SERVING at once; after `delayMs`, in which everything goes on
   * as before, sessions end and the server closes.
   */
  async drain(delayMs: number, steps: DrainSteps): Promise<void> {
    if (this.stoppingNow) return;
    this.stoppingNow = true;
    this.health.set("NOT_SERVING");
    if (delayMs > 0) {
      this.o.log.info({ delayMs }, "NOT_SERVING: closing after the drain delay");
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    this.drainingNow = true;
    if (this.limitsSweep) clearInterval(this.limitsSweep);
    await steps.stopWork();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 5_000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    steps.closeClients();
    this.o.log.info("tracker drained");
  }

  /** The service definition, decoding tolerantly and counting session traffic. */
  private meteredService(): typeof TrackerService {
    const def = tolerantService(TrackerService);
    const m = this.o.metrics;
    return {
      ...def,
      session: {
        ...def.session,
        requestDeserialize: (buf: Buffer) => {
          m.controlMessages.inc({ direction: "in" });
          m.controlBytes.inc({ direction: "in" }, buf.length);
          return def.session.requestDeserialize(buf);
        },
        responseSerialize: (value: TrackerMessage) => {
          const buf = def.session.responseSerialize(value);
          m.controlMessages.inc({ direction: "out" });
          m.controlBytes.inc({ direction: "out" }, buf.length);
          return buf;
        },
      },
    };
  }

  /** A unary call, under its address's message rate; what `fn` throws reaches the caller through toPeerStatus. */
  private unary<T>(call: grpc.ServerUnaryCall<unknown, T>, cb: grpc.sendUnaryData<T>, fn: () => Promise<T>): void {
    const refused = this.limits.message(hostFromPeer(call.getPeer()));
    if (refused) return cb(toPeerStatus(this.refuse(refused), this.o.log));
    fn().then(
      (v) => cb(null, v),
      (err: unknown) => cb(toPeerStatus(err, this.o.log)),
    );
  }

  /**
   * A new Session call, admitted under its address's session limit (the
   * connection's address, never a claimed one). Every message it sends
   * takes a token of its address's bucket; one over the rate ends it with
   * RESOURCE_EXHAUSTED before it is handled.
   */
  private openSession(call: SessionCall): void {
    const ip = hostFromPeer(call.getPeer());
    const admitted = this.limits.openSession(ip);
    if ("limit" in admitted) {
      call.emit("error", toPeerStatus(this.refuse(admitted), this.o.log));
      return;
    }
    for (const event of ["cancelled", "close", "finish"]) call.once(event, admitted.release);
    const session = this.handlers.session(call);
    // after the session's own listener: it queues the message, this ends the session before it runs
    call.on("data", () => {
      const refused = session.closed ? undefined : this.limits.message(ip);
      if (refused) void session.terminate(this.refuse(refused));
    });
    if (this.drainingNow) void session.terminate(unavailable("tracker shutting down"));
  }

  /** Counts and (a line per limit per 10 s) logs a refusal; the error to answer with. */
  private refuse(r: Refusal): PublicError {
    this.o.metrics.limited.inc({ limit: r.limit });
    const heldBack = this.limitLog.allow(r.limit);
    if (heldBack !== undefined) {
      this.o.log.warn({ limit: r.limit, alsoRefusedSinceLastLine: heldBack }, `refused: ${r.message}`);
    }
    return resourceExhausted(r.message);
  }
}
