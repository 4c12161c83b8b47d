import type { Logger } from "@distribustream/runtime";
import { boundsRange, type StoreInfo, type StreamMeta, type SwarmStore } from "@distribustream/swarm-store";
import type {
  AvailabilityStrip,
  ChecksumRow,
  HistoryPoint,
  StatsSnapshot,
  StoreRow,
  StreamDetail,
  StreamRow,
} from "./api.js";
import { bucketAvailability } from "./availability.js";
import type { ChecksumProbe } from "./checksumProbe.js";
import { delayQuantile, type FleetView, type NameTotals } from "./fleetView.js";

/** Rows of /api/stats.json at most (the streams with the most viewers). */
export const MAX_STREAM_ROWS = 200;
/** How often the list of streams and the store's INFO are read again. */
const LIST_EVERY_MS = 5_000;
/** How often a watched stream's availability is read again. */
const AVAILABILITY_EVERY_MS = 2_000;
/** History points kept per stream: 10 minutes at one a second. */
const HISTORY_POINTS = 600;
/** Streams reported by replicas but not listed (an older version still being finished) read at most. */
const UNLISTED_STREAMS = 50;
const PING_TIMEOUT_MS = 1_000;

interface History {
  points: HistoryPoint[];
  last: { t: number; peerBytes: number; seederBytes: number } | undefined;
}

/**
 * The figures the pages show, computed once per update for every browser:
 * the fleet's summaries (FleetView) joined with what the swarm store says
 * of the streams (read-only: its list, metas, peer counts, availability).
 * Its store reads depend on the number of streams shown and watched, never
 * on the number of browsers.
 */
export class Snapshots {
  private listed: StreamMeta[] = [];
  private listedAtMs = 0;
  private info: StoreInfo | undefined;
  private latencyMs: number | null = null;
  private storeUp = false;
  private readonly histories = new Map<string, History>();
  private readonly strips = new Map<string, { atMs: number; strip: AvailabilityStrip }>();
  private latest: StatsSnapshot | undefined;
  private rows = new Map<string, StreamRow>();

  constructor(
    private readonly store: SwarmStore,
    private readonly fleet: FleetView,
    private readonly checksum: ChecksumProbe | undefined,
    private readonly log: Logger,
  ) {}

  /** The latest snapshot (computed by `refresh`). */
  get current(): StatsSnapshot | undefined {
    return this.latest;
  }

  /** Computes the snapshot of now: one pass of store reads, the same for any number of browsers. */
  async refresh(nowMs = Date.now()): Promise<StatsSnapshot> {
    // the reads of one update go out together: under load, the store's latency is paid about twice, not per read
    const pinged = this.ping();
    await this.list(nowMs);
    const totals = this.fleet.totalsByName(nowMs);
    const viewers = this.fleet.viewersByStream(nowMs);
    const metas = new Map(this.listed.map((m) => [m.streamId, m]));
    // streams the replicas report but the list does not name (an older version still being finished)
    const unlisted = [...viewers.keys()].filter((id) => !metas.has(id)).slice(0, UNLISTED_STREAMS);
    for (const m of await Promise.all(unlisted.map((id) => this.store.getStream(id).catch(() => undefined)))) {
      if (m) metas.set(m.streamId, m);
    }
    const byViewers = [...metas.values()]
      .map((m) => ({ m, viewers: viewers.get(m.streamId) ?? 0 }))
      .sort((a, b) => b.viewers - a.viewers || (a.m.name < b.m.name ? -1 : a.m.name > b.m.name ? 1 : 0))
      .slice(0, MAX_STREAM_ROWS);
    const rows = await Promise.all(byViewers.map(({ m }) => this.row(m, totals, nowMs)));
    await pinged;
    this.rows = new Map(rows.map((r) => [r.streamId, r]));
    for (const r of rows) this.record(r, nowMs);
    for (const id of this.histories.keys()) if (!this.rows.has(id)) this.histories.delete(id);

    const replicas = this.fleet.replicaRows(nowMs);
    const alive = replicas.filter((r) => r.alive);
    let peerBytes = 0;
    let seederBytes = 0;
    let completed = 0;
    for (const t of totals.values()) {
      peerBytes += t.peerBytes;
      seederBytes += t.seederBytes;
      completed += t.completed;
    }
    const store: StoreRow = {
      kind: this.info?.kind ?? "memory",
      nodes: this.info?.nodes ?? 0,
      up: this.storeUp,
      latencyMs: this.latencyMs,
      usedMemoryBytes: this.info?.usedMemoryBytes ?? null,
      version: this.info?.version ?? "",
    };
    const checksum: ChecksumRow = {
      ...(this.checksum?.current() ?? {
        configured: false,
        up: null,
        bytesHashedTotal: null,
        hashBytesPerSecond: null,
        liveChunksAttestedPerSecond: null,
      }),
      reachableFromReplicas: alive.filter((r) => r.checksumReachable).length,
    };
    this.latest = {
      generatedMs: nowMs,
      totals: {
        streams: metas.size,
        viewers: alive.reduce((n, r) => n + r.viewers, 0),
        seeders: alive.reduce((n, r) => n + r.seeders, 0),
        unreachablePeers: alive.reduce((n, r) => n + r.unreachablePeers, 0),
        peerBytes,
        seederBytes,
        offloadPercent: offload(peerBytes, seederBytes),
        completed,
      },
      streams: rows,
      fleet: { replicas, store, checksum, seeders: this.fleet.seeders(nowMs) },
    };
    return this.latest;
  }

  /**
   * One stream's page: its row, its busiest peers, availability (read again
   * at most every 2 s), history and notices; undefined for an unknown
   * stream. `withHistory` false leaves only the newest history point.
   */
  async detail(
    streamId: string,
    peers: number,
    withHistory: boolean,
    nowMs = Date.now(),
  ): Promise<StreamDetail | undefined> {
    let row = this.rows.get(streamId);
    if (!row) {
      const meta = await this.store.getStream(streamId);
      if (!meta) return undefined;
      row = await this.row(meta, this.fleet.totalsByName(nowMs), nowMs);
    }
    const figures = this.fleet.stream(streamId, nowMs);
    const history = this.histories.get(streamId)?.points ?? [];
    return {
      generatedMs: nowMs,
      stream: row,
      peersTotal: row.viewers + row.seeders,
      peers: figures.peers.slice(0, peers),
      availability: await this.availability(row, nowMs),
      history: withHistory ? history : history.slice(-1),
      notices: this.fleet.recentNotices(50, streamId),
    };
  }

  private async ping(): Promise<void> {
    const t0 = performance.now();
    try {
      await this.store.ping(PING_TIMEOUT_MS);
      this.latencyMs = Math.round((performance.now() - t0) * 100) / 100;
      this.storeUp = true;
    } catch {
      this.latencyMs = null;
      this.storeUp = false;
    }
  }

  /** The stream list and the store's INFO, read again every LIST_EVERY_MS. */
  private async list(nowMs: number): Promise<void> {
    if (nowMs - this.listedAtMs < LIST_EVERY_MS) return;
    this.listedAtMs = nowMs;
    try {
      [this.listed, this.info] = await Promise.all([this.store.listStreams(), this.store.storeInfo()]);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "swarm store not read");
    }
  }

  private async row(meta: StreamMeta, totals: Map<string, NameTotals>, nowMs: number): Promise<StreamRow> {
    // a live stream's window moves every chunk: its meta is read again; a file's does not change
    const m = meta.kind === "live" ? ((await this.store.getStream(meta.streamId).catch(() => meta)) ?? meta) : meta;
    const counts = await this.store.peerCounts(m.streamId).catch(() => ({ peers: 0, seeders: 0 }));
    const figures = this.fleet.stream(m.streamId, nowMs);
    const t = totals.get(m.name) ?? { peerBytes: 0, seederBytes: 0, completed: 0 };
    const live = m.kind === "live";
    return {
      streamId: m.streamId,
      name: m.name,
      kind: m.kind,
      status: m.status,
      size: live ? null : m.size,
      chunkSize: m.chunkSize,
      chunks: live ? Math.max(0, m.high - m.low + 1) : m.chunkCount,
      window: live ? { low: m.low, high: m.high, windowChunks: m.windowChunks } : null,
      liveEdge: live && m.high >= 0 ? m.high : null,
      ended: live && m.ended,
      viewers: counts.peers,
      seeders: counts.seeders,
      completed: t.completed,
      peerBytes: t.peerBytes,
      seederBytes: t.seederBytes,
      offloadPercent: offload(t.peerBytes, t.seederBytes),
      delayP50Ms: live ? delayQuantile(figures.delayHistogram, 0.5) : null,
      delayP95Ms: live ? delayQuantile(figures.delayHistogram, 0.95) : null,
    };
  }

  private record(r: StreamRow, nowMs: number): void {
    let h = this.histories.get(r.streamId);
    if (!h) this.histories.set(r.streamId, (h = { points: [], last: undefined }));
    const seconds = h.last ? Math.max(0.001, (nowMs - h.last.t) / 1000) : 1;
    h.points.push({
      t: nowMs,
      offloadPercent: r.offloadPercent,
      // counters go back when a replica is gone: no negative rate then
      peerRate: h.last ? Math.max(0, Math.round((r.peerBytes - h.last.peerBytes) / seconds)) : 0,
      seederRate: h.last ? Math.max(0, Math.round((r.seederBytes - h.last.seederBytes) / seconds)) : 0,
    });
    if (h.points.length > HISTORY_POINTS) h.points.splice(0, h.points.length - HISTORY_POINTS);
    h.last = { t: nowMs, peerBytes: r.peerBytes, seederBytes: r.seederBytes };
  }

  private async availability(row: StreamRow, nowMs: number): Promise<AvailabilityStrip> {
    const kept = this.strips.get(row.streamId);
    if (kept && nowMs - kept.atMs < AVAILABILITY_EVERY_MS) return kept.strip;
    const bounds = row.window ?? { low: 0, high: row.chunks - 1 };
    const segments = await this.store.availability(row.streamId, boundsRange(bounds)).catch(() => []);
    const strip = bucketAvailability(bounds.low, bounds.high, segments);
    this.strips.set(row.streamId, { atMs: nowMs, strip });
    for (const [id, s] of this.strips) if (nowMs - s.atMs > 60_000) this.strips.delete(id);
    return strip;
  }
}

function offload(peerBytes: number, seederBytes: number): number | null {
  const all = peerBytes + seederBytes;
  return all > 0 ? Math.round((peerBytes / all) * 10_000) / 100 : null;
}
