import pLimit from "p-limit";
import { ChecksumClient, DEFAULT_PIECE_CHUNKS, type Signer } from "@distribustream/pdtp";
import {
  channelCredentials,
  unavailable,
  type ClientTls,
  type Health,
  type Logger,
  type Registry,
  type ServerTls,
} from "@distribustream/runtime";
import type { SwarmStore } from "@distribustream/swarm-store";
import { Catalog } from "./catalog.js";
import { CleanupLease } from "./cleanupLease.js";
import { DEFAULT_PEER_LIMITS, type PeerLimitOptions } from "./limits.js";
import { LIVE_EDGE_WAIT_MS, LiveEdges } from "./liveEdges.js";
import { LiveWindows } from "./liveWindows.js";
import { TrackerMetrics } from "./metrics.js";
import { NetworkKey } from "./networkKey.js";
import { DEFAULT_PLANNER, Planner } from "./planner.js";
import { PublishFile } from "./publishFile.js";
import { PublishLive } from "./publishLive.js";
import { ReplicaEvents } from "./replicaEvents.js";
import { ReplicaStats } from "./replicaStats.js";
import { SeederAuth, type SeederTokens } from "./seederAuth.js";
import { MAX_PEER_MESSAGE_BYTES, TrackerServer } from "./server.js";
import { DEFAULT_PEER_PROBE, PeerProbe, type PeerProbeOptions } from "./peerProbe.js";
import { Session, type SessionHost } from "./session.js";
import { SessionRegistry } from "./sessions.js";
import { TicketKeys } from "./ticketKeys.js";
import { Tick } from "./tick.js";

/**
 * Viewers' plans in progress at once; beyond this many, plans wait for a
 * slot. Each plan is a few Redis round trips in a row, so it takes the
 * slots to keep a replica busy: throughput x round-trip time, which on a
 * busy machine (two replicas, Redis and 5,000 simulated viewers on 2 cores)
 * took more than 32 (x2 directives/s 1,736 at 32, 1,972 at 128). Without a
 * bound, a replica asked for more plans than it makes has them all in
 * progress on one event loop and one connection: a plan's latency is plans
 * in progress / plans per second (Little's law), 3-4 s with 5,000 sessions,
 * and the reports queued behind them wait as long. Bounded, it is at most
 * 128 / plans per second (0.25 s at 500/s).
 */
const PLAN_SLOTS = 128;

export interface TrackerOptions {
  /**
   * On drain, how long the tracker answers NOT_SERVING while it goes on
   * serving, before it ends sessions and closes: a load balancer's time to
   * stop sending it peers (default 0).
   */
  drainDelayMs?: number;
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
  /** Streams without any peer (seeder or viewer) for this long are forgotten. Default 5 min. */
  streamRetireMs?: number;
  /** Largest inbound gRPC message; larger ones end the call with RESOURCE_EXHAUSTED. Default MAX_PEER_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** A PDTP connection with no call open for this long is closed. Default CONNECTION_IDLE_MS (60 s). */
  connectionIdleMs?: number;
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
  /** Viewers' plans in progress at once (default PLAN_SLOTS); more wait for a slot. */
  planSlots?: number;
  /**
   * Seeder credentials: when given, a seeder's Hello must carry a valid,
   * unrevoked token, and a seeder whose token is revoked later is ended.
   * Without it any peer may publish (a warning is logged at start).
   */
  seederTokens?: SeederTokens | undefined;
  /**
   * The connect-back probe of viewers' data ports (PeerProbe): on by
   * default; `false` takes every viewer's data port as reachable (a trusted
   * LAN, where every peer accepts connections from every other).
   */
  peerProbe?: Partial<PeerProbeOptions> | false;
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

/**
 * The tracker's wiring: builds its parts, each given what it needs, starts
 * them, and drains them in reverse order. The parts, one concept each:
 * server (gRPC, limits, drain), network key, session registry, replica
 * events, tick and cleanup lease, catalog, the publish flows of files and
 * of live broadcasts, and the live edges sent to viewers.
 */
export async function startTracker(opts: TrackerOptions): Promise<RunningTracker> {
  const { log, store } = opts;
  const planSlots = pLimit(opts.planSlots ?? PLAN_SLOTS);
  const metrics = new TrackerMetrics(
    opts.registry,
    () => store.streamCount(),
    () => planSlots.pendingCount,
  );
  const ticketKeys = opts.ticketSigner instanceof TicketKeys ? opts.ticketSigner : TicketKeys.fixed(opts.ticketSigner);
  const planner = new Planner(store, ticketKeys, DEFAULT_PLANNER);
  const seederAuth = new SeederAuth(opts.seederTokens, opts.registry, log);
  const checksum = new ChecksumClient(opts.checksum, channelCredentials(opts.checksumTls));
  const networkKey = new NetworkKey(checksum, opts.checksum, log);
  const sessions = new SessionRegistry(metrics);
  const liveWindows = new LiveWindows(store);
  const catalog = new Catalog(store, liveWindows);
  const lease = new CleanupLease(store, opts.cleanupLeaseMs ?? 10_000, metrics, log);
  // `server` is assigned below, before any of these can ask
  const draining = () => server.draining;
  // a stream no session here uses is no longer followed: what this replica knew of its live edge goes stale
  const events = new ReplicaEvents(store, sessions, metrics, log, draining, (streamId) =>
    liveWindows.forgetEdge(streamId),
  );
  const publishFile = new PublishFile({
    store,
    sessions,
    events,
    catalog,
    planner,
    networkKey,
    checksum,
    ticketKeys,
    chunkSize: opts.chunkSize,
    pieceChunks: opts.pieceChunks ?? DEFAULT_PIECE_CHUNKS,
    log,
  });
  const publishLive = new PublishLive({
    store,
    events,
    windows: liveWindows,
    planner,
    networkKey,
    checksum,
    ticketKeys,
    metrics,
    log,
  });
  // the dashboard's figures: `address` is known once listening
  let address = `${opts.host}:${opts.port}`;
  const stats = new ReplicaStats({
    replicaId: lease.replicaId,
    get address() {
      return address;
    },
    store,
    sessions,
    metrics,
    cleanupLeader: () => lease.held,
    checksumReachable: () => networkKey.current !== undefined,
    log,
  });
  const liveEdges = new LiveEdges({
    store,
    windows: liveWindows,
    metrics,
    viewersOf: (streamId) => events.viewersOf(streamId),
    log,
  });
  events.onLive((streamId, e) => {
    liveEdges.heard(streamId, e).catch((err: unknown) => log.warn({ err, streamId }, "live edge not sent"));
  });
  const host: SessionHost = {
    log,
    store,
    metrics,
    stats,
    planner,
    planSlot: (plan) => planSlots(plan),
    seederAuth,
    peerProbe:
      opts.peerProbe === false
        ? undefined
        : new PeerProbe({ ...DEFAULT_PEER_PROBE, ...opts.peerProbe }, undefined, (result) =>
            metrics.peerProbes.inc({ result }),
          ),
    ticketKeys: () => ticketKeys.publicKeys,
    networkKey: () => networkKey.get(),
    sessionStarted: (s) => sessions.add(s),
    sessionEnded: async (s, why) => {
      if (!sessions.remove(s)) return;
      stats.sessionEnded(s);
      publishLive.sessionEnded(s);
      for (const streamId of s.joined.keys()) liveEdges.forget(streamId, s);
      for (const streamId of s.streams()) {
        void events.useStream(s.peerId, streamId, false);
        planner.forget(streamId, s.peerId);
        await events.leaveSwarm(streamId, s.peerId);
      }
      log.info({ peerId: s.peerId, host: s.host, role: s.role, why }, "session ended");
    },
    isLocal: (peerId) => sessions.has(peerId),
    setHungry: (s, streamId, hungry) => sessions.setHungry(s, streamId, hungry),
    useStream: (s, streamId, using) => events.useStream(s.peerId, streamId, using),
    liveEdgeHeard: (streamId) => liveWindows.edgeHeard(streamId, LIVE_EDGE_WAIT_MS),
    withdraw: (transfers, except) => events.withdraw(transfers, except),
    leaveSwarm: (streamId, peerId) => events.leaveSwarm(streamId, peerId),
    announce: (streamId, e) => events.announce(streamId, e),
    holdingsAdded: (streamId, peerId, chunks) => {
      events.holdingsAdded(streamId, peerId, chunks);
      stats.holdingsAdded(streamId, peerId, chunks);
    },
    joinedMessage: (meta) => catalog.joinedMessage(meta),
    publish: (s, p) => (p.live ? publishLive.publish(s, p) : publishFile.publish(s, p)),
    liveChunks: (s, m) => publishLive.claims(s, m),
    unpublished: (s, streamId) => publishLive.unpublished(s, streamId),
  };
  const server = new TrackerServer(
    {
      host: opts.host,
      port: opts.port,
      tls: opts.tls,
      plaintextLoopback: opts.plaintextLoopback,
      maxMessageBytes: opts.maxMessageBytes ?? MAX_PEER_MESSAGE_BYTES,
      connectionIdleMs: opts.connectionIdleMs,
      limits: opts.limits ?? DEFAULT_PEER_LIMITS,
      metrics,
      log,
    },
    {
      session: (call) => new Session(host, call),
      describeStream: (req) => catalog.describeStream(req),
      listStreams: (req) => catalog.listStreams(req),
      hashPieces: (req) => catalog.hashPieces(req),
    },
  );
  const tick = new Tick({
    store,
    sessions,
    events,
    lease,
    metrics,
    health: server.health,
    log,
    peerTtlMs: opts.peerTtlMs ?? 30_000,
    streamRetireMs: opts.streamRetireMs ?? 300_000,
    draining,
    stopping: () => server.stopping,
  });
  // rotated ticket keys go to every session
  ticketKeys.onChange(() => {
    const network = networkKey.current;
    sessions.broadcast({
      body: { $case: "keys", value: { ticketKeys: ticketKeys.publicKeys, networkKeys: network ? [network] : [] } },
    });
  });

  const { port, loopbackPort } = await server.listen();
  address = `${opts.host}:${port}`;
  void networkKey.fetch();
  tick.start();
  stats.start();
  const tokens = opts.seederTokens;
  const unwatchTokens = tokens?.onChange(() => sessions.endRevokedSeeders(tokens, seederAuth));
  if (!tokens) log.warn("seeders are not authenticated: anyone can publish; set --seeder-tokens");
  server.serve(port, loopbackPort, { checksum: opts.checksum, checksumTls: !!opts.checksumTls });

  const drain = () =>
    server.drain(opts.drainDelayMs ?? 0, {
      stopWork: async () => {
        tick.stop();
        stats.stop();
        publishLive.close();
        liveEdges.close();
        unwatchTokens?.();
        networkKey.stop();
        await lease.release();
        await sessions.terminateAll(unavailable("tracker shutting down"));
        await events.close();
      },
      closeClients: () => checksum.close(),
    });
  return { port, loopbackPort, health: server.health, drain };
}
