import { RangeSet, type ChunkRange } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";
import {
  FLEET_LIMITS,
  LIVE_DELAY_BUCKETS_MS,
  fleetText,
  type FleetNotice,
  type FleetPeer,
  type FleetSeeder,
  type FleetStream,
  type FleetTotals,
  type ReplicaStats as ReplicaStatsMessage,
  type SourceTrust,
  type SwarmStore,
  type TransferRecord,
} from "@distribustream/swarm-store";
import type { TrackerMetrics } from "./metrics.js";
import type { JoinedStream, Session, SessionStats } from "./session.js";
import type { SessionRegistry } from "./sessions.js";

/** How often a summary goes out. */
export const STATS_INTERVAL_MS = 1_000;
/** A live viewer's delay counts in the stream's figures this long after its last Position. */
const DELAY_FRESH_MS = 10_000;
/** Weight of the newest second in a peer's rates (an exponential moving average). */
const RATE_WEIGHT = 0.5;
/** A store ping slower than this counts as failed. */
const PING_TIMEOUT_MS = 1_000;

/** What this replica knows of one peer in one stream. */
export interface PeerFigures {
  /** Bytes fetched / served since the last summary. */
  down: number;
  up: number;
  downRate: number;
  upRate: number;
  /** Chunks held (local viewers of files; -1 unknown). */
  held: number;
  trust: SourceTrust | undefined;
  delayMs: number;
  delayAtMs: number;
  /** Its Position reached the end of the file (counted once). */
  completed: boolean;
}

/** A peer's figures before anything is known of it (and those of a local session the stream has none for yet). */
export const NO_FIGURES: Readonly<PeerFigures> = {
  down: 0,
  up: 0,
  downRate: 0,
  upRate: 0,
  held: -1,
  trust: undefined,
  delayMs: -1,
  delayAtMs: 0,
  completed: false,
};

export interface StreamFigures {
  name: string;
  kind: "file" | "live";
  peers: Map<string, PeerFigures>;
}

export interface ReplicaStatsOptions {
  replicaId: string;
  /** This replica's PDTP address (host:port). */
  address: string;
  store: SwarmStore;
  sessions: SessionRegistry;
  metrics: TrackerMetrics;
  /** Whether this replica holds the cleanup lease now. */
  cleanupLeader: () => boolean;
  /** Whether it has reached the checksum service (it has the network key). */
  checksumReachable: () => boolean;
  log: Logger;
  intervalMs?: number;
}

/**
 * This replica's figures for the dashboard: what its sessions report (rates,
 * held chunks, sources' trust, live delays, completions, rejected chunks and
 * bans), summarised about once a second and published on the store's fleet
 * channel. Every list is bounded (FLEET_LIMITS); the delivered-bytes and
 * completion figures are read from the same counters as the Prometheus
 * metrics, so the dashboard shows what /metrics says.
 */
export class ReplicaStats implements SessionStats {
  private readonly streams = new Map<string, StreamFigures>();
  private notices: FleetNotice[] = [];
  private noticesDropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly startedMs = Date.now();
  private lastMs = Date.now();
  private lastDirectives: number | undefined;
  private storeLatencyMs = -1;
  /** Last value of each name's totals sent, and when it last changed (the most recently changed are sent first). */
  private readonly totalsChanged = new Map<string, { key: string; atMs: number }>();
  private publishing = false;

  constructor(private readonly o: ReplicaStatsOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? STATS_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  // ---- what sessions tell (SessionStats) -----------------------------------------

  joined(s: Session, j: JoinedStream, have: readonly ChunkRange[]): void {
    const held = new RangeSet();
    for (const r of have) {
      const first = Math.max(r.first, j.bounds.low);
      const last = Math.min(r.last, j.bounds.high);
      if (first <= last) held.add({ first, last });
    }
    const f = this.peer(j, s.peerId);
    f.held = j.shape.kind === "file" ? held.count : -1;
    f.completed = false;
    this.notice(j.streamId, "joined", s.peerId, `${s.dataHost}:${s.dataPort} ${s.agent}`);
  }

  /** Chunks newly held by a peer (its Have, or a transfer's verified chunks). */
  holdingsAdded(streamId: string, peerId: string, chunks: number): void {
    const f = this.streams.get(streamId)?.peers.get(peerId);
    if (f && f.held >= 0) f.held += chunks;
  }

  settled(s: Session, j: JoinedStream, t: TransferRecord, bytes: number, trust: SourceTrust | undefined): void {
    this.peer(j, s.peerId).down += bytes;
    const server = this.peer(j, t.serverId);
    server.up += bytes;
    if (trust) server.trust = trust;
  }

  rejected(s: Session, t: TransferRecord, detail: string): void {
    this.notice(t.streamId, "bad-chunk", t.serverId, `reported by ${s.peerId}: ${detail}`);
  }

  banned(streamId: string, serverId: string, reason: "bad_data" | "unreachable"): void {
    this.notice(streamId, "banned", serverId, reason === "bad_data" ? "bad data" : "unreachable");
  }

  position(s: Session, j: JoinedStream, nextChunk: number, delaysMs: readonly number[]): void {
    const f = this.peer(j, s.peerId);
    if (delaysMs.length > 0) {
      f.delayMs = median(delaysMs);
      f.delayAtMs = Date.now();
    }
    if (j.shape.kind === "file" && nextChunk > j.bounds.high && !f.completed) {
      f.completed = true;
      this.o.metrics.completed.inc({ stream: this.o.metrics.streamLabel(j.name) });
      this.notice(j.streamId, "completed", s.peerId, "");
    }
  }

  /** A session ended: its figures go (what others credited it with fades with its rates). */
  sessionEnded(s: Session): void {
    for (const streamId of s.joined.keys()) {
      const f = this.streams.get(streamId)?.peers.get(s.peerId);
      if (!f) continue;
      if (!f.completed) this.notice(streamId, "left", s.peerId, "");
      f.held = -1;
    }
  }

  // ---- the summary ---------------------------------------------------------------

  /** The summary as of now (rates over the time since the last one). */
  async summary(): Promise<ReplicaStatsMessage> {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - this.lastMs) / 1000);
    this.lastMs = now;
    const started = (await this.o.metrics.transfersStarted.get()).values[0]?.value ?? 0;
    const directivesPerSecond = this.lastDirectives === undefined ? 0 : (started - this.lastDirectives) / seconds;
    this.lastDirectives = started;

    // who is local in which stream, now
    const local = new Map<string, LocalPeers>();
    let viewers = 0;
    let seeders = 0;
    let unreachablePeers = 0;
    const seederSessions: Session[] = [];
    for (const s of this.o.sessions.all()) {
      if (s.closed) continue;
      if (s.role === "seeder") {
        seeders++;
        seederSessions.push(s);
        for (const id of s.inSwarm) at(local, id, s).seeders.push(s);
      } else if (s.role === "viewer") {
        viewers++;
        if (s.unreachable) unreachablePeers++;
        for (const id of s.joined.keys()) at(local, id, s).viewers.push(s);
      }
    }

    const streams: FleetStream[] = [];
    const upBySeeder = new Map<string, number>();
    for (const [streamId, st] of this.streams) {
      const here = local.get(streamId) ?? { viewers: [], seeders: [], byId: new Map() };
      for (const [peerId, f] of st.peers) {
        f.downRate = RATE_WEIGHT * (f.down / seconds) + (1 - RATE_WEIGHT) * f.downRate;
        f.upRate = RATE_WEIGHT * (f.up / seconds) + (1 - RATE_WEIGHT) * f.upRate;
        if (f.downRate < 1 && f.down === 0) f.downRate = 0;
        if (f.upRate < 1 && f.up === 0) f.upRate = 0;
        f.down = f.up = 0;
        // a peer of no session here is kept while it is credited with something
        if (!here.byId.has(peerId) && f.downRate === 0 && f.upRate === 0) st.peers.delete(peerId);
      }
      if (st.peers.size === 0 && here.byId.size === 0) {
        this.streams.delete(streamId);
        continue;
      }
      for (const s of here.seeders) {
        const rate = st.peers.get(s.peerId)?.upRate ?? 0;
        upBySeeder.set(s.peerId, (upBySeeder.get(s.peerId) ?? 0) + rate);
      }
      streams.push({
        streamId,
        name: fleetText(st.name),
        kind: st.kind,
        viewers: here.viewers.length,
        seeders: here.seeders.length,
        delayHistogram: st.kind === "live" ? this.delayHistogram(st, here.viewers, now) : [],
        peers: topPeers(st, here.byId),
      });
    }
    streams.sort((a, b) => b.viewers - a.viewers);
    streams.length = Math.min(streams.length, FLEET_LIMITS.streams);

    const notices = this.notices;
    const noticesDropped = this.noticesDropped;
    this.notices = [];
    this.noticesDropped = 0;
    return {
      replicaId: fleetText(this.o.replicaId),
      address: fleetText(this.o.address),
      startedMs: this.startedMs,
      sentMs: now,
      intervalMs: this.o.intervalMs ?? STATS_INTERVAL_MS,
      viewers,
      seeders,
      directivesPerSecond: round(Math.max(0, directivesPerSecond), 1),
      storeLatencyMs: this.storeLatencyMs,
      storeUp: this.storeLatencyMs >= 0,
      cleanupLeader: this.o.cleanupLeader(),
      checksumReachable: this.o.checksumReachable(),
      unreachablePeers,
      streams,
      totals: await this.totals(now),
      seederSessions: seederSessions.slice(0, FLEET_LIMITS.seeders).map((s): FleetSeeder => ({
        peerId: s.peerId,
        address: fleetText(`${s.dataHost}:${s.dataPort}`),
        agent: fleetText(s.agent),
        streams: s.inSwarm.size,
        upRate: Math.round(upBySeeder.get(s.peerId) ?? 0),
      })),
      notices,
      noticesDropped,
    };
  }

  private async tick(): Promise<void> {
    if (this.publishing) return;
    this.publishing = true;
    try {
      const t0 = performance.now();
      try {
        await this.o.store.ping(PING_TIMEOUT_MS);
        this.storeLatencyMs = round(performance.now() - t0, 2);
      } catch {
        this.storeLatencyMs = -1;
      }
      await this.o.store.publishFleetEvent({ type: "replica-stats", stats: await this.summary() });
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, "replica stats not published");
    } finally {
      this.publishing = false;
    }
  }

  /** Each name's delivered bytes and completions, from the Prometheus counters; the most recently changed first. */
  private async totals(now: number): Promise<FleetTotals[]> {
    const byName = new Map<string, FleetTotals>();
    const of = (name: string) => {
      let t = byName.get(name);
      if (!t) byName.set(name, (t = { name: fleetText(name), peerBytes: 0, seederBytes: 0, completed: 0 }));
      return t;
    };
    for (const v of (await this.o.metrics.deliveredBytes.get()).values) {
      const name = String(v.labels.stream ?? "");
      if (v.labels.source === "seeder") of(name).seederBytes += v.value;
      else of(name).peerBytes += v.value;
    }
    for (const v of (await this.o.metrics.completed.get()).values)
      of(String(v.labels.stream ?? "")).completed += v.value;
    for (const t of byName.values()) {
      const key = `${t.peerBytes}/${t.seederBytes}/${t.completed}`;
      const seen = this.totalsChanged.get(t.name);
      if (seen?.key !== key) this.totalsChanged.set(t.name, { key, atMs: now });
    }
    return [...byName.values()]
      .sort((a, b) => this.totalsChanged.get(b.name)!.atMs - this.totalsChanged.get(a.name)!.atMs)
      .slice(0, FLEET_LIMITS.totals);
  }

  /** How many of its viewers here have each delay now (those that told one lately). */
  private delayHistogram(st: StreamFigures, viewers: readonly Session[], now: number): number[] {
    const counts: number[] = new Array<number>(LIVE_DELAY_BUCKETS_MS.length + 1).fill(0);
    for (const s of viewers) {
      const f = st.peers.get(s.peerId);
      if (!f || f.delayMs < 0 || now - f.delayAtMs > DELAY_FRESH_MS) continue;
      let i = LIVE_DELAY_BUCKETS_MS.findIndex((bound) => f.delayMs <= bound);
      if (i < 0) i = LIVE_DELAY_BUCKETS_MS.length;
      counts[i]!++;
    }
    return counts;
  }

  private peer(j: JoinedStream, peerId: string): PeerFigures {
    let st = this.streams.get(j.streamId);
    if (!st) this.streams.set(j.streamId, (st = { name: j.name, kind: j.shape.kind, peers: new Map() }));
    let f = st.peers.get(peerId);
    if (!f) st.peers.set(peerId, (f = { ...NO_FIGURES }));
    return f;
  }

  private notice(streamId: string, type: FleetNotice["type"], peerId: string, detail: string): void {
    if (this.notices.length >= FLEET_LIMITS.events) {
      this.noticesDropped++;
      return;
    }
    this.notices.push({ atMs: Date.now(), streamId, type, peerId, detail: fleetText(detail) });
  }
}

/** This replica's sessions in one stream. */
interface LocalPeers {
  viewers: Session[];
  seeders: Session[];
  /** Both, by peer id. */
  byId: Map<string, Session>;
}

function at(m: Map<string, LocalPeers>, id: string, s: Session): LocalPeers {
  let v = m.get(id);
  if (!v) m.set(id, (v = { viewers: [], seeders: [], byId: new Map() }));
  v.byId.set(s.peerId, s);
  return v;
}

interface PeerRow {
  peerId: string;
  f: Readonly<PeerFigures>;
  s: Session | undefined;
}

/** Banned first, then with bad reports, then the others. */
const rank = (r: PeerRow): number => (r.f.trust?.banned ? 0 : (r.f.trust?.bad ?? 0) > 0 ? 1 : 2);

/** Negative when `a` is shown before `b`; never 0 for two peers. */
function showFirst(a: PeerRow, b: PeerRow): number {
  return (
    rank(a) - rank(b) ||
    b.f.downRate + b.f.upRate - (a.f.downRate + a.f.upRate) ||
    (a.s ? 0 : 1) - (b.s ? 0 : 1) ||
    (a.peerId < b.peerId ? -1 : 1)
  );
}

/**
 * The peers worth showing: misbehaving ones first (banned, then with bad
 * reports), then the busiest, then the other local ones; at most
 * FLEET_LIMITS.peersPerStream. Local sessions bring their own and their
 * seeders' details. Runs every second over every peer of the stream, so it
 * keeps only the best so far (an insertion into a list of at most
 * peersPerStream) rather than sorting thousands of peers for two dozen.
 */
export function topPeers(st: StreamFigures, sessions: ReadonlyMap<string, Session>): FleetPeer[] {
  const limit = FLEET_LIMITS.peersPerStream;
  const best: PeerRow[] = [];
  const offer = (row: PeerRow): void => {
    if (best.length === limit && showFirst(row, best[limit - 1]!) > 0) return;
    let i = Math.min(best.length, limit - 1);
    while (i > 0 && showFirst(row, best[i - 1]!) < 0) i--;
    best.splice(i, 0, row);
    if (best.length > limit) best.pop();
  };
  for (const [peerId, f] of st.peers) offer({ peerId, f, s: sessions.get(peerId) });
  for (const [peerId, s] of sessions) if (!st.peers.has(peerId)) offer({ peerId, f: NO_FIGURES, s });
  return best.map(({ peerId, f, s }) => ({
    peerId,
    local: s !== undefined,
    role: s?.role ?? "viewer",
    address: s ? fleetText(`${s.dataHost}:${s.dataPort}`) : "",
    agent: s ? fleetText(s.agent) : "",
    downRate: Math.round(f.downRate),
    upRate: Math.round(f.upRate),
    held: s?.role === "viewer" ? f.held : -1,
    served: f.trust?.served ?? 0,
    failures: f.trust?.failures ?? 0,
    bad: f.trust?.bad ?? 0,
    banned: f.trust?.banned ?? false,
    delayMs: f.delayMs,
  }));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
