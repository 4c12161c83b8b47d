import { LIVE_DELAY_BUCKETS_MS, type FleetPeer, type ReplicaStats } from "@distribustream/swarm-store";
import type { NoticeRow, PeerRow, ReplicaRow, SeederRow } from "./api.js";

/** A replica silent for this many of its intervals (and at least GONE_MIN_MS) is shown gone. */
const GONE_INTERVALS = 3;
const GONE_MIN_MS = 3_000;
/** A replica silent this long is forgotten. */
const FORGET_MS = 5 * 60_000;
/** Recent notices kept, over all streams. */
const NOTICES_KEPT = 500;
/** Stream names whose delivered totals are remembered, per replica and for the forgotten replicas. */
const NAMES_KEPT = 10_000;

/** A stream's figures over the alive replicas. */
export interface StreamFleetFigures {
  /** Sessions in it over the alive replicas. */
  viewers: number;
  seeders: number;
  /** Live: viewers per delay bucket (LIVE_DELAY_BUCKETS_MS, then the rest). */
  delayHistogram: number[];
  peers: PeerRow[];
}

export interface NameTotals {
  peerBytes: number;
  seederBytes: number;
  completed: number;
}

interface Heard {
  stats: ReplicaStats;
  receivedMs: number;
  /** The replica's latest totals of every name it reported (a summary carries only the most recently changed). */
  totals: Map<string, NameTotals>;
}

/**
 * The fleet as the replicas' latest summaries tell it: the dashboard's one
 * subscription feeds `heard`, and every view is computed from the latest
 * summary of each replica (a replica silent for 3 of its intervals is gone,
 * and its current figures no longer count). What was delivered stays
 * delivered: a gone replica's totals keep counting, and are folded into
 * `retired` when it is forgotten. Pure: no I/O, the clock is passed in.
 */
export class FleetView {
  private readonly replicas = new Map<string, Heard>();
  private readonly notices: NoticeRow[] = [];
  /** Totals of the replicas forgotten, by name. */
  private readonly retired = new Map<string, NameTotals>();

  heard(stats: ReplicaStats, nowMs: number): void {
    const totals = this.replicas.get(stats.replicaId)?.totals ?? new Map<string, NameTotals>();
    for (const t of stats.totals) {
      totals.delete(t.name); // the most recently reported last, so the oldest are dropped first
      totals.set(t.name, { peerBytes: t.peerBytes, seederBytes: t.seederBytes, completed: t.completed });
    }
    trim(totals);
    this.replicas.set(stats.replicaId, { stats, receivedMs: nowMs, totals });
    for (const n of stats.notices) this.notices.push({ ...n, replicaId: stats.replicaId });
    if (this.notices.length > NOTICES_KEPT) this.notices.splice(0, this.notices.length - NOTICES_KEPT);
  }

  private isAlive(h: Heard, nowMs: number): boolean {
    return nowMs - h.receivedMs <= Math.max(GONE_MIN_MS, GONE_INTERVALS * h.stats.intervalMs);
  }

  private alive(nowMs: number): ReplicaStats[] {
    const out: ReplicaStats[] = [];
    for (const [id, h] of this.replicas) {
      if (nowMs - h.receivedMs > FORGET_MS) {
        this.replicas.delete(id);
        addTotals(this.retired, h.totals);
      } else if (this.isAlive(h, nowMs)) out.push(h.stats);
    }
    return out;
  }

  /** Every replica heard from in the last minutes, alive ones first, by address. */
  replicaRows(nowMs: number): ReplicaRow[] {
    this.alive(nowMs); // forgets the long-silent ones
    return [...this.replicas.values()]
      .map((h): ReplicaRow => {
        const { stats: s, receivedMs } = h;
        const alive = this.isAlive(h, nowMs);
        return {
          replicaId: s.replicaId,
          address: s.address,
          alive,
          lastSeenMs: receivedMs,
          uptimeSeconds: Math.max(0, Math.round((s.sentMs - s.startedMs) / 1000)),
          viewers: alive ? s.viewers : 0,
          seeders: alive ? s.seeders : 0,
          directivesPerSecond: alive ? s.directivesPerSecond : 0,
          storeLatencyMs: s.storeLatencyMs >= 0 ? s.storeLatencyMs : null,
          storeUp: s.storeUp,
          cleanupLeader: alive && s.cleanupLeader,
          checksumReachable: s.checksumReachable,
          unreachablePeers: alive ? s.unreachablePeers : 0,
        };
      })
      .sort((a, b) => Number(b.alive) - Number(a.alive) || (a.address < b.address ? -1 : 1));
  }

  /**
   * Each stream name's delivered bytes and completions over every replica
   * heard since the dashboard started, gone ones included: a replica that
   * died does not take back what it delivered.
   */
  totalsByName(nowMs: number): Map<string, NameTotals> {
    this.alive(nowMs); // folds the long-silent ones into `retired`
    const out = new Map<string, NameTotals>();
    addTotals(out, this.retired);
    for (const h of this.replicas.values()) addTotals(out, h.totals);
    return out;
  }

  /** Viewers (sessions) of each stream some alive replica reports, by id. */
  viewersByStream(nowMs: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.alive(nowMs))
      for (const st of s.streams) out.set(st.streamId, (out.get(st.streamId) ?? 0) + st.viewers);
    return out;
  }

  /** Streams some alive replica reports, by id. */
  streamIds(nowMs: number): Set<string> {
    const ids = new Set<string>();
    for (const s of this.alive(nowMs)) for (const st of s.streams) ids.add(st.streamId);
    return ids;
  }

  /** One stream over the alive replicas; its peers merged by id, the misbehaving and the busiest first. */
  stream(streamId: string, nowMs: number): StreamFleetFigures {
    const out: StreamFleetFigures = { viewers: 0, seeders: 0, delayHistogram: [], peers: [] };
    const peers = new Map<string, PeerRow>();
    for (const s of this.alive(nowMs)) {
      const st = s.streams.find((x) => x.streamId === streamId);
      if (!st) continue;
      out.viewers += st.viewers;
      out.seeders += st.seeders;
      st.delayHistogram.forEach((n, i) => (out.delayHistogram[i] = (out.delayHistogram[i] ?? 0) + n));
      for (const p of st.peers) merge(peers, p, s.replicaId);
    }
    const rank = (p: PeerRow) => (p.banned ? 0 : p.bad > 0 ? 1 : 2);
    out.peers = [...peers.values()].sort(
      (a, b) =>
        rank(a) - rank(b) ||
        b.downRate + b.upRate - (a.downRate + a.upRate) ||
        (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0),
    );
    return out;
  }

  /** Seeder sessions over the alive replicas. */
  seeders(nowMs: number): SeederRow[] {
    return this.alive(nowMs).flatMap((s) => s.seederSessions.map((x) => ({ ...x, replicaId: s.replicaId })));
  }

  /** The latest notices, newest first (of one stream, or all). */
  recentNotices(limit: number, streamId?: string): NoticeRow[] {
    const out: NoticeRow[] = [];
    for (let i = this.notices.length - 1; i >= 0 && out.length < limit; i--) {
      const n = this.notices[i]!;
      if (streamId === undefined || n.streamId === streamId) out.push(n);
    }
    return out;
  }
}

function addTotals(into: Map<string, NameTotals>, from: ReadonlyMap<string, NameTotals>): void {
  for (const [name, t] of from) {
    const o = into.get(name);
    if (o) {
      o.peerBytes += t.peerBytes;
      o.seederBytes += t.seederBytes;
      o.completed += t.completed;
    } else {
      into.set(name, { ...t });
    }
  }
  trim(into);
}

/** Keeps the NAMES_KEPT most recently added names. */
function trim(totals: Map<string, NameTotals>): void {
  for (const name of totals.keys()) {
    if (totals.size <= NAMES_KEPT) break;
    totals.delete(name);
  }
}

function merge(peers: Map<string, PeerRow>, p: FleetPeer, replicaId: string): void {
  let row = peers.get(p.peerId);
  if (!row) {
    row = {
      peerId: p.peerId,
      role: p.role,
      address: "",
      agent: "",
      replicaId: "",
      downRate: 0,
      upRate: 0,
      held: null,
      served: 0,
      failures: 0,
      bad: 0,
      banned: false,
      delayMs: null,
    };
    peers.set(p.peerId, row);
  }
  row.downRate += p.downRate;
  row.upRate += p.upRate;
  // trust counters are fleet-wide (from the store): the largest seen is the latest
  row.served = Math.max(row.served, p.served);
  row.failures = Math.max(row.failures, p.failures);
  row.bad = Math.max(row.bad, p.bad);
  row.banned ||= p.banned;
  if (p.local) {
    row.role = p.role;
    row.address = p.address;
    row.agent = p.agent;
    row.replicaId = replicaId;
    row.held = p.held >= 0 ? p.held : null;
    row.delayMs = p.delayMs >= 0 ? p.delayMs : null;
  }
}

/**
 * The q-quantile (0..1) of a delay histogram (LIVE_DELAY_BUCKETS_MS
 * buckets, then the rest), interpolated inside its bucket; null when empty.
 */
export function delayQuantile(histogram: readonly number[], q: number): number | null {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    const n = histogram[i]!;
    if (n === 0) continue;
    if (seen + n >= rank) {
      const lower = i === 0 ? 0 : LIVE_DELAY_BUCKETS_MS[i - 1]!;
      const upper = LIVE_DELAY_BUCKETS_MS[i];
      if (upper === undefined) return lower;
      return Math.round(lower + ((rank - seen) / n) * (upper - lower));
    }
    seen += n;
  }
  return LIVE_DELAY_BUCKETS_MS.at(-1)!;
}
