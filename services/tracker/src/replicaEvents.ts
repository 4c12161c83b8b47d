import type { Logger } from "@distribustream/runtime";
import type { EventSubscription, StreamEvent, SwarmStore, TransferRecord } from "@distribustream/swarm-store";
import type { TrackerMetrics } from "./metrics.js";
import type { Session } from "./session.js";
import type { SessionRegistry } from "./sessions.js";

/**
 * Stream events between the replicas sharing a store: what this replica
 * tells the others (joins, departures, holdings, withdrawn transfers of
 * their fetchers) and what it hears from them on the channels of the
 * streams its sessions use. When the subscription reconnects (events may
 * have been lost), the sessions are resynchronised with the store.
 */
export class ReplicaEvents {
  /**
   * Events from the other replicas, on the channels of the streams that this
   * replica's sessions joined or published (`streamUsers`: stream id -> ids
   * of those sessions; a stream is watched while it has one).
   */
  private readonly subscription: EventSubscription;
  private readonly streamUsers = new Map<string, Set<string>>();
  /** Chunks newly held per peer per stream since the last "holdings" events. */
  private readonly pendingHoldings = new Map<string, Map<string, number>>();
  private resyncing: Promise<void> | undefined;
  /** Told every "live" event (a live stream's window moved). */
  private liveListener: ((streamId: string, e: Extract<StreamEvent, { type: "live" }>) => void) | undefined;

  constructor(
    private readonly store: SwarmStore,
    private readonly sessions: SessionRegistry,
    private readonly metrics: TrackerMetrics,
    private readonly log: Logger,
    /** True once the tracker drains: no resync then. */
    private readonly draining: () => boolean,
    /** No session of this replica uses the stream any more: its events are no longer followed. */
    private readonly unused: (streamId: string) => void = () => {},
  ) {
    this.subscription = store.subscribeEvents({
      event: (streamId, e) => this.onEvent(streamId, e),
      resync: () => void this.resync(),
    });
  }

  /**
   * Counts a session in (or out of) a stream's users; the stream's event
   * channel is watched while it has one. Resolves once subscribed, so that
   * a fetcher is planned only once its replica hears the stream's cancels.
   */
  async useStream(peerId: string, streamId: string, using: boolean): Promise<void> {
    let users = this.streamUsers.get(streamId);
    if (using) {
      if (!users) this.streamUsers.set(streamId, (users = new Set()));
      users.add(peerId);
      await this.subscription.watch(streamId);
      return;
    }
    if (!users?.delete(peerId) || users.size > 0) return;
    this.streamUsers.delete(streamId);
    this.unused(streamId);
    await this.subscription.unwatch(streamId).catch((err: unknown) => {
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

  /** Sets who hears the "live" events of the watched streams (LiveEdges). */
  onLive(listener: (streamId: string, e: Extract<StreamEvent, { type: "live" }>) => void): void {
    this.liveListener = listener;
  }

  /** This replica's sessions that joined the stream as viewers. */
  viewersOf(streamId: string): Session[] {
    const out: Session[] = [];
    for (const peerId of this.streamUsers.get(streamId) ?? []) {
      const s = this.sessions.get(peerId);
      if (s?.role === "viewer" && s.joined.has(streamId)) out.push(s);
    }
    return out;
  }

  /** Counts chunks a peer newly holds; they go out as one "holdings" event per stream per tick. */
  holdingsAdded(streamId: string, peerId: string, chunks: number): void {
    if (chunks <= 0) return;
    let m = this.pendingHoldings.get(streamId);
    if (!m) this.pendingHoldings.set(streamId, (m = new Map()));
    m.set(peerId, (m.get(peerId) ?? 0) + chunks);
  }

  /** Sends the holdings counted since the last call (the schedule tick calls it). */
  flushHoldings(): void {
    for (const [streamId, m] of this.pendingHoldings) {
      let chunks = 0;
      for (const n of m.values()) chunks += n;
      this.announce(streamId, { type: "holdings", peerIds: [...m.keys()], chunks });
    }
    this.pendingHoldings.clear();
  }

  close(): Promise<void> {
    return this.subscription.close().catch(() => undefined);
  }

  /** An event from a replica (or this one) about a stream some session of this replica uses. */
  private onEvent(streamId: string, e: StreamEvent): void {
    this.metrics.eventsReceived.inc({ type: e.type });
    if (e.type === "live") return this.liveListener?.(streamId, e);
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
    if (this.draining()) return;
    this.metrics.resyncs.inc();
    let cancelled = 0;
    for (const s of [...this.sessions.all()]) {
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
}
