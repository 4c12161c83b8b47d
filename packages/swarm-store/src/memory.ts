import { EventEmitter } from "node:events";
import { chunkCount, RangeSet, type ChunkRange } from "@distribustream/pdtp";
import { LoadIndex, ScoreIndex } from "./indexes.js";
import { SegmentCounts } from "./segments.js";
import type {
  AddTransferResult,
  AvailabilitySegment,
  ChunkBounds,
  EventHandlers,
  EventSubscription,
  ExpiredPeer,
  FetcherSnapshot,
  JoinResult,
  NewStream,
  PeerJoin,
  PeerState,
  SlotLimits,
  SourceCandidate,
  SourceOutcome,
  SourceQuery,
  PlanInputs,
  Settlement,
  SourceTrust,
  SettledTransfer,
  TransferSettlement,
  StoreInfo,
  StreamEvent,
  StreamMeta,
  SwarmStore,
  TransferRecord,
  TrustPolicy,
} from "./store.js";
import { checkOneFetcher, parseStreamEvent } from "./store.js";
import { parseFleetEvent, type FleetEvent } from "./fleet.js";

interface MemPeer {
  peerId: string;
  host: string;
  port: number;
  role: PeerJoin["role"];
  mode: PeerJoin["mode"];
  position: number;
  holdings: RangeSet;
  lastSeenMs: number;
  downloads: Set<number>;
  uploads: Set<number>;
  served: number;
  failures: number;
  strikes: number;
  bad: number;
  banned: boolean;
}

interface MemStream {
  meta: StreamMeta;
  manifest: Uint8Array | undefined;
  pieces: Map<number, Uint8Array>;
  peers: Map<string, MemPeer>;
  /** Viewers that can serve, by uploads: `sources` samples those with a free slot. */
  servers: LoadIndex;
  /** The same viewers by the highest chunk they hold. */
  reach: ScoreIndex<string>;
  /** Every peer holding something, by the lowest chunk it holds: raiseLow visits those below the new bound. */
  floor: ScoreIndex<string>;
  seeders: Set<string>;
  epoch: number;
  /** When a retirement sweep first found it without peers, at which epoch (see `retireStreams`). */
  idle: { atMs: number; epoch: number } | undefined;
  availability: SegmentCounts;
  /** Viewers holding each chunk (availability without copies in flight). */
  held: SegmentCounts;
  transfers: Map<number, TransferRecord>;
  /** The same transfers by the last chunk of their range: raiseLow finds those wholly below the new bound. */
  transferEnds: ScoreIndex<number>;
  /** Transfers whose copy counts in availability (their fetcher serves others). */
  counted: Set<number>;
  /** Host -> until when viewers joining from it join banned (banHost). */
  hostBans: Map<string, number>;
}

/** Whether a peer's copies count in availability: viewers that serve others do; seeders and banned peers do not. */
const counts = (p: MemPeer) => p.role !== "seeder" && p.port > 0 && !p.banned;

/** The highest chunk of non-empty holdings. */
function highest(h: RangeSet): number {
  const r = h.ranges();
  return r[r.length - 1]!.last;
}

/** The lowest chunk of non-empty holdings. */
function lowest(h: RangeSet): number {
  return h.ranges()[0]!.first;
}

/** The part of r within the stream's bounds (first > last when none). */
function clip(r: ChunkRange, b: ChunkBounds): ChunkRange {
  return { first: Math.max(b.low, r.first), last: Math.min(b.high, r.last) };
}

/** A viewer's holdings count in availability and in `held`; copies in flight only in availability. */
function holdersAdd(s: MemStream, r: ChunkRange, delta: number): void {
  const c = clip(r, s.meta);
  s.availability.add(c, delta);
  s.held.add(c, delta);
}

/**
 * The single-process swarm store (the default of `distribustream up`): the
 * same contract as the Redis store, held in maps. Operations are synchronous
 * underneath, so each one is atomic like its Redis script counterpart.
 */
export class MemorySwarmStore implements SwarmStore {
  private readonly streams = new Map<string, MemStream>();
  private readonly names = new Map<string, string>();
  private transferSeq = 0;
  private readonly leases = new Map<string, { holder: string; untilMs: number }>();
  private closed = false;
  /** Event bus: one event name per stream id; listeners are the subscriptions watching it. */
  private readonly bus = new EventEmitter().setMaxListeners(0);
  private readonly subscriptions = new Set<MemorySubscription>();

  private check(): void {
    if (this.closed) throw new Error("swarm store is closed");
  }

  async createStream(s: NewStream): Promise<StreamMeta> {
    this.check();
    const existing = this.streams.get(s.streamId);
    if (existing) return copyMeta(existing.meta);
    const state = { status: "accepted", readyMs: 0, hashedChunks: 0, failure: "" } as const;
    let meta: StreamMeta;
    if (s.kind === "file") {
      const count = chunkCount(s.size, s.chunkSize);
      meta = { ...s, chunkCount: count, low: 0, high: count - 1, ...state };
    } else meta = { ...s, low: 0, high: -1, ended: false, ...state };
    this.streams.set(s.streamId, {
      meta,
      manifest: undefined,
      pieces: new Map(),
      peers: new Map(),
      servers: new LoadIndex(),
      reach: new ScoreIndex(),
      floor: new ScoreIndex(),
      seeders: new Set(),
      hostBans: new Map(),
      epoch: 0,
      idle: undefined,
      availability: new SegmentCounts(meta.low, meta.high),
      held: new SegmentCounts(meta.low, meta.high),
      transfers: new Map(),
      transferEnds: new ScoreIndex(),
      counted: new Set(),
    });
    return copyMeta(meta);
  }

  async getStream(streamId: string): Promise<StreamMeta | undefined> {
    this.check();
    const s = this.streams.get(streamId);
    return s && copyMeta(s.meta);
  }

  async getManifest(streamId: string): Promise<Uint8Array | undefined> {
    this.check();
    const m = this.streams.get(streamId)?.manifest;
    return m && Uint8Array.from(m);
  }

  async putHashPiece(streamId: string, index: number, piece: Uint8Array, hashedChunks: number): Promise<boolean> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s || s.meta.status === "failed") return false;
    s.pieces.set(index, Uint8Array.from(piece));
    s.meta.hashedChunks = Math.max(s.meta.hashedChunks, hashedChunks);
    s.epoch++;
    return true;
  }

  async getHashPieces(streamId: string, first: number, count: number): Promise<Uint8Array[]> {
    this.check();
    const s = this.streams.get(streamId);
    const out: Uint8Array[] = [];
    for (let i = first; s && i < first + count; i++) {
      const p = s.pieces.get(i);
      if (!p) break;
      out.push(Uint8Array.from(p));
    }
    return out;
  }

  async failStream(streamId: string, reason: string): Promise<void> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return;
    s.meta.status = "failed";
    s.meta.failure = reason;
    s.pieces.clear();
    s.epoch++;
    if (this.names.get(s.meta.name) === streamId) this.names.delete(s.meta.name);
  }

  async markReady(streamId: string, manifest: Uint8Array, nowMs: number): Promise<{ replaced: string | undefined }> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) throw new Error(`unknown stream ${streamId}`);
    s.meta.status = "ready";
    s.manifest = Uint8Array.from(manifest);
    s.meta.readyMs = nowMs;
    const before = this.names.get(s.meta.name);
    this.names.set(s.meta.name, streamId);
    return { replaced: before !== undefined && before !== streamId ? before : undefined };
  }

  async streamIdByName(name: string): Promise<string | undefined> {
    this.check();
    return this.names.get(name);
  }

  async listStreams(): Promise<StreamMeta[]> {
    this.check();
    const out: StreamMeta[] = [];
    for (const id of this.names.values()) {
      const s = this.streams.get(id);
      if (s && s.meta.status === "ready") out.push(copyMeta(s.meta));
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async streamCount(): Promise<number> {
    this.check();
    return this.names.size;
  }

  async streamEpoch(streamId: string): Promise<number> {
    this.check();
    return this.streams.get(streamId)?.epoch ?? 0;
  }

  async removeStream(streamId: string): Promise<void> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return;
    this.streams.delete(streamId);
    if (this.names.get(s.meta.name) === streamId) this.names.delete(s.meta.name);
  }

  /** Looks at every stream (a memory store is one process's: few). */
  async retireStreams(nowMs: number, graceMs: number): Promise<string[]> {
    this.check();
    const retired: string[] = [];
    for (const [id, s] of this.streams) {
      if (s.peers.size > 0) s.idle = undefined;
      else if (s.idle?.epoch !== s.epoch) s.idle = { atMs: nowMs, epoch: s.epoch };
      else if (nowMs - s.idle.atMs >= graceMs) {
        await this.removeStream(id);
        retired.push(id);
      }
    }
    return retired;
  }

  async banHost(streamId: string, host: string, untilMs: number): Promise<void> {
    this.check();
    const s = this.streams.get(streamId);
    if (s && untilMs > (s.hostBans.get(host) ?? 0)) s.hostBans.set(host, untilMs);
  }

  async raiseLow(streamId: string, newLow: number): Promise<{ raised: boolean; dropped: TransferRecord[] }> {
    this.check();
    if (!Number.isSafeInteger(newLow)) throw new RangeError(`raiseLow: ${newLow} is not a chunk number`);
    const s = this.streams.get(streamId);
    if (!s || s.meta.kind !== "live" || newLow <= s.meta.low) return { raised: false, dropped: [] };
    // transfers wholly below: withdrawn as by takeTransfer, while their availability still counts
    const dropped: TransferRecord[] = [];
    for (const id of s.transferEnds.below(newLow)) {
      const t = this.dropTransfer(s, id);
      if (t) dropped.push(t);
    }
    s.meta.low = newLow;
    // counts below go wholesale; holdings from newLow on stay, so do their counts and reach
    s.availability.dropBelow(newLow);
    s.held.dropBelow(newLow);
    for (const id of s.floor.below(newLow)) {
      const p = s.peers.get(id)!;
      p.holdings = new RangeSet(p.holdings.intersect({ first: newLow, last: Number.MAX_SAFE_INTEGER }));
      if (p.holdings.isEmpty) {
        s.floor.remove(id);
        s.servers.remove(id);
        s.reach.remove(id);
      } else s.floor.set(id, lowest(p.holdings));
    }
    s.epoch++;
    return { raised: true, dropped };
  }

  async raiseHigh(streamId: string, high: number, ended = false): Promise<boolean> {
    this.check();
    if (!Number.isSafeInteger(high)) throw new RangeError(`raiseHigh: ${high} is not a chunk number`);
    const m = this.streams.get(streamId)?.meta;
    if (!m || m.kind !== "live" || (high <= m.high && (!ended || m.ended))) return false;
    const s = this.streams.get(streamId)!;
    if (high > m.high) {
      m.high = high;
      s.availability.grow(high);
      s.held.grow(high);
    }
    m.ended ||= ended;
    s.epoch++;
    return true;
  }

  async peerCounts(streamId: string): Promise<{ peers: number; seeders: number }> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return { peers: 0, seeders: 0 };
    return { peers: s.peers.size - s.seeders.size, seeders: s.seeders.size };
  }

  async joinPeer(streamId: string, p: PeerJoin, nowMs: number): Promise<JoinResult> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return { joined: false, dropped: [] };
    const dropped = s.peers.has(p.peerId) ? this.removePeer(s, p.peerId) : [];
    const holdings = new RangeSet();
    for (const r of p.have) holdings.add(clip(r, s.meta));
    const peer: MemPeer = {
      peerId: p.peerId,
      host: p.host,
      port: p.port,
      role: p.role,
      mode: p.mode,
      position: p.position,
      holdings,
      lastSeenMs: nowMs,
      downloads: new Set(),
      uploads: new Set(),
      served: 0,
      failures: 0,
      strikes: 0,
      bad: 0,
      // a viewer from a host banned for bad data joins banned: it may fetch, never serve
      banned: p.role === "viewer" && (s.hostBans.get(p.host) ?? 0) > nowMs,
    };
    s.peers.set(p.peerId, peer);
    if (p.role === "seeder") s.seeders.add(p.peerId);
    if (!holdings.isEmpty) s.floor.set(p.peerId, lowest(holdings));
    if (counts(peer)) {
      for (const r of holdings.ranges()) holdersAdd(s, r, 1);
      if (!holdings.isEmpty) {
        s.servers.add(p.peerId, 0);
        s.reach.raise(p.peerId, highest(holdings));
      }
    }
    s.epoch++;
    return { joined: true, dropped };
  }

  async leavePeer(streamId: string, peerId: string): Promise<TransferRecord[]> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s || !s.peers.has(peerId)) return [];
    return this.removePeer(s, peerId);
  }

  private removePeer(s: MemStream, peerId: string): TransferRecord[] {
    const peer = s.peers.get(peerId);
    if (!peer) return [];
    const dropped: TransferRecord[] = [];
    for (const id of [...peer.downloads, ...peer.uploads]) {
      const t = this.dropTransfer(s, id);
      if (t) dropped.push(t);
    }
    if (counts(peer)) for (const r of peer.holdings.ranges()) holdersAdd(s, r, -1);
    s.peers.delete(peerId);
    s.seeders.delete(peerId);
    s.servers.remove(peerId);
    s.reach.remove(peerId);
    s.floor.remove(peerId);
    s.epoch++;
    return dropped;
  }

  async getPeer(streamId: string, peerId: string): Promise<PeerState | undefined> {
    this.check();
    const p = this.streams.get(streamId)?.peers.get(peerId);
    if (!p) return undefined;
    return {
      peerId: p.peerId,
      host: p.host,
      port: p.port,
      role: p.role,
      mode: p.mode,
      position: p.position,
      holdings: p.holdings.clone(),
      lastSeenMs: p.lastSeenMs,
      downloads: p.downloads.size,
      uploads: p.uploads.size,
      served: p.served,
      failures: p.failures,
      strikes: p.strikes,
      bad: p.bad,
      banned: p.banned,
    };
  }

  async addHoldings(streamId: string, peerId: string, ranges: readonly ChunkRange[]): Promise<number> {
    this.check();
    const s = this.streams.get(streamId);
    const p = s?.peers.get(peerId);
    return s && p ? this.holdingsAdd(s, p, ranges) : 0;
  }

  private holdingsAdd(s: MemStream, p: MemPeer, ranges: Iterable<ChunkRange>): number {
    let added = 0;
    for (const raw of ranges) {
      const r = clip(raw, s.meta);
      if (r.first > r.last) continue;
      if (counts(p)) for (const gap of [...p.holdings.gaps(r)]) holdersAdd(s, gap, 1);
      added += p.holdings.add(r);
    }
    if (added > 0) {
      s.epoch++;
      s.floor.lower(p.peerId, lowest(p.holdings));
      if (counts(p)) {
        s.servers.add(p.peerId, p.uploads.size);
        s.reach.raise(p.peerId, highest(p.holdings));
      }
    }
    return added;
  }

  async setPosition(streamId: string, peerId: string, position: number): Promise<void> {
    this.check();
    const p = this.streams.get(streamId)?.peers.get(peerId);
    if (p) p.position = position;
  }

  async touchPeers(streamId: string, peerIds: readonly string[], nowMs: number): Promise<string[]> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return [...peerIds];
    const missing: string[] = [];
    for (const id of peerIds) {
      const p = s.peers.get(id);
      if (p) p.lastSeenMs = nowMs;
      else missing.push(id);
    }
    return missing;
  }

  async expirePeers(nowMs: number, ttlMs: number): Promise<ExpiredPeer[]> {
    this.check();
    const out: ExpiredPeer[] = [];
    for (const [streamId, s] of this.streams) {
      for (const p of [...s.peers.values()]) {
        if (p.lastSeenMs + ttlMs <= nowMs) {
          out.push({ streamId, peerId: p.peerId, role: p.role, transfers: this.removePeer(s, p.peerId) });
        }
      }
    }
    return out;
  }

  async recordSourceOutcome(
    streamId: string,
    peerId: string,
    outcome: SourceOutcome,
    policy: TrustPolicy,
  ): Promise<SourceTrust | undefined> {
    this.check();
    const s = this.streams.get(streamId);
    const p = s?.peers.get(peerId);
    return s && p ? this.outcomeRecord(s, p, outcome, policy) : undefined;
  }

  private outcomeRecord(s: MemStream, p: MemPeer, outcome: SourceOutcome, policy: TrustPolicy): SourceTrust {
    if (outcome === "ok") {
      p.served++;
      p.strikes = 0;
    } else if (outcome === "failed") {
      p.failures++;
      p.strikes++;
    } else p.bad++;
    const ban = p.bad >= policy.banAfterBad || (p.role !== "seeder" && p.strikes >= policy.banAfterStrikes);
    if (ban && !p.banned) {
      if (counts(p)) for (const r of p.holdings.ranges()) holdersAdd(s, r, -1);
      p.banned = true;
      s.servers.remove(p.peerId);
      s.reach.remove(p.peerId);
      s.epoch++;
    }
    return { served: p.served, failures: p.failures, strikes: p.strikes, bad: p.bad, banned: p.banned };
  }

  async availability(streamId: string, window: ChunkRange): Promise<AvailabilitySegment[]> {
    this.check();
    const s = this.streams.get(streamId);
    return s ? s.availability.slice(clip(window, s.meta)) : [];
  }

  async planInputs(streamId: string, window: ChunkRange, q: SourceQuery): Promise<PlanInputs> {
    // both read before either resolves: nothing comes between them
    const [availability, sources] = await Promise.all([
      this.availability(streamId, window),
      this.sources(streamId, window, q),
    ]);
    return { availability, sources };
  }

  async sources(streamId: string, window: ChunkRange, q: SourceQuery): Promise<SourceCandidate[]> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s) return [];
    const w = clip(window, s.meta);
    if (w.first > w.last) return [];
    const out: SourceCandidate[] = [];
    const consider = (p: MemPeer) => {
      if (p.peerId === q.exclude || p.banned || p.port === 0) return;
      if (p.uploads.size >= (p.role === "seeder" ? q.maxUploadsSeeder : q.maxUploadsPeer)) return;
      const held = new RangeSet(p.holdings.intersect(w));
      if (held.isEmpty) return;
      out.push({
        peerId: p.peerId,
        host: p.host,
        port: p.port,
        role: p.role,
        holdings: held,
        uploads: p.uploads.size,
        served: p.served,
        failures: p.failures,
        strikes: p.strikes,
        bad: p.bad,
        banned: p.banned,
      });
    };
    for (const id of s.seeders) consider(s.peers.get(id)!);
    if (q.limit <= 0 || !s.held.slice(w).some((seg) => seg.count > 0)) return out;
    // sample the smaller pool: the viewers with a free slot, or those holding something at or after the window
    const free = s.servers.countBelow(q.maxUploadsPeer);
    const ahead = s.reach.countFrom(w.first);
    const pool = Math.min(free, ahead);
    const at = ahead < free ? (k: number) => s.reach.at(s.reach.size - ahead + k)! : (k: number) => s.servers.at(k)!;
    const probes = Math.min(pool, 4 * q.limit);
    const start = Math.floor(Math.random() * pool);
    const viewersBefore = out.length;
    for (let k = 0; k < probes && out.length - viewersBefore < q.limit; k++) {
      consider(s.peers.get(at((start + k) % pool))!);
    }
    return out;
  }

  async nextTransferId(): Promise<number> {
    this.check();
    return ++this.transferSeq;
  }

  async addTransfer(t: TransferRecord, limits: SlotLimits): Promise<AddTransferResult> {
    this.check();
    const s = this.streams.get(t.streamId);
    const fetcher = s?.peers.get(t.fetcherId);
    const server = s?.peers.get(t.serverId);
    if (!s || !fetcher || !server) return "unknown-peer";
    if (t.range.first < s.meta.low || t.range.last > s.meta.high) return "out-of-bounds";
    if (server.banned) return "banned";
    if (fetcher.downloads.size >= limits.maxDownloads) return "fetcher-busy";
    if (server.uploads.size >= (server.role === "seeder" ? limits.maxUploadsSeeder : limits.maxUploadsPeer)) {
      return "server-busy";
    }
    const rec: TransferRecord = { ...t, range: { first: t.range.first, last: t.range.last } };
    s.transfers.set(t.transferId, rec);
    s.transferEnds.set(t.transferId, rec.range.last);
    fetcher.downloads.add(t.transferId);
    server.uploads.add(t.transferId);
    s.servers.shift(t.serverId, 1);
    if (counts(fetcher)) {
      s.counted.add(t.transferId);
      s.availability.add(clip(rec.range, s.meta), 1);
    }
    return "ok";
  }

  async addTransfers(transfers: readonly TransferRecord[], limits: SlotLimits): Promise<AddTransferResult[]> {
    checkOneFetcher(transfers);
    const out: AddTransferResult[] = [];
    for (const t of transfers) out.push(await this.addTransfer(t, limits));
    return out;
  }

  async settleTransfers(
    streamId: string,
    fetcherId: string,
    settlements: readonly Settlement[],
    policy: TrustPolicy,
  ): Promise<(SettledTransfer | undefined)[]> {
    const out: (SettledTransfer | undefined)[] = [];
    for (const { transferId, report } of settlements) {
      out.push(await this.settleTransfer(streamId, transferId, fetcherId, report, policy));
    }
    return out;
  }

  async takeTransfer(streamId: string, transferId: number, fetcherId?: string): Promise<TransferRecord | undefined> {
    this.check();
    const s = this.streams.get(streamId);
    if (!s || (fetcherId !== undefined && s.transfers.get(transferId)?.fetcherId !== fetcherId)) return undefined;
    return this.dropTransfer(s, transferId);
  }

  async settleTransfer(
    streamId: string,
    transferId: number,
    fetcherId: string,
    report: TransferSettlement,
    policy: TrustPolicy,
  ): Promise<SettledTransfer | undefined> {
    this.check();
    const s = this.streams.get(streamId);
    const t = s?.transfers.get(transferId);
    if (!s || !t || t.fetcherId !== fetcherId) return undefined;
    this.dropTransfer(s, transferId);
    const fetcher = s.peers.get(fetcherId);
    let added = 0;
    if (fetcher) {
      // within the transfer's range (holdingsAdd clips to the bounds and skips what is empty)
      const { first, last } = t.range;
      const verified = (report.verified ?? [t.range]).map((v) => ({
        first: Math.max(v.first, first),
        last: Math.min(v.last, last),
      }));
      added = this.holdingsAdd(s, fetcher, verified);
    }
    const server = s.peers.get(t.serverId);
    const trust = report.outcome && server ? this.outcomeRecord(s, server, report.outcome, policy) : undefined;
    return { transfer: t, added, ...(trust ? { trust } : {}) };
  }

  private dropTransfer(s: MemStream, transferId: number): TransferRecord | undefined {
    const t = s.transfers.get(transferId);
    if (!t) return undefined;
    s.transfers.delete(transferId);
    s.transferEnds.remove(transferId);
    s.peers.get(t.fetcherId)?.downloads.delete(transferId);
    s.peers.get(t.serverId)?.uploads.delete(transferId);
    s.servers.shift(t.serverId, -1);
    // clipped: a transfer straddling a raised low counts only from it on
    if (s.counted.delete(transferId)) s.availability.add(clip(t.range, s.meta), -1);
    s.epoch++;
    return t;
  }

  async transfersOf(streamId: string, fetcherId: string): Promise<TransferRecord[]> {
    this.check();
    const s = this.streams.get(streamId);
    const p = s?.peers.get(fetcherId);
    if (!s || !p) return [];
    return [...p.downloads].map((id) => s.transfers.get(id)!).filter(Boolean);
  }

  async fetcherView(streamId: string, fetcherId: string): Promise<FetcherSnapshot> {
    const meta = this.streams.get(streamId)?.meta;
    return {
      epoch: await this.streamEpoch(streamId),
      low: meta?.low ?? 0,
      high: meta?.high ?? -1,
      hashedChunks: meta?.hashedChunks ?? 0,
      failure: meta?.failure ?? "",
      peer: await this.getPeer(streamId, fetcherId),
      transfers: await this.transfersOf(streamId, fetcherId),
    };
  }

  async expireTransfers(nowMs: number): Promise<TransferRecord[]> {
    this.check();
    const out: TransferRecord[] = [];
    for (const s of this.streams.values()) {
      for (const t of [...s.transfers.values()]) {
        if (t.expiresMs <= nowMs) out.push(this.dropTransfer(s, t.transferId)!);
      }
    }
    return out;
  }

  /** In process, on the wall clock; one process is the only holder there is, but the semantics match Redis. */
  async acquireLease(name: string, holderId: string, ttlMs: number): Promise<boolean> {
    this.check();
    const now = Date.now();
    const cur = this.leases.get(name);
    if (cur && cur.holder !== holderId && cur.untilMs > now) return false;
    this.leases.set(name, { holder: holderId, untilMs: now + ttlMs });
    return true;
  }

  async releaseLease(name: string, holderId: string): Promise<void> {
    this.check();
    if (this.leases.get(name)?.holder === holderId) this.leases.delete(name);
  }

  async ping(): Promise<void> {
    this.check();
  }

  /** Delivers a copy of the event, asynchronously (like a pub/sub round trip), to the subscriptions watching the stream. */
  async publishEvent(streamId: string, event: StreamEvent): Promise<void> {
    this.check();
    const text = JSON.stringify(event);
    setImmediate(() => this.bus.emit(streamId, streamId, text));
  }

  /** Like publishEvent, on the bus's fleet channel. */
  async publishFleetEvent(event: FleetEvent): Promise<void> {
    this.check();
    const text = JSON.stringify(event);
    setImmediate(() => this.bus.emit(FLEET, text));
  }

  async storeInfo(): Promise<StoreInfo> {
    this.check();
    return { kind: "memory", nodes: 1, usedMemoryBytes: undefined, version: "" };
  }

  subscribeEvents(handlers: EventHandlers): EventSubscription {
    this.check();
    const sub = new MemorySubscription(this.bus, handlers, () => this.subscriptions.delete(sub));
    this.subscriptions.add(sub);
    return sub;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const sub of [...this.subscriptions]) await sub.close();
    this.leases.clear();
    this.streams.clear();
    this.names.clear();
  }
}

function copyMeta(m: StreamMeta): StreamMeta {
  return { ...m };
}

/** The bus's event name of the fleet channel (never a stream id). */
const FLEET = Symbol("fleet");

/** A subscription of the memory store: listeners on its in-process bus. It never misses events, so never resyncs. */
class MemorySubscription implements EventSubscription {
  private readonly streams = new Set<string>();
  private readonly listener: (streamId: string, text: string) => void;
  private readonly fleetListener: (text: string) => void;
  private fleet = false;
  private closed = false;

  constructor(
    private readonly bus: EventEmitter,
    handlers: EventHandlers,
    private readonly onClose: () => void,
  ) {
    this.listener = (streamId, text) => {
      const event = parseStreamEvent(text);
      if (event && this.streams.has(streamId)) handlers.event(streamId, event);
    };
    this.fleetListener = (text) => {
      const event = parseFleetEvent(text);
      if (event && this.fleet) handlers.fleet?.(event);
    };
  }

  async watchFleet(): Promise<void> {
    if (this.closed) throw new Error("event subscription is closed");
    if (this.fleet) return;
    this.fleet = true;
    this.bus.on(FLEET, this.fleetListener);
  }

  async unwatchFleet(): Promise<void> {
    if (!this.fleet) return;
    this.fleet = false;
    this.bus.off(FLEET, this.fleetListener);
  }

  get watching(): ReadonlySet<string> {
    return this.streams;
  }

  async watch(streamId: string): Promise<void> {
    if (this.closed) throw new Error("event subscription is closed");
    if (this.streams.has(streamId)) return;
    this.streams.add(streamId);
    this.bus.on(streamId, this.listener);
  }

  async unwatch(streamId: string): Promise<void> {
    if (!this.streams.delete(streamId)) return;
    this.bus.off(streamId, this.listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of this.streams) this.bus.off(id, this.listener);
    this.streams.clear();
    await this.unwatchFleet();
    this.onClose();
  }
}
