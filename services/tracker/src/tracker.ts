import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumClient,
  chunkCount,
  DEFAULT_PIECE_CHUNKS,
  isStreamId,
  issueTicket,
  keyId,
  MalformedMessage,
  openManifest,
  PublishStatus,
  SignedHashPiece,
  SignedManifest,
  StreamKind,
  streamIdFor,
  tolerantService,
  TrackerService,
  type DescribeStreamRequest,
  type GetHashPiecesRequest,
  type GetHashPiecesResponse,
  type Joined,
  type Manifest,
  type ManifestPart,
  type ListStreamsResponse,
  type PeerMessage,
  type PublicKey,
  type Publish,
  type Signer,
  type StreamDescriptor,
  type TrackerMessage,
  joinHostPort,
} from "@distribustream/pdtp";
import {
  ByteCache,
  channelCredentials,
  failedPrecondition,
  Health,
  invalidArgument,
  notFound,
  resourceExhausted,
  serverCredentials,
  toServiceError,
  unavailable,
  type ClientTls,
  type Logger,
  type PublicError,
  type Registry,
  type ServerTls,
} from "@distribustream/runtime";
import type {
  EventSubscription,
  StreamEvent,
  StreamMeta,
  SwarmStore,
  TransferRecord,
} from "@distribustream/swarm-store";
import { DEFAULT_PEER_LIMITS, LogThrottle, PeerLimits, type PeerLimitOptions, type Refusal } from "./limits.js";
import { TrackerMetrics } from "./metrics.js";
import { hostFromPeer, httpBase } from "./peerAddress.js";
import { DEFAULT_PLANNER, Planner } from "./planner.js";
import { TicketKeys } from "./ticketKeys.js";
import { SeederAuth, type SeederTokens } from "./seederAuth.js";
import { Session } from "./session.js";
import { checkName } from "./validate.js";

export const TRACKER_SERVICE_NAME = "pdtp.v1.Tracker";

export interface TrackerOptions {
  /** Bind address for the PDTP gRPC server. */
  host: string;
  /** 6086 by default; 0 = any free port. */
  port: number;
  /** "host:port" of the checksum gRPC service. */
  checksum: string;
  store: SwarmStore;
  /** Tracker key(s) that sign tickets: one fixed key, or a watched key file (TicketKeys.watch) for rotation. */
  ticketSigner: Signer | TicketKeys;
  /** Chunk size given to newly published streams. */
  chunkSize: number;
  /** Chunks per hash piece of newly published streams (default DEFAULT_PIECE_CHUNKS: 256). */
  pieceChunks?: number;
  log: Logger;
  /** prom-client registry to register tracker metrics in. */
  registry: Registry;
  /** Peers not seen for this long leave their swarms. Default 30 s. */
  peerTtlMs?: number;
  /** Largest inbound gRPC message; larger ones end the call with RESOURCE_EXHAUSTED. Default MAX_PEER_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** Certificate and key: the PDTP port speaks TLS (pdtps://). Plaintext without. */
  tls?: ServerTls | undefined;
  /** Reach the checksum service over TLS (trusting this CA, or the system's roots). Plaintext without. */
  checksumTls?: ClientTls | undefined;
  /** Per-address limits of the PDTP port (default DEFAULT_PEER_LIMITS). */
  limits?: PeerLimitOptions;
  /**
   * Also listen in plaintext on 127.0.0.1 (any free port, `loopbackPort`):
   * for a seeder in the same process when the public port is TLS with a
   * certificate that does not name 127.0.0.1.
   */
  plaintextLoopback?: boolean;
  /**
   * Lifetime of the cleanup lease: one replica at a time holds it (renewed
   * every third of it) and runs the expiry sweeps; when the holder dies,
   * another takes over within this time. Default 10 s.
   */
  cleanupLeaseMs?: number;
  /**
   * Seeder credentials: when given, a seeder's Hello must carry a valid,
   * unrevoked token, and a seeder whose token is revoked later is ended.
   * Without it any peer may publish (a warning is logged at start).
   */
  seederTokens?: SeederTokens | undefined;
}

export interface RunningTracker {
  /** Bound port. */
  port: number;
  /** The plaintext loopback port, with `plaintextLoopback`. */
  loopbackPort?: number | undefined;
  /** SERVING once started; NOT_SERVING while draining. */
  health: Health;
  /** Stop accepting sessions, end open sessions with UNAVAILABLE "tracker shutting down", stop timers, close the checksum client. */
  drain(): Promise<void>;
}

/** How long Hello waits for the network key before giving up on the session. */
const NETWORK_KEY_WAIT_MS = 10_000;
/** Ticket lifetime of a manifest computation, and the least time it may take. */
const MANIFEST_TIMEOUT_MS = 10 * 60_000;
/** Slowest hashing rate waited for: a computation's deadline grows with the file (10 GiB: +21 min). */
const MIN_HASH_BYTES_PER_SECOND = 8 * 1024 * 1024;
/** Hash pieces kept in memory for GetHashPieces (encoded bytes): many viewers ask for the same ones. */
const PIECE_CACHE_BYTES = 64 * 1024 * 1024;
/** Most hash pieces one GetHashPieces answer carries, and most bytes (it stays well under 4 MiB). */
const MAX_PIECES_PER_CALL = 64;
const MAX_PIECES_BYTES = 2 * 1024 * 1024;
const SCHEDULE_TICK_MS = 250;
/** Manifest headers kept in memory for joins (encoded bytes). */
const MANIFEST_CACHE_BYTES = 64 * 1024 * 1024;
/** A hungry peer with transfers in flight is replanned by the tick at most this often. */
const REPLAN_MS = 1_000;
const TRANSFER_SWEEP_MS = 1_000;
/** How often the swarm store is pinged for health, and how long a ping may take. */
const STORE_CHECK_MS = 1_000;
/** Name of the lease whose holder runs the expiry sweeps. */
const CLEANUP_LEASE = "cleanup";
/**
 * Largest message a peer may send. The largest legitimate one is a Have or a
 * Join with the most ranges validate.ts accepts (MAX_RANGES = 4096): a range
 * of chunk numbers below 2^32 encodes in at most 14 bytes, 56 KiB in all;
 * dsclient keeps its messages under 32 KiB. Manifests only flow outwards.
 */
export const MAX_PEER_MESSAGE_BYTES = 64 * 1024;
/** How often addresses with no session and a full bucket are dropped from the limits table. */
const LIMITS_SWEEP_MS = 5_000;

export async function startTracker(opts: TrackerOptions): Promise<RunningTracker> {
  const core = new TrackerCore(opts);
  return core.start();
}

/** Everything a tracker process runs: the gRPC server, its sessions and timers. */
export class TrackerCore {
  readonly log: Logger;
  readonly store: SwarmStore;
  readonly metrics: TrackerMetrics;
  readonly planner: Planner;
  readonly ticketKeys: TicketKeys;
  readonly health = new Health([TRACKER_SERVICE_NAME]);
  private readonly server: grpc.Server;
  private readonly checksum: ChecksumClient;
  private readonly ttlMs: number;
  private readonly sessions = new Map<string, Session>();
  /** Sessions with streams they still want chunks of: peerId -> stream ids. */
  private readonly hungry = new Map<string, Set<string>>();
  private readonly pendingPublish = new Map<string, Promise<string | undefined>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private networkKeyValue: PublicKey | undefined;
  private networkKeyWaiters: Array<(k: PublicKey) => void> = [];
  private keyRetry: NodeJS.Timeout | undefined;
  private draining = false;
  /** Holder id of this replica for leases: unique per process and start. */
  readonly replicaId = `${hostname()}-${process.pid}-${randomBytes(6).toString("base64url")}`;
  private readonly leaseMs: number;
  /** This replica holds the cleanup lease (as of its last renewal). */
  private leader = false;
  /** When the lease we hold runs out if not renewed (local clock, taken before the renewal call). */
  private leaderUntil = 0;
  private renewing: Promise<void> | undefined;
  /** The swarm store answered the last health check. */
  private storeUp = true;
  /**
   * Events from the other replicas, on the channels of the streams that this
   * replica's sessions joined or published (`streamUsers`: stream id -> ids
   * of those sessions; a stream is watched while it has one).
   */
  private readonly events: EventSubscription;
  private readonly streamUsers = new Map<string, Set<string>>();
  /** Decoded manifest headers of ready streams by cacheKey. */
  private readonly manifests = new ByteCache<string, SignedManifest>(MANIFEST_CACHE_BYTES);
  /** Signed hash pieces by "cacheKey/index". */
  private readonly pieces = new ByteCache<string, SignedHashPiece>(PIECE_CACHE_BYTES);
  /** Store reads of hash pieces in progress, so that viewers asking at once cause one read. */
  private readonly pieceLoads = new Map<string, Promise<number>>();
  /** Chunks newly held per peer per stream since the last "holdings" events. */
  private readonly pendingHoldings = new Map<string, Map<string, number>>();
  private resyncing: Promise<void> | undefined;
  readonly seederAuth: SeederAuth;
  private unwatchTokens: (() => void) | undefined;
  private readonly limits: PeerLimits;
  private readonly limitLog = new LogThrottle();

  constructor(private readonly opts: TrackerOptions) {
    this.log = opts.log;
    this.store = opts.store;
    this.metrics = new TrackerMetrics(opts.registry, () => opts.store.streamCount());
    this.ticketKeys = opts.ticketSigner instanceof TicketKeys ? opts.ticketSigner : TicketKeys.fixed(opts.ticketSigner);
    this.ticketKeys.onChange(() => this.keysChanged());
    this.planner = new Planner(opts.store, this.ticketKeys, DEFAULT_PLANNER);
    this.seederAuth = new SeederAuth(opts.seederTokens, opts.registry, opts.log);
    this.ttlMs = opts.peerTtlMs ?? 30_000;
    this.leaseMs = opts.cleanupLeaseMs ?? 10_000;
    this.limits = new PeerLimits(opts.limits ?? DEFAULT_PEER_LIMITS);
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": opts.maxMessageBytes ?? MAX_PEER_MESSAGE_BYTES,
      // ping idle connections so dead sessions are noticed; grpc-js servers
      // accept client pings at any rate, so clients pinging every >= 10 s are fine
      "grpc.keepalive_time_ms": 20_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
    });
    this.checksum = new ChecksumClient(opts.checksum, channelCredentials(opts.checksumTls));
    this.events = opts.store.subscribeEvents({
      event: (streamId, e) => this.onEvent(streamId, e),
      resync: () => void this.resync(),
    });
  }

  async start(): Promise<RunningTracker> {
    this.server.addService(this.meteredService(), {
      session: (call: grpc.ServerDuplexStream<PeerMessage | MalformedMessage, TrackerMessage>) =>
        this.openSession(call),
      describeStream: (
        call: grpc.ServerUnaryCall<DescribeStreamRequest | MalformedMessage, StreamDescriptor>,
        cb: grpc.sendUnaryData<StreamDescriptor>,
      ) => this.unary(call, cb, () => this.describeStream(call.request)),
      listStreams: (
        call: grpc.ServerUnaryCall<unknown, ListStreamsResponse>,
        cb: grpc.sendUnaryData<ListStreamsResponse>,
      ) =>
        this.unary(call, cb, async () => {
          if (call.request instanceof MalformedMessage)
            throw invalidArgument(`malformed request: ${call.request.reason}`);
          return this.listStreams();
        }),
      getHashPieces: (
        call: grpc.ServerUnaryCall<GetHashPiecesRequest | MalformedMessage, GetHashPiecesResponse>,
        cb: grpc.sendUnaryData<GetHashPiecesResponse>,
      ) => this.unary(call, cb, () => this.hashPieces(call.request)),
    });
    this.health.addTo(this.server);
    const bind = (address: string, creds: grpc.ServerCredentials) =>
      new Promise<number>((resolve, reject) =>
        this.server.bindAsync(address, creds, (err, bound) => (err ? reject(err) : resolve(bound))),
      );
    const port = await bind(joinHostPort(this.opts.host, this.opts.port), serverCredentials(this.opts.tls));
    const loopbackPort = this.opts.plaintextLoopback
      ? await bind("127.0.0.1:0", grpc.ServerCredentials.createInsecure())
      : undefined;
    void this.fetchNetworkKey();
    this.every(SCHEDULE_TICK_MS, () => this.scheduleTick());
    this.every(TRANSFER_SWEEP_MS, () => this.sweepTransfers());
    this.every(Math.max(100, Math.floor(this.ttlMs / 3)), () => this.refreshPeers());
    this.every(Math.max(50, Math.floor(this.leaseMs / 3)), () => this.renewLease());
    this.every(STORE_CHECK_MS, () => this.checkStore());
    this.every(LIMITS_SWEEP_MS, async () => this.limits.sweep());
    void this.renewLease();
    if (this.opts.seederTokens) {
      this.unwatchTokens = this.opts.seederTokens.onChange(() => this.endRevokedSeeders());
    } else {
      this.log.warn("seeders are not authenticated: anyone can publish; set --seeder-tokens");
    }
    this.health.set("SERVING");
    const { maxSessions, messagesPerSecond, messageBurst } = this.limits.opts;
    this.log.info(
      {
        host: this.opts.host,
        port,
        tls: this.opts.tls ? this.opts.tls.certFile : false,
        loopbackPort,
        checksum: this.opts.checksum,
        checksumTls: !!this.opts.checksumTls,
        limits: { maxSessions, messagesPerSecond, messageBurst },
      },
      "tracker listening",
    );
    return { port, loopbackPort, health: this.health, drain: () => this.drain() };
  }

  /** The service definition, decoding tolerantly and counting session traffic. */
  private meteredService(): typeof TrackerService {
    const def = tolerantService(TrackerService);
    const m = this.metrics;
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

  private every(ms: number, fn: () => Promise<void>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.draining) return;
      running = true;
      fn()
        .catch((err: unknown) => this.log.error({ err }, "tracker timer failed"))
        .finally(() => (running = false));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private unary<T>(call: grpc.ServerUnaryCall<unknown, T>, cb: grpc.sendUnaryData<T>, fn: () => Promise<T>): void {
    const refused = this.limits.message(hostFromPeer(call.getPeer()));
    if (refused) return cb(toServiceError(this.refuse(refused), this.log));
    fn().then(
      (v) => cb(null, v),
      (err: unknown) => cb(toServiceError(err, this.log)),
    );
  }

  // ---- network key -----------------------------------------------------------

  /** The checksum service's network key; waits for it (bounded) while the checksum service is unreachable. */
  networkKey(): Promise<PublicKey> {
    if (this.networkKeyValue) return Promise.resolve(this.networkKeyValue);
    return new Promise<PublicKey>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.networkKeyWaiters = this.networkKeyWaiters.filter((w) => w !== waiter);
        reject(unavailable("checksum service unavailable: no network key yet, try again"));
      }, NETWORK_KEY_WAIT_MS);
      const waiter = (k: PublicKey) => {
        clearTimeout(timer);
        resolve(k);
      };
      this.networkKeyWaiters.push(waiter);
    });
  }

  private async fetchNetworkKey(): Promise<void> {
    let delayMs = 200;
    while (!this.draining) {
      try {
        const key = await new Promise<PublicKey>((resolve, reject) =>
          this.checksum.getNetworkKey({}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res) =>
            err ? reject(err) : resolve(res),
          ),
        );
        if (key.ed25519.length !== 32 || keyId(key.ed25519) !== key.keyId) {
          throw new Error(`checksum service returned an invalid network key (id ${key.keyId})`);
        }
        this.networkKeyValue = key;
        for (const w of this.networkKeyWaiters) w(key);
        this.networkKeyWaiters = [];
        this.log.info({ keyId: key.keyId }, "network key fetched from checksum service");
        return;
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message, checksum: this.opts.checksum, retryMs: delayMs },
          "cannot fetch the network key, retrying",
        );
        await new Promise<void>((resolve) => {
          this.keyRetry = setTimeout(resolve, delayMs);
          this.keyRetry.unref();
        });
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  // ---- sessions --------------------------------------------------------------

  /**
   * A new Session call, admitted under its address's session limit (the
   * connection's address, never a claimed one). Every message it sends
   * takes a token of its address's bucket; one over the rate ends it with
   * RESOURCE_EXHAUSTED before it is handled.
   */
  private openSession(call: grpc.ServerDuplexStream<PeerMessage | MalformedMessage, TrackerMessage>): void {
    const ip = hostFromPeer(call.getPeer());
    const admitted = this.limits.openSession(ip);
    if ("limit" in admitted) {
      call.emit("error", toServiceError(this.refuse(admitted), this.log));
      return;
    }
    for (const event of ["cancelled", "close", "finish"]) call.once(event, admitted.release);
    const session = new Session(this, call);
    // after the session's own listener: it queues the message, this ends the session before it runs
    call.on("data", () => {
      const refused = session.closed ? undefined : this.limits.message(ip);
      if (refused) void session.terminate(this.refuse(refused));
    });
    if (this.draining) void session.terminate(unavailable("tracker shutting down"));
  }

  /** Counts and (a line per limit per 10 s) logs a refusal; the error to answer with. */
  private refuse(r: Refusal): PublicError {
    this.metrics.limited.inc({ limit: r.limit });
    const heldBack = this.limitLog.allow(r.limit);
    if (heldBack !== undefined) {
      this.log.warn({ limit: r.limit, alsoRefusedSinceLastLine: heldBack }, `refused: ${r.message}`);
    }
    return resourceExhausted(r.message);
  }

  sessionStarted(s: Session): void {
    this.sessions.set(s.peerId, s);
    this.metrics.sessions.inc({ role: s.role! });
  }

  async sessionEnded(s: Session, why: string): Promise<void> {
    if (!this.sessions.delete(s.peerId)) return;
    this.hungry.delete(s.peerId);
    this.metrics.sessions.dec({ role: s.role! });
    for (const streamId of [...s.joined.keys(), ...s.published.values()]) {
      this.useStream(s, streamId, false);
      this.planner.forget(streamId, s.peerId);
      await this.leaveSwarm(streamId, s.peerId);
    }
    this.log.info({ peerId: s.peerId, host: s.host, role: s.role, why }, "session ended");
  }

  /** Ends the seeder sessions whose token the reloaded credentials file revoked or no longer has. */
  private endRevokedSeeders(): void {
    const tokens = this.opts.seederTokens!;
    for (const s of this.sessions.values()) {
      if (s.seederTokenId === undefined || tokens.valid(s.seederTokenId)) continue;
      void s.terminate(this.seederAuth.revoked(s.seederTokenId, s.host, s.peerId));
    }
  }

  /** Sends the rotated ticket keys to every session. */
  private keysChanged(): void {
    const networkKey = this.networkKeyValue;
    for (const s of this.sessions.values()) {
      s.send({
        body: {
          $case: "keys",
          value: { ticketKeys: this.ticketKeys.publicKeys, networkKeys: networkKey ? [networkKey] : [] },
        },
      });
    }
  }

  /** Whether this peer's session is on this replica. */
  hasSession(peerId: string): boolean {
    return this.sessions.has(peerId);
  }

  setHungry(s: Session, streamId: string, hungry: boolean): void {
    let set = this.hungry.get(s.peerId);
    if (hungry && !s.closed) {
      if (!set) this.hungry.set(s.peerId, (set = new Set()));
      set.add(streamId);
    } else if (set) {
      set.delete(streamId);
      if (set.size === 0) this.hungry.delete(s.peerId);
    }
  }

  /**
   * Counts a session in (or out of) a stream's users; the stream's event
   * channel is watched while it has one. Resolves once subscribed, so that
   * a fetcher is planned only once its replica hears the stream's cancels.
   */
  async useStream(s: Session, streamId: string, using: boolean): Promise<void> {
    let users = this.streamUsers.get(streamId);
    if (using) {
      if (!users) this.streamUsers.set(streamId, (users = new Set()));
      users.add(s.peerId);
      await this.events.watch(streamId);
      return;
    }
    if (!users?.delete(s.peerId) || users.size > 0) return;
    this.streamUsers.delete(streamId);
    await this.events.unwatch(streamId).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, streamId }, "stream events not unwatched");
    });
  }

  /**
   * Transfers that ended because a peer left or they expired: counted, and
   * their fetchers (other than `except`) told to stop and replanned. Fetchers
   * connected to another replica hear it through a "cancel" event on the
   * stream's channel (one per stream), and their replica does the same.
   */
  withdraw(
    transfers: readonly TransferRecord[],
    except: string | undefined,
    reason: "cancelled" | "expired" = "cancelled",
  ): void {
    const byFetcher = new Map<string, TransferRecord[]>();
    const remote = new Map<string, { transferIds: number[]; fetcherIds: string[] }>();
    for (const t of transfers) {
      this.metrics.transfersFailed.inc({ reason });
      if (t.fetcherId === except) continue;
      if (!this.sessions.has(t.fetcherId)) {
        let ev = remote.get(t.streamId);
        if (!ev) remote.set(t.streamId, (ev = { transferIds: [], fetcherIds: [] }));
        ev.transferIds.push(t.transferId);
        ev.fetcherIds.push(t.fetcherId);
        continue;
      }
      const list = byFetcher.get(t.fetcherId) ?? [];
      list.push(t);
      byFetcher.set(t.fetcherId, list);
    }
    for (const [fetcherId, list] of byFetcher) {
      const s = this.sessions.get(fetcherId)!;
      const byStream = new Map<string, number[]>();
      for (const t of list) byStream.set(t.streamId, [...(byStream.get(t.streamId) ?? []), t.transferId]);
      for (const [streamId, ids] of byStream) s.cancelled(streamId, ids);
    }
    // the fetchers' replicas catch up when their transfers expire or they resync, should this be lost
    for (const [streamId, ev] of remote) this.announce(streamId, { type: "cancel", ...ev });
  }

  /** Removes a peer from a stream's swarm: its transfers are withdrawn, the other replicas told. */
  async leaveSwarm(streamId: string, peerId: string): Promise<void> {
    this.withdraw(await this.store.leavePeer(streamId, peerId), peerId);
    this.announce(streamId, { type: "left", peerIds: [peerId] });
  }

  /**
   * Publishes an event on the stream's channel, for the other replicas and
   * for dashboards (fire and forget: a subscriber that misses it re-reads
   * the store). Scheduling itself never waits for one: the store's epoch,
   * read once per stream per tick, is what replans hungry peers, so a
   * replica that misses events does not drift.
   */
  announce(streamId: string, e: StreamEvent): void {
    this.metrics.eventsPublished.inc({ type: e.type });
    this.store.publishEvent(streamId, e).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message, streamId, type: e.type }, "stream event not published");
    });
  }

  /** Counts chunks a peer newly holds; they go out as one "holdings" event per stream per tick. */
  holdingsAdded(streamId: string, peerId: string, chunks: number): void {
    if (chunks <= 0) return;
    let m = this.pendingHoldings.get(streamId);
    if (!m) this.pendingHoldings.set(streamId, (m = new Map()));
    m.set(peerId, (m.get(peerId) ?? 0) + chunks);
  }

  private flushHoldings(): void {
    for (const [streamId, m] of this.pendingHoldings) {
      let chunks = 0;
      for (const n of m.values()) chunks += n;
      this.announce(streamId, { type: "holdings", peerIds: [...m.keys()], chunks });
    }
    this.pendingHoldings.clear();
  }

  /** An event from a replica (or this one) about a stream some session of this replica uses. */
  private onEvent(streamId: string, e: StreamEvent): void {
    this.metrics.eventsReceived.inc({ type: e.type });
    if (e.type !== "cancel") return;
    const byFetcher = new Map<Session, number[]>();
    e.fetcherIds.forEach((fetcherId, i) => {
      const s = this.sessions.get(fetcherId);
      if (!s?.joined.has(streamId)) return;
      byFetcher.set(s, [...(byFetcher.get(s) ?? []), e.transferIds[i]!]);
    });
    for (const [s, ids] of byFetcher) s.cancelled(streamId, ids);
  }

  /**
   * After the event subscription reconnected (events may have been lost):
   * re-checks every viewer's transfers against the store, cancels those it
   * no longer has, and replans every viewer.
   */
  private resync(): Promise<void> {
    return (this.resyncing ??= this.resyncSessions()
      .catch((err: unknown) => this.log.error({ err }, "resync after the event subscription reconnected failed"))
      .finally(() => (this.resyncing = undefined)));
  }

  private async resyncSessions(): Promise<void> {
    if (this.draining) return;
    this.metrics.resyncs.inc();
    let cancelled = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.role !== "viewer" || s.closed) continue;
      for (const [streamId, j] of [...s.joined]) {
        if (j.inFlight.size === 0) continue;
        const live = new Set((await this.store.transfersOf(streamId, s.peerId)).map((t) => t.transferId));
        const gone = [...j.inFlight].filter((id) => !live.has(id));
        if (gone.length > 0) {
          cancelled += gone.length;
          s.cancelled(streamId, gone);
        }
      }
      s.requestPlan();
    }
    this.log.info(
      { sessions: this.sessions.size, cancelled },
      "event subscription reconnected: sessions resynchronised",
    );
  }

  /**
   * Replans the hungry peers that Session.needsPlan picks, reading each
   * stream's epoch once (not once per peer). A peer's own reports, Have and
   * Position replan it at once; this catches what other peers changed.
   */
  private async scheduleTick(): Promise<void> {
    this.flushHoldings();
    const epochs = new Map<string, number>();
    for (const [peerId, streams] of this.hungry) {
      if (!this.sessions.has(peerId)) this.hungry.delete(peerId);
      else for (const id of streams) epochs.set(id, 0);
    }
    for (const id of epochs.keys()) epochs.set(id, await this.store.streamEpoch(id));
    const now = Date.now();
    const when = {
      maxDownloads: DEFAULT_PLANNER.maxDownloads,
      starveMs: DEFAULT_PLANNER.starveMs,
      tickMs: SCHEDULE_TICK_MS,
      replanMs: REPLAN_MS,
    };
    for (const [peerId, streams] of this.hungry) {
      const s = this.sessions.get(peerId);
      if (!s?.keepingUp) continue;
      for (const id of streams) {
        const epoch = epochs.get(id);
        if (epoch !== undefined && s.needsPlan(id, epoch, now, when)) {
          s.requestPlan();
          break;
        }
      }
    }
  }

  /**
   * Pings the store: while it does not answer, gRPC health is NOT_SERVING
   * (sessions stay open; their store calls fail and the Redis client
   * reconnects with backoff). When it answers again: SERVING, and the peers
   * are touched at once, so that sessions whose state the store lost (a
   * restart without persistence) end and re-join with what they hold.
   */
  private async checkStore(): Promise<void> {
    let up = true;
    let reason = "";
    try {
      await this.store.ping(STORE_CHECK_MS);
    } catch (err) {
      up = false;
      reason = (err as Error).message;
    }
    if (up === this.storeUp || this.draining) return;
    this.storeUp = up;
    this.metrics.storeUp.set(up ? 1 : 0);
    this.health.set(up ? "SERVING" : "NOT_SERVING");
    if (!up) {
      this.log.error({ reason }, "swarm store unreachable: health NOT_SERVING");
      return;
    }
    this.log.info("swarm store reachable again: health SERVING");
    await this.renewLease();
    await this.refreshPeers();
  }

  /** Whether this replica runs the expiry sweeps now: it holds the cleanup lease and it has not run out. */
  get isCleanupLeader(): boolean {
    return this.leader && Date.now() < this.leaderUntil;
  }

  /**
   * Takes or renews the cleanup lease. A failed renewal (store unreachable)
   * counts as lost: the sweeps stop until the lease is held again. Two
   * replicas may sweep at once only around a takeover after a stall; the
   * sweeps are atomic per stream, so that costs work, never correctness.
   */
  private renewLease(): Promise<void> {
    return (this.renewing ??= this.tryLease().finally(() => (this.renewing = undefined)));
  }

  private async tryLease(): Promise<void> {
    const asked = Date.now();
    let held = false;
    try {
      held = await this.store.acquireLease(CLEANUP_LEASE, this.replicaId, this.leaseMs);
    } catch (err) {
      if (this.leader) this.log.warn({ err: (err as Error).message }, "cleanup lease not renewed");
    }
    if (held !== this.leader) {
      this.log.info(
        { replica: this.replicaId },
        held ? "cleanup lease taken: running the expiry sweeps" : "cleanup lease lost",
      );
    }
    this.leader = held;
    this.leaderUntil = held ? asked + this.leaseMs : 0;
    this.metrics.cleanupLeader.set(held ? 1 : 0);
  }

  private async sweepTransfers(): Promise<void> {
    if (!this.isCleanupLeader) return;
    const expired = await this.store.expireTransfers(Date.now());
    if (expired.length > 0) {
      this.log.debug({ count: expired.length }, "transfers expired");
      this.withdraw(expired, undefined, "expired");
    }
  }

  /**
   * Keeps live sessions' peers fresh in the store, ends the sessions whose
   * peer the store no longer has (so they re-join with what they hold), and,
   * on the cleanup leader, expires the peers nobody touched.
   */
  private async refreshPeers(): Promise<void> {
    const now = Date.now();
    const byStream = new Map<string, string[]>();
    for (const s of this.sessions.values()) {
      for (const id of s.inSwarm) {
        const list = byStream.get(id) ?? [];
        list.push(s.peerId);
        byStream.set(id, list);
      }
    }
    const lost = new Set<Session>();
    for (const [streamId, peers] of byStream) {
      for (const peerId of await this.store.touchPeers(streamId, peers, now)) {
        const s = this.sessions.get(peerId);
        if (s?.inSwarm.has(streamId)) lost.add(s);
      }
    }
    if (lost.size > 0) {
      this.log.warn(
        { sessions: lost.size },
        "peers missing from the swarm store: ending their sessions so they re-join",
      );
      for (const s of lost) {
        void s.terminate(unavailable("the tracker lost this peer's swarm state; reconnect and join again"));
      }
    }
    if (!this.isCleanupLeader) return;
    const left = new Map<string, string[]>();
    for (const gone of await this.store.expirePeers(now, this.ttlMs)) {
      this.log.info({ peerId: gone.peerId, streamId: gone.streamId, role: gone.role }, "peer expired");
      this.withdraw(gone.transfers, gone.peerId);
      left.set(gone.streamId, [...(left.get(gone.streamId) ?? []), gone.peerId]);
      const s = this.sessions.get(gone.peerId);
      if (s) void s.terminate(unavailable("session expired from the swarm; reconnect"));
    }
    for (const [streamId, peerIds] of left) this.announce(streamId, { type: "left", peerIds });
  }

  // ---- streams ---------------------------------------------------------------

  /** The Joined answer for a ready stream (its manifest read from the store), or undefined when it has none. */
  async joinedMessage(meta: StreamMeta): Promise<Joined | undefined> {
    const manifest = await this.manifestOf(meta);
    if (!manifest) return undefined;
    return { descriptor: await this.descriptor(meta), manifest };
  }

  /**
   * A ready stream's manifest header, decoded. A stream id names fixed bytes,
   * so its manifest never changes: kept (up to MANIFEST_CACHE_BYTES) instead
   * of being read from the store on every join. Cached under the stream's
   * creation time too: a stream whose hashing failed and that is published
   * again gets a new header, which no replica may confuse with the old one.
   */
  private async manifestOf(meta: StreamMeta): Promise<SignedManifest | undefined> {
    const key = cacheKey(meta);
    const hit = this.manifests.get(key);
    if (hit) return hit;
    const bytes = await this.store.getManifest(meta.streamId);
    if (!bytes) return undefined;
    const manifest = SignedManifest.decode(bytes);
    this.manifests.set(key, manifest, bytes.length);
    return manifest;
  }

  /**
   * GetHashPieces: consecutive signed hash pieces of a ready stream, from
   * the cache (pieces never change for a stream id and creation time), else
   * from the store in one read shared by the viewers that ask at the same
   * time. The answer stops at the first piece not hashed yet and stays under
   * MAX_PIECES_BYTES. One meta read per call (O(1)) tells a failed or
   * republished stream apart.
   */
  private async hashPieces(req: GetHashPiecesRequest | MalformedMessage): Promise<GetHashPiecesResponse> {
    if (req instanceof MalformedMessage) throw invalidArgument(`malformed request: ${req.reason}`);
    if (!isStreamId(req.streamId)) throw invalidArgument(`"${req.streamId.slice(0, 64)}" is not a stream id`);
    if (!Number.isSafeInteger(req.firstPiece) || req.count < 1 || req.count > MAX_PIECES_PER_CALL) {
      throw invalidArgument(`GetHashPieces wants first_piece >= 0 and count in [1, ${MAX_PIECES_PER_CALL}]`);
    }
    const meta = await this.store.getStream(req.streamId);
    if (meta?.status === "failed") throw failedPrecondition(`hashing of "${meta.name}" failed: ${meta.failure}`);
    if (!meta || meta.status !== "ready") throw notFound(`no stream with id "${req.streamId}"`);
    const gen = cacheKey(meta);
    const pieces: SignedHashPiece[] = [];
    let bytes = 0;
    const end = req.firstPiece + req.count;
    for (let i = req.firstPiece; i < end; i++) {
      const key = `${gen}/${i}`;
      let hit = this.pieces.get(key);
      if (!hit && (await this.loadPieces(gen, meta.streamId, i, end - i)) > 0) hit = this.pieces.get(key);
      const size = this.pieces.bytesOf(key);
      if (!hit || (pieces.length > 0 && bytes + size > MAX_PIECES_BYTES)) break;
      pieces.push(hit);
      bytes += size;
    }
    return { pieces };
  }

  /** Reads pieces [first, first + count) from the store into the cache; resolves how many it found. */
  private loadPieces(gen: string, streamId: string, first: number, count: number): Promise<number> {
    const key = `${gen}/${first}/${count}`;
    let load = this.pieceLoads.get(key);
    if (!load) {
      load = (async () => {
        const found = await this.store.getHashPieces(streamId, first, count);
        found.forEach((bytes, i) => {
          const k = `${gen}/${first + i}`;
          if (!this.pieces.has(k)) this.pieces.set(k, SignedHashPiece.decode(bytes), bytes.length);
        });
        return found.length;
      })().finally(() => this.pieceLoads.delete(key));
      this.pieceLoads.set(key, load);
    }
    return load;
  }

  /** Drops what this replica cached of a stream (its hashing failed); other replicas' entries are never read again. */
  private forgetStream(streamId: string): void {
    const ofStream = (key: string) => key.startsWith(`${streamId}@`);
    this.manifests.deleteWhere(ofStream);
    this.pieces.deleteWhere(ofStream);
  }

  private async descriptor(meta: StreamMeta): Promise<StreamDescriptor> {
    const counts = await this.store.peerCounts(meta.streamId);
    return {
      streamId: meta.streamId,
      name: meta.name,
      kind: meta.kind === "live" ? StreamKind.STREAM_KIND_LIVE : StreamKind.STREAM_KIND_ON_DEMAND,
      size: meta.size,
      chunkSize: meta.chunkSize,
      chunkCount: meta.chunkCount,
      version: meta.version,
      peers: counts.peers,
      seeders: counts.seeders,
    };
  }

  private async describeStream(req: DescribeStreamRequest | MalformedMessage): Promise<StreamDescriptor> {
    if (req instanceof MalformedMessage) throw invalidArgument(`malformed request: ${req.reason}`);
    let meta: StreamMeta | undefined;
    if (req.name) {
      checkName(req.name);
      const id = await this.store.streamIdByName(req.name);
      meta = id ? await this.store.getStream(id) : undefined;
      if (!meta || meta.status !== "ready") throw notFound(`no stream named "${req.name}"`);
    } else if (req.streamId) {
      meta = await this.store.getStream(req.streamId);
      if (!meta || meta.status !== "ready") throw notFound(`no stream with id "${req.streamId.slice(0, 64)}"`);
    } else {
      throw invalidArgument("DescribeStream needs a name or a stream_id");
    }
    return this.descriptor(meta);
  }

  private async listStreams(): Promise<ListStreamsResponse> {
    const streams = await this.store.listStreams();
    return { streams: await Promise.all(streams.map((m) => this.descriptor(m))) };
  }

  /**
   * A seeder offers a file. When the stream is ready already, the seeder joins
   * its swarm at once (READY); otherwise the tracker answers ACCEPTED and
   * finishes in the background: READY as soon as the first hash piece is
   * stored (the rest is hashed while viewers download), or REJECTED. A seeder that published
   * another version of the name in this session leaves that version's swarm
   * (its file changed, it can no longer serve the old bytes).
   */
  async publish(s: Session, p: Publish): Promise<void> {
    const streamId = streamIdFor(p.name, p.size, p.version);
    const before = s.published.get(p.name);
    s.published.set(p.name, streamId);
    await this.useStream(s, streamId, true);
    if (before !== undefined && before !== streamId) {
      await this.useStream(s, before, false);
      s.inSwarm.delete(before);
      this.planner.forget(before, s.peerId);
      await this.leaveSwarm(before, s.peerId);
      this.log.info(
        { peerId: s.peerId, name: p.name, old: before, streamId },
        "publish: seeder left the older version",
      );
    }
    let existing = await this.store.getStream(streamId);
    if (existing?.status === "failed" && !this.pendingPublish.has(streamId)) {
      // its hashing failed midway: published again, it is hashed afresh
      await this.store.removeStream(streamId);
      this.forgetStream(streamId);
      existing = undefined;
    }
    const chunkSize = existing?.chunkSize ?? this.opts.chunkSize;
    const result = (status: PublishStatus, detail = "") => publishResult(p.name, streamId, status, detail, chunkSize);
    if (existing?.status === "ready") {
      if (before === streamId && (await this.store.getPeer(streamId, s.peerId))) {
        // published again unchanged: keep the record, so its uploads go on
        s.send(result(PublishStatus.PUBLISH_STATUS_READY));
        return;
      }
      if (await this.addSeeder(s, p.name, existing)) {
        s.send(result(PublishStatus.PUBLISH_STATUS_READY));
        this.log.info({ peerId: s.peerId, name: p.name, streamId }, "publish: stream already ready, seeder added");
      }
      return;
    }
    if (!existing) {
      await this.store.createStream({
        streamId,
        name: p.name,
        size: p.size,
        chunkSize,
        version: p.version,
        kind: "on_demand",
        createdMs: Date.now(),
      });
    }
    s.send(result(PublishStatus.PUBLISH_STATUS_ACCEPTED));
    let pending = this.pendingPublish.get(streamId);
    if (!pending) {
      pending = this.computeManifest(s, p, streamId, chunkSize).finally(() => this.pendingPublish.delete(streamId));
      this.pendingPublish.set(streamId, pending);
    }
    const current = () => !s.closed && s.published.get(p.name) === streamId;
    pending
      .then(async (failure) => {
        if (!current()) return; // closed, unpublished or superseded by a newer version meanwhile
        if (failure !== undefined) {
          s.published.delete(p.name);
          await this.useStream(s, streamId, false);
          s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, failure));
          return;
        }
        const meta = await this.store.getStream(streamId);
        if (!meta || !current()) return;
        if (await this.addSeeder(s, p.name, meta)) s.send(result(PublishStatus.PUBLISH_STATUS_READY));
      })
      .catch((err: unknown) => {
        this.log.error({ err, peerId: s.peerId, name: p.name, streamId }, "publish: adding the seeder failed");
        if (current()) s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, "tracker error while adding the seeder"));
      });
  }

  /**
   * Puts the seeder in a ready stream's swarm as the holder of everything.
   * Resolves false (and leaves it out again) when, during the store call, the
   * session closed or the name was unpublished or republished with another
   * version: the cleanup of those may have run before the store had it.
   */
  private async addSeeder(s: Session, name: string, meta: StreamMeta): Promise<boolean> {
    const { dropped } = await this.store.joinPeer(
      meta.streamId,
      {
        peerId: s.peerId,
        host: s.dataHost,
        port: s.dataPort,
        role: "seeder",
        mode: "bulk",
        position: 0,
        have: meta.chunkCount > 0 ? [{ first: 0, last: meta.chunkCount - 1 }] : [],
      },
      Date.now(),
    );
    // a seeder publishing the same stream again replaces its record: its uploads end
    this.withdraw(dropped, s.peerId);
    if (!s.closed && s.published.get(name) === meta.streamId) {
      this.announce(meta.streamId, { type: "joined", peerId: s.peerId, role: "seeder" });
      s.inSwarm.add(meta.streamId);
      return true;
    }
    await this.leaveSwarm(meta.streamId, s.peerId);
    return false;
  }

  /**
   * Asks the checksum service for the signed manifest and stores its hash
   * pieces as they arrive. Resolves once the stream is joinable (its first
   * piece stored: undefined) or could not be made so (the reason). Hashing
   * goes on in the background; should it fail after that, the stream fails
   * (see failHashing).
   */
  private computeManifest(s: Session, p: Publish, streamId: string, chunkSize: number): Promise<string | undefined> {
    const log = this.log.child({ peerId: s.peerId, name: p.name, streamId });
    const sourceUrl = httpBase(s.dataHost, s.dataPort);
    return new Promise<string | undefined>((settle) => {
      let ready = false;
      const onReady = () => {
        ready = true;
        settle(undefined);
      };
      this.hashStream(s, p, streamId, chunkSize, sourceUrl, log, onReady).then(
        () => {
          if (!ready) settle("manifest not computed: the checksum service sent no manifest");
        },
        async (err: unknown) => {
          const e = err as grpc.ServiceError;
          const reason = `manifest not computed: ${e.details || e.message}`;
          log.warn(
            { sourceUrl, originUrl: p.originUrl || undefined, reason, ready },
            ready ? "hashing failed after the stream was joinable" : "publish rejected",
          );
          if (ready) return this.failHashing(streamId, p.name, reason);
          const meta = await this.store.getStream(streamId).catch(() => undefined);
          if (meta && meta.status !== "ready") await this.store.removeStream(streamId).catch(() => undefined);
          settle(reason);
        },
      );
    });
  }

  /**
   * Reads one ComputeManifest stream: checks the header against the published
   * file and each piece's signature and place, stores each piece (raising the
   * stream's hashed frontier, which replans the fetchers waiting for it) and
   * marks the stream ready with its first piece (or at once for an empty file).
   */
  private async hashStream(
    s: Session,
    p: Publish,
    streamId: string,
    chunkSize: number,
    sourceUrl: string,
    log: Logger,
    onReady: () => void,
  ): Promise<void> {
    const count = chunkCount(p.size, chunkSize);
    const timeoutMs = MANIFEST_TIMEOUT_MS + Math.ceil((p.size / MIN_HASH_BYTES_PER_SECOND) * 1000);
    const ticket = issueTicket(
      {
        streamId,
        range: { first: 0, last: Math.max(0, count - 1) },
        fetcherId: "checksum",
        serverId: s.peerId,
        expiresMs: Date.now() + MANIFEST_TIMEOUT_MS,
      },
      this.ticketKeys.signer,
    );
    const key = await this.networkKey();
    const call = this.checksum.computeManifest(
      {
        streamId,
        name: p.name,
        size: p.size,
        chunkSize,
        version: p.version,
        sourceUrl,
        ticket,
        pieceChunks: this.opts.pieceChunks ?? DEFAULT_PIECE_CHUNKS,
        // an origin's bytes are hashed from the origin itself, with the seeder's validator
        ...(p.originUrl
          ? {
              originUrl: p.originUrl,
              originEtag: p.originEtag ?? "",
              originLastModified: p.originLastModified ?? "",
            }
          : {}),
      },
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
    );
    const started = Date.now();
    let manifest: Manifest | undefined;
    let header: SignedManifest | undefined;
    let next = 0;
    const becomeReady = async () => {
      const { replaced } = await this.store.markReady(streamId, SignedManifest.encode(header!).finish(), Date.now());
      log.info(
        { size: p.size, chunks: count, pieces: manifest!.pieceCount, replaced, ms: Date.now() - started },
        "publish: stream ready (first hash piece stored)",
      );
      this.announce(streamId, { type: "published", name: p.name });
      if (replaced) this.announce(replaced, { type: "retired", name: p.name, by: streamId });
      onReady();
    };
    try {
      for await (const part of call as AsyncIterable<ManifestPart>) {
        if (part.part?.$case === "header") {
          if (manifest) throw new Error("the checksum service sent two manifest headers");
          header = part.part.value;
          manifest = openManifest(header, [key]);
          const b = manifest.body;
          if (
            b.streamId !== streamId ||
            b.name !== p.name ||
            b.size !== p.size ||
            b.chunkSize !== chunkSize ||
            b.version !== p.version
          ) {
            throw new Error(
              `manifest does not describe the published file (got ${b.name} size ${b.size} chunk ${b.chunkSize} v${b.version})`,
            );
          }
        } else if (part.part?.$case === "piece") {
          if (!manifest) throw new Error("the checksum service sent a hash piece before the manifest header");
          const piece = manifest.openPiece(part.part.value, [key], next);
          const stored = await this.store.putHashPiece(
            streamId,
            next,
            SignedHashPiece.encode(part.part.value).finish(),
            piece.last + 1,
          );
          if (!stored) throw new Error("the stream was removed while it was being hashed");
          if (next === 0) await becomeReady();
          next++;
        }
      }
    } finally {
      call.cancel();
    }
    if (!manifest) throw new Error("the checksum service sent no manifest header");
    if (next !== manifest.pieceCount) {
      throw new Error(`the checksum service sent ${next} of ${manifest.pieceCount} hash pieces`);
    }
    if (manifest.pieceCount === 0) await becomeReady();
    log.info({ pieces: next, ms: Date.now() - started }, "publish: stream fully hashed");
  }

  /**
   * The hashing of a joinable stream failed midway: the stream fails in the
   * store (its name is freed, its epoch bumped), so that every replica's plan
   * of its viewers ends their sessions with the reason (FAILED_PRECONDITION)
   * instead of leaving them waiting for hashes that will not come.
   */
  private async failHashing(streamId: string, name: string, reason: string): Promise<void> {
    try {
      await this.store.failStream(streamId, reason);
    } catch (err) {
      this.log.error({ err, streamId }, "marking the stream failed");
    }
    this.forgetStream(streamId);
    for (const s of this.sessions.values()) {
      if (s.joined.has(streamId)) s.requestPlan();
      else if (s.published.get(name) === streamId) {
        s.send({ body: { $case: "notice", value: { message: `"${name}" failed: ${reason}` } } });
      }
    }
  }

  // ---- shutdown --------------------------------------------------------------

  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.health.set("NOT_SERVING");
    for (const t of this.timers) clearInterval(t);
    this.unwatchTokens?.();
    if (this.keyRetry) clearTimeout(this.keyRetry);
    await this.renewing;
    if (this.leader) {
      // hand the sweeps over at once instead of after the lease's lifetime
      this.leader = false;
      this.metrics.cleanupLeader.set(0);
      await this.store
        .releaseLease(CLEANUP_LEASE, this.replicaId)
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "cleanup lease not released"));
    }
    await Promise.all([...this.sessions.values()].map((s) => s.terminate(unavailable("tracker shutting down"))));
    await this.events.close().catch(() => undefined);
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
    this.checksum.close();
    this.log.info("tracker drained");
  }
}

/** Cache key of what a stream's publish produced: the id, and the creation time that tells a republish apart. */
function cacheKey(meta: StreamMeta): string {
  return `${meta.streamId}@${meta.createdMs}`;
}

function publishResult(
  name: string,
  streamId: string,
  status: PublishStatus,
  detail: string,
  chunkSize: number,
): TrackerMessage {
  return { body: { $case: "publishResult", value: { name, streamId, status, detail, chunkSize } } };
}
