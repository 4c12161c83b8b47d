/**
 * Redis layout. `ds` is the key prefix (option `prefix`). All keys of a
 * stream share the hash tag {id}, so on a Redis Cluster a stream lives on
 * one slot and every script below touches that slot only:
 *
 *   ds:{id}:meta      HASH    streamId name chunkSize version kind createdMs status readyMs, low high (the
 *                             chunk bounds, inclusive), hashed (chunks whose hashes are stored: the hashed
 *                             frontier), failure (why hashing failed, status "failed"), epoch (HINCRBY);
 *                             kind "file": size chunkCount (low 0, high chunkCount - 1; a file stored before
 *                             low and high has chunkCount only, and kind "on_demand"); kind "live":
 *                             windowChunks ended (0/1); segs "3": the layout of avail below
 *   ds:{id}:manifest  STRING  encoded SignedManifest: the small signed header (set by markReady)
 *   ds:{id}:pieces    HASH    piece index -> encoded SignedHashPiece (putHashPiece, in order as hashed;
 *                             getHashPieces is one HMGET of consecutive indexes; dropped by failStream)
 *   ds:{id}:peers     HASH    peerId -> JSON {h host, p port, r role, m mode, pos, sv served, fl failures,
 *                             st strikes, bd bad, bn banned, dl/ul ids of the transfers it fetches/serves,
 *                             lv "1" in a live stream (in floor while it holds something)}
 *   ds:{id}:have      HASH    peerId -> holdings "f-l,f-l" (sorted, disjoint), clipped to the bounds
 *   ds:{id}:seen      ZSET    member=peerId score=lastSeenMs
 *   ds:{id}:servers   ZSET    member=peerId score=transfers it serves now, for the viewers that can serve
 *                             (hold a chunk, have a data port, not banned): those with a free upload slot
 *                             are the ranks [0, ZCOUNT < max), which `sources` samples from a random rank
 *   ds:{id}:reach     ZSET    member=peerId score=highest chunk held, for the same viewers: those holding
 *                             something at or after chunk f are the last ZCOUNT [f, +inf) ranks; `sources`
 *                             samples them instead when they are fewer than the free servers
 *   ds:{id}:seeders   SET     peerIds of seeders (a stream has few)
 *   ds:{id}:hostbans  HASH    host -> untilMs: viewers joining from it join banned (banHost)
 *   ds:{id}:avail     ZSET    availability segments over [low, high]: member "<first chunk>:<avail>:<held>"
 *                             (avail: viewers holding + copies in flight; held: viewers holding only; both up
 *                             to the next segment's first chunk), score=first chunk (one starts at low;
 *                             raiseLow drops those below the new low). A range of segments is one
 *                             ZRANGEBYSCORE with both counts
 *   ds:{id}:held      ZSET    (and availc, heldc) the segments as earlier versions kept them: held with the
 *                             held counts and avail with availability only (meta segs "2"), before that the
 *                             counts in the HASHes availc and heldc (no segs): converted into avail and
 *                             deleted by the first script that reads the stream's meta
 *   ds:{id}:xfers     HASH    transferId -> JSON {id, f fetcher, s server, sr serverRole, a first, b last,
 *                             t0 startedMs, te expiresMs, c counted in availability, e "1" when in xferend}
 *   ds:{id}:xferexp   ZSET    member=transferId score=expiresMs
 *   ds:{id}:floor     ZSET    live streams only: member=peerId score=lowest chunk held, for every peer holding
 *                             something, so raiseLow visits only the peers holding a chunk below the new low
 *   ds:{id}:xferend   ZSET    live streams only: member=transferId score=last chunk of its range, so raiseLow
 *                             finds the transfers wholly below the new low
 *   ds:{id}:events    CHANNEL the stream's events between replicas (JSON StreamEvent): PUBLISH/SUBSCRIBE on
 *                             standalone, SPUBLISH/SSUBSCRIBE on a Cluster created with shardedSubscribers: true
 *                             (the channel then lives on the stream's slot, so events stay on its shard)
 *   ds:fleet          CHANNEL fleet events (JSON FleetEvent: each replica's stats summary, about once a second,
 *                             for the dashboard); PUBLISH/SUBSCRIBE, or SPUBLISH/SSUBSCRIBE on a sharded Cluster
 *                             (the channel lives on the slot of its name)
 *
 * Global keys (each on its own slot, never touched by a stream script):
 *   ds:lease:<name>       STRING holder id, with a TTL (PX): the holder of a lease (the cleanup leader)
 *   ds:names              HASH  name -> id of the ready stream the name points to
 *   ds:transfer-id        STRING the last transfer id given out: replicas take blocks of ids by INCRBY
 *   ds:expiry:peers       ZSET  member=streamId score<=earliest lastSeen of its peers
 *   ds:expiry:transfers   ZSET  member=streamId score<=earliest expiresMs of its transfers
 *   ds:streams            ZSET  member=streamId score=when the retirement sweep is to look at it next, minus the
 *                               grace: createdMs at first, then when it last saw the stream busy or first saw it
 *                               empty (retireStreams); the meta's "idle" field is "<ms>:<epoch>" of that sighting
 *
 * The expiry indexes let the sweeps read only the streams that are due. A
 * stream's score may be stale-early (a touch raised lastSeen, a transfer
 * ended): the sweep then finds nothing due in it and re-indexes it. Writers
 * add a stream (ZADD LT, after their stream script) only when their script
 * reports that the stream held nothing as early; the sweep does ZREM, then
 * reads the stream's earliest entry and ZADD LTs it back, so that a writer
 * racing the sweep is never lost. Every index update is idempotent.
 *
 * Costs below: n = peers in the stream, R = ranges of the peer(s) involved, S =
 * availability segments touched. "1 script" means one EVALSHA round trip.
 */
import { Cluster, Redis } from "ioredis";
import { chunkCount, RangeSet, type ChunkRange } from "@distribustream/pdtp";
import { GLOBAL_SCRIPTS, STREAM_KEYS, STREAM_SCRIPTS, type ScriptName } from "./redisScripts.js";
import type {
  AddTransferResult,
  AvailabilitySegment,
  EventHandlers,
  EventSubscription,
  ExpiredPeer,
  FetcherSnapshot,
  JoinResult,
  NewStream,
  PeerJoin,
  PeerRoleName,
  PeerState,
  PlanInputs,
  Settlement,
  SlotLimits,
  SourceCandidate,
  SourceOutcome,
  SourceQuery,
  SourceTrust,
  SettledTransfer,
  TransferSettlement,
  StoreInfo,
  StreamEvent,
  StreamMeta,
  StreamStatus,
  SwarmStore,
  TransferRecord,
  TrustPolicy,
  WantOrder,
} from "./store.js";
import { checkOneFetcher, parseStreamEvent } from "./store.js";
import { parseFleetEvent, type FleetEvent } from "./fleet.js";

export type RedisClient = Redis | Cluster;

export interface RedisSwarmStoreOptions {
  /** Prefix of every key (default "ds"); several deployments can share one Redis with different prefixes. */
  prefix?: string;
}

const META_FIELDS = [
  "streamId",
  "name",
  "chunkSize",
  "version",
  "kind",
  "createdMs",
  "status",
  "readyMs",
  "hashed",
  "failure",
  "low",
  "high",
  "size",
  "chunkCount",
  "windowChunks",
  "ended",
] as const;

/** How many streams a sweep works on at once. */
const SWEEP_PARALLEL = 16;
/**
 * Transfers (or peers) one expiry script takes at most: a sweep after a
 * stall, or of a swarm whose replica died, would otherwise run tens of
 * thousands of commands in one script, and Redis answers nobody else
 * meanwhile.
 */
export const EXPIRY_BATCH = 256;

type Reply = string | number | null | Reply[];
type ScriptFn = (...args: (string | number | Buffer)[]) => Promise<Reply>;

/** A settleTransfers call waiting for its stream's script. */
interface SettleCall {
  fetcherId: string;
  settlements: readonly Settlement[];
  policy: TrustPolicy;
  resolve(settled: (SettledTransfer | undefined)[]): void;
  reject(err: unknown): void;
}

/** Reports one settleTransfers script takes at most from calls grouped together (a call's own go in one script whatever their number). */
const SCRIPT_BATCH = 256;

/** Transfer ids a store takes from the shared sequence at a time: a directive costs no round trip for its id. */
const TRANSFER_ID_BLOCK = 1024;

/**
 * The swarm store of many tracker replicas, on Redis standalone or Redis
 * Cluster (see the key layout above). Owns the client: `close` quits it.
 */
export class RedisSwarmStore implements SwarmStore {
  private readonly prefix: string;
  private readonly names: string;
  private readonly transferSeq: string;
  private readonly peerIndex: string;
  private readonly transferIndex: string;
  private readonly streamIndex: string;
  private closed = false;
  private lastError = "";
  /** The ids left of the block nextTransferId hands out (none at first), and the block being taken. */
  private nextId = 1;
  private lastId = 0;
  private idBlock: Promise<void> | undefined;
  private readonly subscriptions = new Set<RedisSubscription>();
  /** settleTransfers calls by stream: the first is being settled, the others wait to go in the next script. */
  private readonly settling = new Map<string, SettleCall[]>();

  constructor(
    private readonly redis: RedisClient,
    options: RedisSwarmStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? "ds";
    if (/[{}]/.test(this.prefix)) throw new Error(`key prefix ${JSON.stringify(this.prefix)} must not contain { or }`);
    this.names = `${this.prefix}:names`;
    this.transferSeq = `${this.prefix}:transfer-id`;
    this.peerIndex = `${this.prefix}:expiry:peers`;
    this.transferIndex = `${this.prefix}:expiry:transfers`;
    this.streamIndex = `${this.prefix}:streams`;
    // connection errors reach callers through failed commands and `ping`; the
    // client reconnects with backoff on its own, so they are not thrown here
    redis.on("error", (err: Error) => (this.lastError = err.message));
    for (const [name, lua] of STREAM_SCRIPTS) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: STREAM_KEYS.length, lua });
    }
    for (const [name, lua] of Object.entries(GLOBAL_SCRIPTS)) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua });
    }
  }

  /** The keys of one stream, in the order the scripts expect. */
  private keys(streamId: string): string[] {
    if (/[{}]/.test(streamId)) throw new Error(`stream id ${JSON.stringify(streamId)} must not contain { or }`);
    const base = `${this.prefix}:{${streamId}}:`;
    return STREAM_KEYS.map((k) => base + k);
  }

  private key(streamId: string, k: (typeof STREAM_KEYS)[number]): string {
    return `${this.prefix}:{${streamId}}:${k}`;
  }

  private run(name: ScriptName | keyof typeof GLOBAL_SCRIPTS, keys: string[], ...args: (string | number | Buffer)[]) {
    if (this.closed) throw new Error("swarm store is closed");
    const fn = (this.redis as unknown as Record<string, ScriptFn>)[name]!;
    return fn.call(this.redis, ...keys, ...args);
  }

  private check(): void {
    if (this.closed) throw new Error("swarm store is closed");
  }

  // ---- streams -------------------------------------------------------------

  /** 1 script + 1 ZADD NX (the stream index) + 1 HMGET; O(1) (ZADD O(log streams)). */
  async createStream(s: NewStream): Promise<StreamMeta> {
    const fields: Record<string, string | number> = {
      streamId: s.streamId,
      name: s.name,
      chunkSize: s.chunkSize,
      version: s.version,
      kind: s.kind,
      createdMs: s.createdMs,
      low: 0,
    };
    if (s.kind === "file") {
      const count = chunkCount(s.size, s.chunkSize);
      Object.assign(fields, { size: s.size, chunkCount: count, high: count - 1 });
    } else Object.assign(fields, { windowChunks: s.windowChunks, ended: 0, high: -1 });
    await this.run("dsCreateStream", this.keys(s.streamId), ...Object.entries(fields).flat());
    await this.redis.zadd(this.streamIndex, "NX", s.createdMs, s.streamId);
    const m = await this.getStream(s.streamId);
    if (!m) throw new Error(`stream ${s.streamId} vanished while being created`);
    return m;
  }

  /** 1 HMGET; O(1). */
  async getStream(streamId: string): Promise<StreamMeta | undefined> {
    this.check();
    const v = await this.redis.hmget(this.key(streamId, "meta"), ...META_FIELDS);
    return parseMeta(v);
  }

  /** 1 GET; O(1) (the manifest's size). */
  async getManifest(streamId: string): Promise<Uint8Array | undefined> {
    this.check();
    const b = await this.redis.getBuffer(this.key(streamId, "manifest"));
    return b ? new Uint8Array(b) : undefined;
  }

  /** 1 script; O(1) plus the piece's size. */
  async putHashPiece(streamId: string, index: number, piece: Uint8Array, hashedChunks: number): Promise<boolean> {
    return (await this.run("dsPutHashPiece", this.keys(streamId), index, Buffer.from(piece), hashedChunks)) === 1;
  }

  /** 1 HMGET; O(count) plus the pieces' size. */
  async getHashPieces(streamId: string, first: number, count: number): Promise<Uint8Array[]> {
    this.check();
    if (count <= 0) return [];
    const fields = Array.from({ length: count }, (_, i) => String(first + i));
    const got = await this.redis.hmgetBuffer(this.key(streamId, "pieces"), ...fields);
    const out: Uint8Array[] = [];
    for (const b of got) {
      if (!b) break;
      out.push(new Uint8Array(b));
    }
    return out;
  }

  /** 1 stream script + 1 name-index script; O(pieces) for dropping them. */
  async failStream(streamId: string, reason: string): Promise<void> {
    const name = await this.run("dsFailStream", this.keys(streamId), reason);
    if (typeof name === "string") await this.run("dsUnpointName", [this.names], name, streamId);
  }

  /** 1 stream script + 1 name-index script; O(1). */
  async markReady(streamId: string, manifest: Uint8Array, nowMs: number): Promise<{ replaced: string | undefined }> {
    const name = await this.run("dsMarkReady", this.keys(streamId), Buffer.from(manifest), nowMs);
    if (typeof name !== "string") throw new Error(`unknown stream ${streamId}`);
    const before = await this.run("dsPointName", [this.names], name, streamId);
    return { replaced: typeof before === "string" && before !== streamId ? before : undefined };
  }

  /** 1 HGET; O(1). */
  async streamIdByName(name: string): Promise<string | undefined> {
    this.check();
    return (await this.redis.hget(this.names, name)) ?? undefined;
  }

  /** HGETALL of the name index + 1 HMGET per stream (in parallel); O(streams). Not for a per-message path. */
  async listStreams(): Promise<StreamMeta[]> {
    this.check();
    const ids = Object.values(await this.redis.hgetall(this.names));
    const metas = await Promise.all(ids.map((id) => this.getStream(id)));
    return metas
      .filter((m): m is StreamMeta => m !== undefined && m.status === "ready")
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** 1 HLEN; O(1). */
  async streamCount(): Promise<number> {
    this.check();
    return this.redis.hlen(this.names);
  }

  /** 1 HGET; O(1). */
  async streamEpoch(streamId: string): Promise<number> {
    this.check();
    return Number((await this.redis.hget(this.key(streamId, "meta"), "epoch")) ?? 0);
  }

  /** 1 script (DEL of the stream's keys: O(its size)) + name-index script + index updates. */
  async removeStream(streamId: string): Promise<void> {
    const name = await this.run("dsRemoveStream", this.keys(streamId));
    await this.forgetIndexes(streamId, name);
  }

  /**
   * Takes a removed stream out of the name and global indexes. Its
   * re-creation may have raced the removal: it is put back in the stream
   * index when its meta exists again (ZREM, then EXISTS, then ZADD NX), so
   * that no stream is ever left out of retirement.
   */
  private async forgetIndexes(streamId: string, name: Reply): Promise<void> {
    if (typeof name === "string") await this.run("dsUnpointName", [this.names], name, streamId);
    await this.redis.zrem(this.peerIndex, streamId);
    await this.redis.zrem(this.transferIndex, streamId);
    await this.redis.zrem(this.streamIndex, streamId);
    if ((await this.redis.exists(this.key(streamId, "meta"))) === 1) {
      await this.redis.zadd(this.streamIndex, "NX", Date.now(), streamId);
    }
  }

  /**
   * ZRANGEBYSCORE of the stream index up to nowMs - graceMs (at most 1,000
   * streams), then per stream 1 script + 1 ZADD (kept) or the removal's
   * index updates (retired or unknown). O(due streams x log streams + what
   * is deleted).
   */
  async retireStreams(nowMs: number, graceMs: number): Promise<string[]> {
    this.check();
    const due = await this.redis.zrangebyscore(this.streamIndex, "-inf", nowMs - graceMs, "LIMIT", 0, 1000);
    const retired: string[] = [];
    await inBatches(due, async (streamId) => {
      const r = (await this.run("dsRetireStream", this.keys(streamId), nowMs, graceMs)) as Reply[];
      if (r[0] === 1) {
        await this.redis.zadd(this.streamIndex, "XX", String(r[1]), streamId);
        return;
      }
      await this.forgetIndexes(streamId, r[0] === 2 ? r[1]! : null);
      if (r[0] === 2) retired.push(streamId);
    });
    return retired;
  }

  /**
   * 1 script: ZRANGEBYSCORE of the transfers and of the peers below the new
   * low (the xferend and floor indexes), the segments below it dropped;
   * O(log n + those x (R + log S) + segments dropped).
   */
  async raiseLow(streamId: string, newLow: number): Promise<{ raised: boolean; dropped: TransferRecord[] }> {
    if (!Number.isSafeInteger(newLow)) throw new RangeError(`raiseLow: ${newLow} is not a chunk number`);
    const r = (await this.run("dsRaiseLow", this.keys(streamId), newLow)) as Reply[];
    return { raised: r[0] === 1, dropped: (r.slice(1) as string[]).map((s) => parseTransfer(streamId, s)) };
  }

  /** 1 script; O(1). */
  async raiseHigh(streamId: string, high: number, ended = false): Promise<boolean> {
    if (!Number.isSafeInteger(high)) throw new RangeError(`raiseHigh: ${high} is not a chunk number`);
    return (await this.run("dsRaiseHigh", this.keys(streamId), high, ended ? 1 : 0)) === 1;
  }

  /** 1 script; O(1). */
  async banHost(streamId: string, host: string, untilMs: number): Promise<void> {
    await this.run("dsBanHost", this.keys(streamId), host, untilMs);
  }

  /** 1 script (HLEN + SCARD); O(1). */
  async peerCounts(streamId: string): Promise<{ peers: number; seeders: number }> {
    const [all, seeders] = (await this.run("dsPeerCounts", this.keys(streamId))) as [number, number];
    return { peers: all - seeders, seeders };
  }

  // ---- peers ---------------------------------------------------------------

  /**
   * 1 script, plus 1 ZADD LT on the peer expiry index when the stream had no
   * peer seen as early. O(log n + R log S), plus a replaced record's transfers.
   */
  async joinPeer(streamId: string, p: PeerJoin, nowMs: number): Promise<JoinResult> {
    const r = (await this.run(
      "dsJoinPeer",
      this.keys(streamId),
      p.peerId,
      p.host,
      p.port,
      p.role,
      p.mode,
      p.position,
      nowMs,
      formatRanges(p.have),
    )) as Reply[];
    if (r[0] !== 1) return { joined: false, dropped: [] };
    if (r[1] === 1) await this.redis.zadd(this.peerIndex, "LT", nowMs, streamId);
    return { joined: true, dropped: r.slice(2).map((s) => parseTransfer(streamId, s as string)) };
  }

  /** 1 script; O(log n + R log S + its transfers). */
  async leavePeer(streamId: string, peerId: string): Promise<TransferRecord[]> {
    const r = (await this.run("dsLeavePeer", this.keys(streamId), peerId)) as string[];
    return r.map((s) => parseTransfer(streamId, s));
  }

  /** 1 script (3 reads); O(R). */
  async getPeer(streamId: string, peerId: string): Promise<PeerState | undefined> {
    const r = (await this.run("dsGetPeer", this.keys(streamId), peerId)) as [string, string | null, string] | null;
    return r ? peerState(peerId, r[0], r[1], r[2]) : undefined;
  }

  /** 1 script; O(R + newly held ranges x log S). */
  async addHoldings(streamId: string, peerId: string, ranges: readonly ChunkRange[]): Promise<number> {
    const arg = formatRanges(ranges);
    if (arg === "") return 0;
    return Number(await this.run("dsAddHoldings", this.keys(streamId), peerId, arg));
  }

  /** 1 script; O(1). */
  async setPosition(streamId: string, peerId: string, position: number): Promise<void> {
    await this.run("dsSetPosition", this.keys(streamId), peerId, position);
  }

  /**
   * 1 script (a ZMSCORE and a ZADD XX per 256 peers); O(k log n). Does not touch the expiry
   * index (lastSeen only grows, the index stays early).
   */
  async touchPeers(streamId: string, peerIds: readonly string[], nowMs: number): Promise<string[]> {
    this.check();
    if (peerIds.length === 0) return [];
    return (await this.run("dsTouchPeers", this.keys(streamId), nowMs, ...peerIds)) as string[];
  }

  /**
   * ZRANGEBYSCORE of the due streams, then per due stream 1 script per
   * EXPIRY_BATCH peers due + ZREM + ZRANGE + at most 1 ZADD. Reads only
   * streams with a peer due (or a stale index entry); O(due streams x log n
   * + expired peers).
   */
  async expirePeers(nowMs: number, ttlMs: number): Promise<ExpiredPeer[]> {
    this.check();
    const cutoff = nowMs - ttlMs;
    const due = await this.redis.zrangebyscore(this.peerIndex, "-inf", cutoff);
    const out: ExpiredPeer[] = [];
    await inBatches(due, async (streamId) => {
      await untilShortBatch(async () => {
        const r = (await this.run("dsExpirePeers", this.keys(streamId), cutoff, EXPIRY_BATCH)) as Reply[];
        for (let i = 1; i < r.length;) {
          const peerId = r[i] as string;
          const role = r[i + 1] as PeerRoleName;
          const n = Number(r[i + 2]);
          const transfers = r.slice(i + 3, i + 3 + n).map((s) => parseTransfer(streamId, s as string));
          out.push({ streamId, peerId, role, transfers });
          i += 3 + n;
        }
        return Number(r[0]);
      });
      await this.reindex(this.peerIndex, streamId, this.key(streamId, "seen"));
    });
    return out;
  }

  /** Puts a stream back in a global expiry index at its earliest entry, or leaves it out when it has none. */
  private async reindex(index: string, streamId: string, zset: string): Promise<void> {
    await this.redis.zrem(index, streamId);
    const first = await this.redis.zrange(zset, "0", "0", "WITHSCORES");
    if (first.length === 2) await this.redis.zadd(index, "LT", first[1]!, streamId);
  }

  /** 1 script; O(1 + R log S on a ban). */
  async recordSourceOutcome(
    streamId: string,
    peerId: string,
    outcome: SourceOutcome,
    policy: TrustPolicy,
  ): Promise<SourceTrust | undefined> {
    const r = (await this.run(
      "dsRecordOutcome",
      this.keys(streamId),
      peerId,
      outcome,
      policy.banAfterBad,
      policy.banAfterStrikes,
    )) as number[] | null;
    if (!r) return undefined;
    return { served: r[0]!, failures: r[1]!, strikes: r[2]!, bad: r[3]!, banned: r[4] === 1 };
  }

  // ---- scheduling reads ----------------------------------------------------

  /** 1 script; O(log S + segments in the window). */
  async availability(streamId: string, window: ChunkRange): Promise<AvailabilitySegment[]> {
    return parseAvailability(
      (await this.run("dsAvailability", this.keys(streamId), window.first, window.last)) as string[],
    );
  }

  /**
   * 1 script: the seeders (SMEMBERS of the stream's few seeders) and at most
   * 4 x limit viewers from a random rank of the smaller pool: those with a
   * free slot (ds:{id}:servers) or those holding something at or after the
   * window (ds:{id}:reach); ZCOUNT, ZRANGE by rank, wrapping around;
   * O(seeders + log n + limit) in Redis. Holdings come back as stored and
   * are clipped to the window here (O(R) each), where parsing is cheap: in
   * Lua it cost more than the rest of the script with fragmented holdings.
   */
  async sources(streamId: string, window: ChunkRange, q: SourceQuery): Promise<SourceCandidate[]> {
    return parseSources(
      (await this.run("dsSources", this.keys(streamId), ...sourceArgs(window, q))) as Reply[],
      window,
    );
  }

  /** 1 script: `availability` and `sources` in one, the meta read once. */
  async planInputs(streamId: string, window: ChunkRange, q: SourceQuery): Promise<PlanInputs> {
    const r = (await this.run("dsPlanInputs", this.keys(streamId), ...sourceArgs(window, q))) as Reply[];
    const n = Number(r[0]);
    return {
      availability: parseAvailability(r.slice(1, 1 + n) as string[]),
      sources: parseSources(r.slice(1 + n), window),
    };
  }

  // ---- transfers -----------------------------------------------------------

  /**
   * From the store's own block of ids, taken from the one sequence of all
   * replicas by 1 INCRBY per TRANSFER_ID_BLOCK ids; O(1). Ids are unique over
   * the replicas and increase in each; a replica that stops loses the rest of
   * its block.
   */
  async nextTransferId(): Promise<number> {
    this.check();
    while (this.nextId > this.lastId) {
      this.idBlock ??= this.redis
        .incrby(this.transferSeq, TRANSFER_ID_BLOCK)
        .then((last) => {
          this.nextId = last - TRANSFER_ID_BLOCK + 1;
          this.lastId = last;
        })
        .finally(() => (this.idBlock = undefined));
      await this.idBlock;
    }
    return this.nextId++;
  }

  /** As `addTransfers` of the one transfer. */
  async addTransfer(t: TransferRecord, limits: SlotLimits): Promise<AddTransferResult> {
    return (await this.addTransfers([t], limits))[0]!;
  }

  /**
   * 1 script (a plan's transfers are a handful), plus 1 ZADD LT on the
   * transfer expiry index only when no transfer of the stream expired as early
   * (the first one, in practice): the records of the fetcher and its servers
   * read and written once, the availability of all the ranges in one pass.
   * O(transfers x (log transfers + segments of the range)).
   */
  async addTransfers(transfers: readonly TransferRecord[], limits: SlotLimits): Promise<AddTransferResult[]> {
    checkOneFetcher(transfers);
    if (transfers.length === 0) return [];
    const { streamId, fetcherId } = transfers[0]!;
    const args: (string | number)[] = [fetcherId, limits.maxDownloads, limits.maxUploadsPeer, limits.maxUploadsSeeder];
    for (const t of transfers) {
      args.push(t.transferId, t.serverId, t.serverRole, t.range.first, t.range.last, t.startedMs, t.expiresMs);
    }
    const [needsIndex, ...results] = (await this.run("dsAddTransfers", this.keys(streamId), ...args)) as [
      number,
      ...AddTransferResult[],
    ];
    if (needsIndex === 1) {
      const earliest = Math.min(...transfers.filter((_, i) => results[i] === "ok").map((t) => t.expiresMs));
      await this.redis.zadd(this.transferIndex, "LT", earliest, streamId);
    }
    return results;
  }

  /** 1 script; O(log S + segments of the range). */
  async takeTransfer(streamId: string, transferId: number, fetcherId = ""): Promise<TransferRecord | undefined> {
    const r = await this.run("dsTakeTransfer", this.keys(streamId), transferId, fetcherId);
    return typeof r === "string" ? parseTransfer(streamId, r) : undefined;
  }

  /** As `settleTransfers` of the one report. */
  async settleTransfer(
    streamId: string,
    transferId: number,
    fetcherId: string,
    report: TransferSettlement,
    policy: TrustPolicy,
  ): Promise<SettledTransfer | undefined> {
    return (await this.settleTransfers(streamId, fetcherId, [{ transferId, report }], policy))[0];
  }

  /**
   * 1 script for the reports of all the calls that came for the stream while
   * its previous script ran (up to SCRIPT_BATCH reports; the first call never
   * waits): the transfers, the records of their peers and the fetchers'
   * holdings read and written once, the availability changes of all the
   * reports in one pass over the segments (only where a transfer did not
   * deliver, and the held counts where it did). The busier the stream, the
   * more reports a script settles. O(reports x (segments of the range +
   * ranges held)).
   */
  settleTransfers(
    streamId: string,
    fetcherId: string,
    settlements: readonly Settlement[],
    policy: TrustPolicy,
  ): Promise<(SettledTransfer | undefined)[]> {
    if (settlements.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      let queue = this.settling.get(streamId);
      if (!queue) this.settling.set(streamId, (queue = []));
      queue.push({ fetcherId, settlements, policy, resolve, reject });
      // the first call starts the stream's run; the others wait for it to take them
      if (queue.length === 1) void this.settleQueued(streamId, queue);
    });
  }

  /** Runs the stream's waiting settleTransfers calls, a group per script, until none waits. */
  private async settleQueued(streamId: string, queue: SettleCall[]): Promise<void> {
    while (queue.length > 0) {
      // the calls at the front with the first one's policy, up to SCRIPT_BATCH reports (the first, whatever its size)
      const { policy } = queue[0]!;
      let n = 0;
      let size = 0;
      for (const c of queue) {
        const same = c.policy.banAfterBad === policy.banAfterBad && c.policy.banAfterStrikes === policy.banAfterStrikes;
        if (n > 0 && (!same || size + c.settlements.length > SCRIPT_BATCH)) break;
        n++;
        size += c.settlements.length;
      }
      const group = queue.slice(0, n);
      try {
        // one script for the group: a call's reports are never split between scripts
        const reports = group.flatMap((c) => c.settlements.map((s) => ({ fetcherId: c.fetcherId, ...s })));
        const results = await this.settleScript(streamId, reports, policy);
        let at = 0;
        for (const c of group) {
          c.resolve(results.slice(at, at + c.settlements.length));
          at += c.settlements.length;
        }
      } catch (err) {
        for (const c of group) c.reject(err);
      }
      // taken off only now: a call that came meanwhile saw the queue busy and waits for this loop
      queue.splice(0, n);
    }
    this.settling.delete(streamId);
  }

  private async settleScript(
    streamId: string,
    reports: readonly (Settlement & { fetcherId: string })[],
    policy: TrustPolicy,
  ): Promise<(SettledTransfer | undefined)[]> {
    const args: (string | number)[] = [policy.banAfterBad, policy.banAfterStrikes];
    for (const { fetcherId, transferId, report } of reports) {
      const verified = report.verified === undefined ? "*" : formatRanges(report.verified);
      args.push(fetcherId, transferId, verified, report.outcome ?? "");
    }
    const r = (await this.run("dsSettleTransfers", this.keys(streamId), ...args)) as (
      [string, string, ...number[]] | null
    )[];
    return r.map((e) => {
      if (!e) return undefined;
      const settled: SettledTransfer = { transfer: parseTransfer(streamId, e[0]), added: Number(e[1]) };
      if (e.length > 2) {
        settled.trust = { served: e[2]!, failures: e[3]!, strikes: e[4]!, bad: e[5]!, banned: e[6] === 1 };
      }
      return settled;
    });
  }

  /** 1 script: HMGET epoch, hashed, failure, bounds, the peer's record, holdings and lastSeen, its transfers; O(R + maxDownloads). */
  async fetcherView(streamId: string, fetcherId: string): Promise<FetcherSnapshot> {
    const r = (await this.run("dsFetcherView", this.keys(streamId), fetcherId)) as (string | null)[];
    const epoch = Number(r[0] ?? 0);
    const hashedChunks = Number(r[1] ?? 0);
    const failure = r[2] ?? "";
    const low = Number(r[3]);
    const high = Number(r[4]);
    if (typeof r[5] !== "string") return { epoch, low, high, hashedChunks, failure, peer: undefined, transfers: [] };
    return {
      epoch,
      low,
      high,
      hashedChunks,
      failure,
      peer: peerState(fetcherId, r[5], r[6] ?? null, r[7]!),
      transfers: (r.slice(8) as string[]).map((s) => parseTransfer(streamId, s)),
    };
  }

  /** 1 script; O(maxDownloads). */
  async transfersOf(streamId: string, fetcherId: string): Promise<TransferRecord[]> {
    const r = (await this.run("dsTransfersOf", this.keys(streamId), fetcherId)) as string[];
    return r.map((s) => parseTransfer(streamId, s));
  }

  /** Like `expirePeers`, over the transfer expiry index. */
  async expireTransfers(nowMs: number): Promise<TransferRecord[]> {
    this.check();
    const due = await this.redis.zrangebyscore(this.transferIndex, "-inf", nowMs);
    const out: TransferRecord[] = [];
    await inBatches(due, async (streamId) => {
      await untilShortBatch(async () => {
        const [n, ...records] = (await this.run("dsExpireTransfers", this.keys(streamId), nowMs, EXPIRY_BATCH)) as [
          number,
          ...string[],
        ];
        for (const r of records) out.push(parseTransfer(streamId, r));
        return n;
      });
      await this.reindex(this.transferIndex, streamId, this.key(streamId, "xferexp"));
    });
    return out;
  }

  // ---- coordination --------------------------------------------------------

  /** 1 script on ds:lease:<name> (GET, then SET NX PX or PEXPIRE); O(1). */
  async acquireLease(name: string, holderId: string, ttlMs: number): Promise<boolean> {
    const r = await this.run("dsAcquireLease", [this.leaseKey(name)], holderId, Math.max(1, Math.ceil(ttlMs)));
    return r === 1;
  }

  /** 1 script (GET, DEL if ours); O(1). */
  async releaseLease(name: string, holderId: string): Promise<void> {
    await this.run("dsReleaseLease", [this.leaseKey(name)], holderId);
  }

  private leaseKey(name: string): string {
    if (/[{}]/.test(name)) throw new Error(`lease name ${JSON.stringify(name)} must not contain { or }`);
    return `${this.prefix}:lease:${name}`;
  }

  /**
   * Rejects at once while the client is not connected (ioredis would queue
   * the command until it reconnects), else 1 PING bounded by timeoutMs.
   */
  async ping(timeoutMs: number): Promise<void> {
    this.check();
    if (this.redis.status !== "ready")
      throw new Error(`redis connection is ${this.redis.status}${this.lastError ? ` (${this.lastError})` : ""}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis did not answer PING within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.redis.ping(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- events between replicas ----------------------------------------------

  /** Whether events use sharded pub/sub (a Cluster created with shardedSubscribers: true). */
  private get sharded(): boolean {
    return this.redis instanceof Cluster && this.redis.options.shardedSubscribers === true;
  }

  private channel(streamId: string): string {
    if (/[{}]/.test(streamId)) throw new Error(`stream id ${JSON.stringify(streamId)} must not contain { or }`);
    return `${this.prefix}:{${streamId}}:events`;
  }

  /** 1 PUBLISH (standalone) or 1 SPUBLISH (sharded, to the stream's shard); O(subscribers of the channel). */
  async publishEvent(streamId: string, event: StreamEvent): Promise<void> {
    this.check();
    const ch = this.channel(streamId);
    const text = JSON.stringify(event);
    if (this.sharded) await this.redis.spublish(ch, text);
    else await this.redis.publish(ch, text);
  }

  /** 1 PUBLISH (standalone) or 1 SPUBLISH (sharded, to the fleet channel's shard); O(subscribers of the channel). */
  async publishFleetEvent(event: FleetEvent): Promise<void> {
    this.check();
    const text = JSON.stringify(event);
    if (this.sharded) await this.redis.spublish(this.fleetChannel, text);
    else await this.redis.publish(this.fleetChannel, text);
  }

  /** 1 INFO (server and memory sections) per node: the client's server, or each master of a Cluster. */
  async storeInfo(): Promise<StoreInfo> {
    this.check();
    const nodes = this.redis instanceof Cluster ? this.redis.nodes("master") : [this.redis];
    const infos = await Promise.all(nodes.map(async (n) => parseInfo(await n.info("server", "memory"))));
    return {
      kind: this.redis instanceof Cluster ? "redis-cluster" : "redis",
      nodes: nodes.length,
      usedMemoryBytes: infos.reduce((sum, i) => sum + Number(i.used_memory ?? 0), 0),
      version: infos[0]?.redis_version ?? "",
    };
  }

  private get fleetChannel(): string {
    return `${this.prefix}:fleet`;
  }

  /**
   * A subscription on its own connection (`duplicate()` of the client; on a
   * sharded Cluster, its subscriber group keeps one connection per shard).
   * The client re-subscribes by itself after a reconnect; `resync` is called
   * then, since events published meanwhile are lost.
   */
  subscribeEvents(handlers: EventHandlers): EventSubscription {
    this.check();
    const sub = new RedisSubscription(
      duplicateOf(this.redis),
      this.sharded,
      `${this.prefix}:{`,
      this.fleetChannel,
      handlers,
    );
    this.subscriptions.add(sub);
    sub.onClose = () => this.subscriptions.delete(sub);
    return sub;
  }

  /** Quits the client (waits for replies in flight) and the subscriptions' connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Event subscription on a connection of its own. */
class RedisSubscription implements EventSubscription {
  private readonly streams = new Set<string>();
  private fleet = false;
  private closed = false;
  private wasReady = false;
  onClose: () => void = () => undefined;

  constructor(
    private readonly sub: RedisClient,
    private readonly sharded: boolean,
    /** Channel names are `<channelStart><streamId>}:events`. */
    private readonly channelStart: string,
    private readonly fleetChannel: string,
    handlers: EventHandlers,
  ) {
    // errors surface through the store's own connection (ping, failed commands); the client retries by itself
    sub.on("error", () => undefined);
    sub.on("ready", () => {
      if (this.wasReady && !this.closed) handlers.resync();
      this.wasReady = true;
    });
    sub.on(sharded ? "smessage" : "message", (channel: string, text: string) => {
      if (this.closed) return;
      if (channel === this.fleetChannel) {
        const event = this.fleet ? parseFleetEvent(text) : undefined;
        if (event) handlers.fleet?.(event);
        return;
      }
      if (!channel.startsWith(this.channelStart) || !channel.endsWith("}:events")) return;
      const streamId = channel.slice(this.channelStart.length, -"}:events".length);
      if (!this.streams.has(streamId)) return;
      const event = parseStreamEvent(text);
      if (event) handlers.event(streamId, event);
    });
  }

  get watching(): ReadonlySet<string> {
    return this.streams;
  }

  private channel(streamId: string): string {
    if (/[{}]/.test(streamId)) throw new Error(`stream id ${JSON.stringify(streamId)} must not contain { or }`);
    return `${this.channelStart}${streamId}}:events`;
  }

  /** 1 SUBSCRIBE or SSUBSCRIBE. */
  async watch(streamId: string): Promise<void> {
    if (this.closed) throw new Error("event subscription is closed");
    if (this.streams.has(streamId)) return;
    this.streams.add(streamId);
    const ch = this.channel(streamId);
    if (this.sharded) await this.sub.ssubscribe(ch);
    else await this.sub.subscribe(ch);
  }

  /** 1 UNSUBSCRIBE or SUNSUBSCRIBE. */
  async unwatch(streamId: string): Promise<void> {
    if (this.closed || !this.streams.delete(streamId)) return;
    const ch = this.channel(streamId);
    if (this.sharded) await this.sub.sunsubscribe(ch);
    else await this.sub.unsubscribe(ch);
  }

  /** 1 SUBSCRIBE or SSUBSCRIBE of the fleet channel. */
  async watchFleet(): Promise<void> {
    if (this.closed) throw new Error("event subscription is closed");
    if (this.fleet) return;
    this.fleet = true;
    if (this.sharded) await this.sub.ssubscribe(this.fleetChannel);
    else await this.sub.subscribe(this.fleetChannel);
  }

  /** 1 UNSUBSCRIBE or SUNSUBSCRIBE of the fleet channel. */
  async unwatchFleet(): Promise<void> {
    if (this.closed || !this.fleet) return;
    this.fleet = false;
    if (this.sharded) await this.sub.sunsubscribe(this.fleetChannel);
    else await this.sub.unsubscribe(this.fleetChannel);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fleet = false;
    this.streams.clear();
    this.onClose();
    await this.sub.quit().catch(() => this.sub.disconnect());
  }
}

/** The fields of an INFO reply ("key:value" lines). */
function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) out[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return out;
}

function duplicateOf(redis: RedisClient): RedisClient {
  return redis instanceof Cluster ? redis.duplicate() : redis.duplicate();
}

/** Runs one expiry script after another (`take` answers how many entries one took) until one takes less than a batch. */
async function untilShortBatch(take: () => Promise<number>): Promise<void> {
  while ((await take()) === EXPIRY_BATCH);
}

async function inBatches(ids: string[], work: (id: string) => Promise<void>): Promise<void> {
  for (let i = 0; i < ids.length; i += SWEEP_PARALLEL) {
    await Promise.all(ids.slice(i, i + SWEEP_PARALLEL).map(work));
  }
}

function parseMeta(v: (string | null)[]): StreamMeta | undefined {
  const [streamId, name, chunkSize, version, kind, createdMs, status, readyMs, hashed, failure, low, high, ...rest] = v;
  const [size, count, windowChunks, ended] = rest;
  if (streamId == null || name == null) return undefined;
  const common = {
    streamId,
    name,
    chunkSize: Number(chunkSize),
    version: Number(version),
    createdMs: Number(createdMs),
    status: status as StreamStatus,
    readyMs: Number(readyMs),
    hashedChunks: Number(hashed ?? 0),
    failure: failure ?? "",
    low: Number(low ?? 0),
  };
  if (kind === "live") {
    return {
      ...common,
      kind,
      high: Number(high),
      windowChunks: Number(windowChunks),
      ended: ended === "1",
    };
  }
  // a file ("on_demand" when stored before kinds were a union, without low and high)
  const chunkCount = Number(count);
  return { ...common, kind: "file", size: Number(size), chunkCount, high: Number(high ?? chunkCount - 1) };
}

/** The arguments of dsSources and dsPlanInputs. */
function sourceArgs(window: ChunkRange, q: SourceQuery): (string | number)[] {
  return [q.exclude, q.limit, q.maxUploadsPeer, q.maxUploadsSeeder, window.first, window.last, Math.random()];
}

/**
 * dsAvailability's reply [first, last, members "<start>:<avail>:<held>"...]: each segment lasts up to the
 * next start, the last one up to `last`.
 */
function parseAvailability(r: string[]): AvailabilitySegment[] {
  const out: AvailabilitySegment[] = [];
  if (r.length < 3) return out;
  const first = Number(r[0]);
  const last = Number(r[1]);
  let at = first;
  let count = segmentCount(r[2]!);
  for (let i = 3; i < r.length; i++) {
    const m = r[i]!;
    const next = segmentCount(m);
    // a start where only the held count changes is no start of availability
    if (next === count) continue;
    const start = Number(m.slice(0, m.indexOf(":")));
    out.push({ first: at, last: start - 1, count });
    at = start;
    count = next;
  }
  out.push({ first: at, last, count });
  return out;
}

/** dsSources' reply: 10 fields a candidate, holdings as stored (clipped to the window here). */
function parseSources(r: Reply[], window: ChunkRange): SourceCandidate[] {
  const out: SourceCandidate[] = [];
  for (let i = 0; i + 9 < r.length; i += 10) {
    const holdings = parseRanges(r[i + 4] as string, window);
    if (holdings.isEmpty) continue;
    out.push({
      peerId: r[i] as string,
      host: r[i + 1] as string,
      port: Number(r[i + 2]),
      role: r[i + 3] as PeerRoleName,
      holdings,
      uploads: Number(r[i + 5]),
      served: Number(r[i + 6]),
      failures: Number(r[i + 7]),
      strikes: Number(r[i + 8]),
      bad: Number(r[i + 9]),
      banned: false,
    });
  }
  return out;
}

/** The availability count of a segment's member "<first chunk>:<avail>:<held>". */
function segmentCount(member: string): number {
  const at = member.indexOf(":") + 1;
  return Number(member.slice(at, member.indexOf(":", at)));
}

/** Normalised ranges (sorted, merged, first >= 0) as "f-l,f-l"; the scripts clip them to the stream. */
function formatRanges(ranges: readonly ChunkRange[]): string {
  const set = new RangeSet();
  for (const r of ranges) {
    const first = Math.max(0, r.first);
    if (first <= r.last) set.add({ first, last: r.last });
  }
  return set
    .ranges()
    .map((r) => `${r.first}-${r.last}`)
    .join(",");
}

/** A peer's state from its stored record, holdings and lastSeen. */
function peerState(peerId: string, record: string, have: string | null, seen: string): PeerState {
  const rec = JSON.parse(record) as Record<string, string>;
  return {
    peerId,
    host: rec.h!,
    port: Number(rec.p),
    role: rec.r as PeerRoleName,
    mode: rec.m as WantOrder,
    position: Number(rec.pos),
    holdings: parseRanges(have),
    lastSeenMs: Number(seen),
    downloads: splitIds(rec.dl),
    uploads: splitIds(rec.ul),
    ...trustOf(rec),
  };
}

/** Parses stored holdings ("f-l,f-l", sorted), keeping only what lies in `clip` when given. */
function parseRanges(s: string | null, clip?: ChunkRange): RangeSet {
  const set = new RangeSet();
  if (!s) return set;
  const lo = clip ? clip.first : 0;
  const hi = clip ? clip.last : Number.MAX_SAFE_INTEGER;
  for (const part of s.split(",")) {
    const dash = part.indexOf("-");
    const last = Number(part.slice(dash + 1));
    if (last < lo) continue;
    const first = Number(part.slice(0, dash));
    if (first > hi) break;
    set.add({ first: Math.max(first, lo), last: Math.min(last, hi) });
  }
  return set;
}

function splitIds(s: string | undefined): number {
  return s ? s.split(",").length : 0;
}

function trustOf(rec: Record<string, string>): SourceTrust {
  return {
    served: Number(rec.sv),
    failures: Number(rec.fl),
    strikes: Number(rec.st),
    bad: Number(rec.bd),
    banned: rec.bn === "1",
  };
}

function parseTransfer(streamId: string, s: string): TransferRecord {
  const t = JSON.parse(s) as Record<string, string>;
  return {
    transferId: Number(t.id),
    streamId,
    fetcherId: t.f!,
    serverId: t.s!,
    serverRole: t.sr as PeerRoleName,
    range: { first: Number(t.a), last: Number(t.b) },
    startedMs: Number(t.t0),
    expiresMs: Number(t.te),
  };
}
