import { unavailable, type Health, type Logger } from "@distribustream/runtime";
import type { SwarmStore } from "@distribustream/swarm-store";
import type { CleanupLease } from "./cleanupLease.js";
import type { TrackerMetrics } from "./metrics.js";
import { DEFAULT_PLANNER } from "./planner.js";
import type { ReplicaEvents } from "./replicaEvents.js";
import type { Session } from "./session.js";
import type { SessionRegistry } from "./sessions.js";

const SCHEDULE_TICK_MS = 250;
/** A hungry peer with transfers in flight is replanned by the tick at most this often. */
const REPLAN_MS = 1_000;
const TRANSFER_SWEEP_MS = 1_000;
/**
 * Replans the schedule tick may have waiting or in progress. Every plan
 * waits for one of the replica's plan slots, first asked first served
 * (PLAN_SLOTS in tracker.ts): a tick that asked for every hungry peer of a
 * big swarm would put thousands of replans ahead of the plans that reports
 * ask for. Bounded, the replans a replica cannot keep up with wait for a
 * later tick.
 */
const MAX_TICK_PLANS = 64;
/** How often the swarm store is pinged for health, and how long a ping may take. */
const STORE_CHECK_MS = 1_000;

export interface TickOptions {
  store: SwarmStore;
  sessions: SessionRegistry;
  events: ReplicaEvents;
  lease: CleanupLease;
  metrics: TrackerMetrics;
  /** Set NOT_SERVING while the store does not answer. */
  health: Health;
  log: Logger;
  /** Peers not seen for this long leave their swarms. */
  peerTtlMs: number;
  /** Streams without a peer for this long are retired (forgotten) by the cleanup leader. */
  streamRetireMs: number;
  /** True once the tracker drains. */
  draining: () => boolean;
  /** True once the tracker was told to stop: its health stays NOT_SERVING through the drain delay. */
  stopping: () => boolean;
}

/**
 * The tracker's periodic work: the schedule tick (replans hungry peers),
 * the store's health check, the renewal of the cleanup lease, and, on the
 * lease holder, the expiry sweeps of transfers and peers and the retirement
 * of streams nobody is in.
 */
export class Tick {
  private readonly timers: NodeJS.Timeout[] = [];
  /** The swarm store answered the last health check. */
  private storeUp = true;
  /** Plans the schedule tick requested that are not over yet. */
  private tickPlans = 0;

  constructor(private readonly o: TickOptions) {}

  start(): void {
    const { peerTtlMs, lease } = this.o;
    this.every(SCHEDULE_TICK_MS, () => this.scheduleTick());
    this.every(TRANSFER_SWEEP_MS, () => this.sweepTransfers());
    this.every(Math.max(100, Math.floor(peerTtlMs / 3)), () => this.refreshPeers());
    this.every(Math.max(50, Math.floor(lease.leaseMs / 3)), () => lease.renew());
    this.every(Math.max(1000, Math.min(60_000, Math.floor(this.o.streamRetireMs / 4))), () => this.retireStreams());
    this.every(STORE_CHECK_MS, () => this.checkStore());
    void lease.renew();
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }

  private every(ms: number, fn: () => Promise<void>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.o.draining()) return;
      running = true;
      fn()
        .catch((err: unknown) => this.o.log.error({ err }, "tracker timer failed"))
        .finally(() => (running = false));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /**
   * Replans the hungry peers that Session.needsPlan picks, reading each
   * stream's epoch once (not once per peer). A peer's own reports, Have and
   * Position replan it at once; this catches what other peers changed.
   */
  private async scheduleTick(): Promise<void> {
    const { sessions, store } = this.o;
    this.o.events.flushHoldings();
    const epochs = new Map<string, number>();
    for (const [, streams] of sessions.hungry()) for (const id of streams) epochs.set(id, 0);
    for (const id of epochs.keys()) epochs.set(id, await store.streamEpoch(id));
    const now = Date.now();
    const when = {
      maxDownloads: DEFAULT_PLANNER.maxDownloads,
      starveMs: DEFAULT_PLANNER.starveMs,
      tickMs: SCHEDULE_TICK_MS,
      replanMs: REPLAN_MS,
    };
    const planned = (): void => {
      this.tickPlans--;
    };
    for (const [s, streams] of sessions.hungry()) {
      if (this.tickPlans >= MAX_TICK_PLANS) break;
      if (!s.keepingUp) continue;
      for (const id of streams) {
        const epoch = epochs.get(id);
        if (epoch !== undefined && s.needsPlan(id, epoch, now, when)) {
          if (s.requestPlan(planned)) this.tickPlans++;
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
      await this.o.store.ping(STORE_CHECK_MS);
    } catch (err) {
      up = false;
      reason = (err as Error).message;
    }
    if (up === this.storeUp || this.o.draining()) return;
    this.storeUp = up;
    this.o.metrics.storeUp.set(up ? 1 : 0);
    if (!this.o.stopping()) this.o.health.set(up ? "SERVING" : "NOT_SERVING");
    if (!up) {
      this.o.log.error({ reason }, "swarm store unreachable: health NOT_SERVING");
      return;
    }
    this.o.log.info("swarm store reachable again: health SERVING");
    await this.o.lease.renew();
    await this.refreshPeers();
  }

  private async sweepTransfers(): Promise<void> {
    if (!this.o.lease.held) return;
    const expired = await this.o.store.expireTransfers(Date.now());
    if (expired.length > 0) {
      this.o.log.debug({ count: expired.length }, "transfers expired");
      this.o.events.withdraw(expired, undefined, "expired");
    }
  }

  /**
   * Keeps live sessions' peers fresh in the store, ends the sessions whose
   * peer the store no longer has (so they re-join with what they hold), and,
   * on the cleanup leader, expires the peers nobody touched.
   */
  private async refreshPeers(): Promise<void> {
    const { sessions, store, events, log } = this.o;
    const now = Date.now();
    const byStream = new Map<string, string[]>();
    for (const s of sessions.all()) {
      for (const id of s.inSwarm) {
        const list = byStream.get(id) ?? [];
        list.push(s.peerId);
        byStream.set(id, list);
      }
    }
    const lost = new Set<Session>();
    for (const [streamId, peers] of byStream) {
      for (const peerId of await store.touchPeers(streamId, peers, now)) {
        const s = sessions.get(peerId);
        if (s?.inSwarm.has(streamId)) lost.add(s);
      }
    }
    if (lost.size > 0) {
      log.warn({ sessions: lost.size }, "peers missing from the swarm store: ending their sessions so they re-join");
      for (const s of lost) {
        void s.terminate(unavailable("the tracker lost this peer's swarm state; reconnect and join again"));
      }
    }
    if (!this.o.lease.held) return;
    const left = new Map<string, string[]>();
    for (const gone of await store.expirePeers(now, this.o.peerTtlMs)) {
      log.info({ peerId: gone.peerId, streamId: gone.streamId, role: gone.role }, "peer expired");
      events.withdraw(gone.transfers, gone.peerId);
      left.set(gone.streamId, [...(left.get(gone.streamId) ?? []), gone.peerId]);
      const s = sessions.get(gone.peerId);
      if (s) void s.terminate(unavailable("session expired from the swarm; reconnect"));
    }
    for (const [streamId, peerIds] of left) events.announce(streamId, { type: "left", peerIds });
  }

  /**
   * On the cleanup leader, forgets the streams that had no peer for the
   * retirement grace (see SwarmStore.retireStreams): without it a stream's
   * keys (meta, manifest, hash pieces, availability, its name) stay in the
   * store after everyone left, for ever. A seeder publishing it again later
   * has it hashed afresh.
   */
  private async retireStreams(): Promise<void> {
    if (!this.o.lease.held) return;
    const retired = await this.o.store.retireStreams(Date.now(), this.o.streamRetireMs);
    if (retired.length === 0) return;
    this.o.metrics.streamsRetired.inc(retired.length);
    this.o.log.info({ streams: retired.length, streamIds: retired.slice(0, 20) }, "streams retired: nobody in them");
  }
}
