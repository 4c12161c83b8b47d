import { issueTicket, type Directive } from "@distribustream/pdtp";
import type { TicketKeys } from "./ticketKeys.js";
import type { SwarmStore, TransferRecord } from "@distribustream/swarm-store";
import { limitsFor, schedule, wantWindow, type SchedulerLimits } from "./scheduler.js";
import { plannableBounds, rangeBytes, shapeOf, type StreamShape } from "./streamKinds.js";

export interface PlannerOptions {
  maxDownloads: number;
  maxUploadsPeer: number;
  maxUploadsSeeder: number;
  /** Sources asked from the store per decision. */
  sourceSample: number;
  /** Floor of the transfer timeout. */
  minTransferTimeoutMs: number;
  /**
   * Slowest acceptable rate of one transfer before the fetcher's own rate is
   * measured; longer ranges get proportionally longer. A viewer on a 4 Mbit/s
   * link with 4 transfers in flight gets 128 KiB/s on each.
   */
  minBytesPerSecond: number;
  /** Extra ticket lifetime beyond the transfer timeout. */
  ticketMarginMs: number;
  /** A fetcher with nothing in flight for this long may take its urgent chunks from a seeder. */
  starveMs: number;
  /** Seconds of a fetcher's measured transfer rate one directive carries (up to the byte cap of a range). */
  directiveSeconds: number;
  random?: () => number;
}

export const DEFAULT_PLANNER: PlannerOptions = {
  maxDownloads: 4,
  maxUploadsPeer: 4,
  maxUploadsSeeder: 8,
  sourceSample: 12,
  minTransferTimeoutMs: 10_000,
  minBytesPerSecond: 128 * 1024,
  ticketMarginMs: 5_000,
  starveMs: 2_000,
  directiveSeconds: 8,
};

export interface Plan {
  directives: Directive[];
  /** True when the fetcher holds or fetches everything it wants. */
  satisfied: boolean;
  /** The stream's epoch (SwarmStore.streamEpoch) read before planning: a later one may offer more. */
  epoch: number;
  /** The fetcher has nothing in flight in the stream after this plan. */
  idle: boolean;
  /** Why the stream cannot be fetched any more (its hashing failed), if so. */
  failure?: string;
}

/**
 * What planning needs of a ready stream that never changes: numbers only
 * (never the manifest). Its bounds may move (a live stream's): they come
 * with each fetcherView.
 */
interface StreamInfo {
  shape: StreamShape;
  limits: SchedulerLimits;
}

/**
 * The scheduler's driver: reads one fetcher's view from the swarm store,
 * asks `schedule` what to fetch, records each transfer (the store enforces
 * the slot limits atomically, so concurrent replicas cannot overcommit) and
 * turns it into a signed directive.
 */
export class Planner {
  private readonly info = new Map<string, StreamInfo>();
  /** Soft, process-local hint: since when each fetcher (stream/peer) has had nothing in flight. */
  private readonly idleSince = new Map<string, number>();

  constructor(
    private readonly store: SwarmStore,
    private readonly keys: TicketKeys,
    private readonly opts: PlannerOptions = DEFAULT_PLANNER,
  ) {}

  /** What never changes of a ready stream is cached (bounded); its bounds and hashed frontier come with fetcherView. */
  private async streamInfo(streamId: string): Promise<StreamInfo | undefined> {
    const hit = this.info.get(streamId);
    if (hit) return hit;
    const meta = await this.store.getStream(streamId);
    if (!meta || meta.status !== "ready") return undefined;
    const { maxDownloads, maxUploadsPeer, maxUploadsSeeder } = this.opts;
    const info: StreamInfo = {
      shape: shapeOf(meta),
      limits: limitsFor(meta.chunkSize, { maxDownloads, maxUploadsPeer, maxUploadsSeeder }),
    };
    if (this.info.size >= 1024) this.info.clear();
    this.info.set(streamId, info);
    return info;
  }

  /**
   * How long a transfer of `bytes` may take before it is withdrawn: at least
   * the floor; three times what it should take at the rate the fetcher's
   * transfers get (`rate`, bytes/s), once measured; before that, long enough
   * at the slowest acceptable rate.
   */
  transferTimeoutMs(bytes: number, rate?: number): number {
    const slowest = rate === undefined ? this.opts.minBytesPerSecond : rate / 3;
    return Math.max(this.opts.minTransferTimeoutMs, Math.ceil((bytes / Math.max(1, slowest)) * 1000));
  }

  /** Forgets process-local hints about a fetcher that left. */
  forget(streamId: string, fetcherId: string): void {
    this.idleSince.delete(`${streamId}/${fetcherId}`);
  }

  /**
   * Plans one fetcher. `rate`: bytes/s one of its transfers gets with all its
   * slots busy (Session.slotRate), once measured; a directive then carries
   * about `directiveSeconds` of it. Until then it gets one transfer at a time
   * (a slow start: a slow link is not handed four full ranges at once).
   * `fetcherKey`: its session key, named in its tickets so that only it can use them.
   */
  async plan(
    streamId: string,
    fetcherId: string,
    nowMs: number,
    rate?: number,
    fetcherKey?: Uint8Array,
  ): Promise<Plan> {
    // one read: whatever changes after it shows as a newer epoch
    const { epoch, low, high, peer, transfers, hashedChunks, failure } = await this.store.fetcherView(
      streamId,
      fetcherId,
    );
    if (failure) return { directives: [], satisfied: true, epoch, idle: true, failure };
    const info = await this.streamInfo(streamId);
    if (!info) return { directives: [], satisfied: true, epoch, idle: true };
    const { shape } = info;
    const limits =
      rate === undefined
        ? { ...info.limits, maxDownloads: 1 }
        : {
            ...info.limits,
            maxRangeChunks: Math.max(
              1,
              Math.min(info.limits.maxRangeChunks, Math.floor((rate * this.opts.directiveSeconds) / shape.chunkSize)),
            ),
          };
    if (!peer || peer.role === "seeder") return { directives: [], satisfied: true, epoch, idle: true };
    if (peer.downloads >= limits.maxDownloads) return { directives: [], satisfied: false, epoch, idle: false };
    const inFlight = transfers.map((t) => t.range);
    const fetcher = {
      peerId: fetcherId,
      host: peer.host,
      mode: peer.mode,
      position: peer.position,
      holdings: peer.holdings,
      inFlight,
      downloads: peer.downloads,
    };
    const bounds = { low, high };
    const verifiable = plannableBounds(shape.kind, bounds, hashedChunks);
    const window = wantWindow(fetcher, verifiable, limits);
    const key = `${streamId}/${fetcherId}`;
    if (!window || peer.downloads > 0) this.idleSince.delete(key);
    if (!window) {
      // waiting at the hashed frontier is not satisfied: a stored piece bumps the epoch and replans it;
      // nor is waiting at a live edge: raiseHigh bumps it
      const waiting =
        shape.kind === "live" || (verifiable.high < high && wantWindow(fetcher, bounds, limits) !== undefined);
      const done = inFlight.length === 0 && !waiting;
      return { directives: [], satisfied: done, epoch, idle: inFlight.length === 0 };
    }
    let since = this.idleSince.get(key);
    if (peer.downloads === 0 && since === undefined) {
      if (this.idleSince.size >= 100_000) this.idleSince.clear();
      this.idleSince.set(key, (since = nowMs));
    }
    const starving = since !== undefined && nowMs - since >= this.opts.starveMs;
    const { availability, sources } = await this.store.planInputs(streamId, window, {
      exclude: fetcherId,
      limit: this.opts.sourceSample,
      maxUploadsPeer: limits.maxUploadsPeer,
      maxUploadsSeeder: limits.maxUploadsSeeder,
    });
    const assignments = schedule({
      fetcher,
      bounds: verifiable,
      limits,
      availability,
      sources,
      starving,
      ...(this.opts.random ? { random: this.opts.random } : {}),
    });
    const records: TransferRecord[] = [];
    for (const a of assignments) {
      records.push({
        transferId: await this.store.nextTransferId(),
        streamId,
        fetcherId,
        serverId: a.source.peerId,
        serverRole: a.source.role,
        range: a.range,
        startedMs: nowMs,
        expiresMs: nowMs + this.transferTimeoutMs(rangeBytes(shape, a.range), rate),
      });
    }
    // one store call for them all, each added (or refused) as if alone, in order
    const results = await this.store.addTransfers(records, limits);
    const directives: Directive[] = [];
    for (const [i, a] of assignments.entries()) {
      const rec = records[i]!;
      const res = results[i];
      if (res === "fetcher-busy") break;
      if (res !== "ok") continue;
      directives.push({
        transferId: rec.transferId,
        streamId,
        range: a.range,
        source: {
          peerId: a.source.peerId,
          host: a.source.host,
          port: a.source.port,
          seeder: a.source.role === "seeder",
        },
        ticket: issueTicket(
          {
            streamId,
            range: a.range,
            fetcherId,
            serverId: a.source.peerId,
            expiresMs: rec.expiresMs + this.opts.ticketMarginMs,
            fetcherKey,
          },
          this.keys.signer,
        ),
      });
    }
    if (directives.length > 0) this.idleSince.delete(key);
    return { directives, satisfied: false, epoch, idle: peer.downloads + directives.length === 0 };
  }
}
