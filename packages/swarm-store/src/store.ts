import type { ChunkRange, RangeSet } from "@distribustream/pdtp";
import type { FleetEvent } from "./fleet.js";

/**
 * Swarm state shared by every tracker replica. The tracker keeps nothing in
 * process that another replica would need: streams, peers, what each peer
 * holds, transfers in flight and source trust all live here.
 *
 * Every per-message method touches ONE stream and is meant to map onto a few
 * Redis commands or one Lua script over that stream's keys (all sharing the
 * hash tag of the stream id), with cost O(1), O(log n) or O(number of ranges
 * involved); none reads a whole swarm. The periodic sweeps (`expirePeers`,
 * `expireTransfers`) and `listStreams` are the only calls that may scan, and
 * only over an index sorted by time. Stream metas are small and fixed-size;
 * the manifest header is read only by `getManifest`, the hash pieces (8 KiB
 * each by default, any number) only by `getHashPieces`.
 *
 * Chunk numbers are plain numbers (safe integers); ranges are inclusive.
 * Every stream has chunk bounds `[low, high]` (`ChunkBounds`, inclusive,
 * part of its meta): holdings, availability and sources are clipped to them
 * and a transfer outside them is refused, so nothing here assumes "chunks 0
 * to chunkCount - 1". Callers validate ranges against the bounds first.
 */
export interface SwarmStore {
  // ---- streams -------------------------------------------------------------

  /**
   * Creates the stream in status "accepted" unless one with this id exists;
   * resolves the stored meta either way (SET NX semantics). Never changes an
   * existing stream.
   */
  createStream(stream: NewStream): Promise<StreamMeta>;

  /** The stream's meta (without its manifest), or undefined when unknown. */
  getStream(streamId: string): Promise<StreamMeta | undefined>;

  /** The encoded SignedManifest (the header) of a ready stream, or undefined (unknown or not ready). */
  getManifest(streamId: string): Promise<Uint8Array | undefined>;

  /**
   * Stores hash piece `index` (encoded SignedHashPiece bytes; replaces one
   * stored before) and raises the stream's `hashedChunks` to `hashedChunks`
   * if that is more; bumps the epoch, so fetchers waiting for hashes are
   * replanned. Pieces are stored in order, so `hashedChunks` is a frontier:
   * every chunk below it has its hash stored. Resolves false (nothing stored)
   * when the stream is unknown or failed. O(1) plus the piece's size.
   */
  putHashPiece(streamId: string, index: number, piece: Uint8Array, hashedChunks: number): Promise<boolean>;

  /**
   * Stored hash pieces `first`, `first + 1`, ... (at most `count`), stopping
   * before the first one not stored. [] for an unknown stream. O(count).
   */
  getHashPieces(streamId: string, first: number, count: number): Promise<Uint8Array[]>;

  /**
   * Marks a stream "failed" (its hashing failed midway) with a reason that
   * joins and plans report: its hash pieces are dropped, the name stops
   * pointing at it if it did, the epoch is bumped so that its fetchers are
   * replanned (and learn it). Peers stay until they leave. Idempotent; no-op
   * for an unknown stream.
   */
  failStream(streamId: string, reason: string): Promise<void>;

  /**
   * Stores the signed manifest header (encoded SignedManifest bytes), marks the
   * stream "ready", points its name at it (a newer version replaces the older
   * one for new joins; peers already in the older stream stay) and lists it
   * among the ready streams in place of the one the name pointed to before.
   * Resolves the id the name pointed to before, if any other. Rejects when the
   * stream is unknown.
   */
  markReady(streamId: string, manifest: Uint8Array, nowMs: number): Promise<{ replaced: string | undefined }>;

  /** Id of the ready stream the name points to, or undefined. */
  streamIdByName(name: string): Promise<string | undefined>;

  /** Ready streams that names point to, ordered by name. */
  listStreams(): Promise<StreamMeta[]>;

  /** How many streams `listStreams` would list, without reading them (HLEN of the name index). */
  streamCount(): Promise<number>;

  /**
   * A counter of the stream that grows whenever another fetcher's plan may
   * have new options: a peer joined or left, holdings were added, a transfer
   * ended (slots and availability freed) or a source was banned. Starting a
   * transfer does not change it. 0 for an unknown stream. Lets a tracker
   * replan only the fetchers of streams that changed since their last plan.
   */
  streamEpoch(streamId: string): Promise<number>;

  /**
   * Forgets a stream and everything about it (peers, holdings, transfers,
   * manifest, hash pieces); the name stops pointing at it if it did. Used
   * for a publish whose manifest was rejected. Idempotent.
   */
  removeStream(streamId: string): Promise<void>;

  /**
   * Retires the streams nobody is in: a stream with no peer (no seeder, no
   * viewer) whose epoch has not moved since a sweep first found it so, at
   * least `graceMs` before `nowMs`, is forgotten as by `removeStream`. Each
   * stream is checked and removed atomically (Redis: one script), so a peer
   * joining meanwhile either keeps it (it is not empty any more) or finds it
   * unknown (and its caller creates it afresh); never a stream half removed.
   * A sweep notes a stream empty when it first looks at it, and looks at
   * each stream at most about once per `graceMs`: a stream retires between
   * `graceMs` and twice that after its last peer left. Resolves the retired
   * ids. Redis: ZRANGEBYSCORE of the stream index (at most 1,000 due per
   * call), then per due stream 1 script + index updates.
   */
  retireStreams(nowMs: number, graceMs: number): Promise<string[]>;

  /**
   * Raises a live stream's low bound to `newLow` and drops everything below
   * it, atomically: the holdings below it of every peer (a peer left holding
   * nothing leaves the source indexes), the availability counts, and the
   * transfers in flight wholly below it, which are removed as by
   * `takeTransfer` (slots freed) and resolved in `dropped` so the caller can
   * withdraw them. A transfer that straddles `newLow` stays; only its part
   * from `newLow` on counts in availability. Later joins, holdings and
   * transfers are clipped to (or refused outside) the new bounds. `newLow`
   * may pass `high + 1` (the window then holds nothing until high catches
   * up). Idempotent; never lowers low (`raised` false and nothing changes
   * when `newLow` <= low); no-op for an unknown stream and for a file (its
   * bounds are fixed). Bumps the epoch when it raises. Cost O(log n + what is
   * dropped: peers holding a chunk below `newLow` x R + transfers ending
   * below it + availability segments below it), never the whole swarm; Redis:
   * 1 script.
   */
  raiseLow(streamId: string, newLow: number): Promise<{ raised: boolean; dropped: TransferRecord[] }>;

  /**
   * Raises a live stream's high bound (its live edge, the last chunk
   * attested) to `high`, and marks it ended when `ended` (sticky: a stream
   * never un-ends). Bumps the epoch when anything changed, so its fetchers
   * are replanned. Resolves whether anything changed: false for a lower or
   * equal `high` without news, an unknown stream or a file (its bounds are
   * fixed). O(1); Redis: 1 script.
   */
  raiseHigh(streamId: string, high: number, ended?: boolean): Promise<boolean>;

  /** Number of viewers and seeders in the stream (0s for an unknown stream). */
  peerCounts(streamId: string): Promise<{ peers: number; seeders: number }>;

  // ---- peers ---------------------------------------------------------------

  /**
   * Adds a peer to a stream, or replaces its record (holdings and trust
   * included) when it is already there; lastSeen = nowMs. Seeder holdings do
   * not count in availability (see `availability`). Holdings are clipped to
   * the stream's bounds. A replaced record's transfers (fetched or served) are removed
   * as by `leavePeer` and resolved in `dropped`, so the caller can withdraw
   * them. `joined` is false (and nothing changes) when the stream is unknown.
   */
  joinPeer(streamId: string, peer: PeerJoin, nowMs: number): Promise<JoinResult>;

  /**
   * Bans `host` from serving in the stream until `untilMs`: a viewer joining
   * from it before then joins banned (it may fetch, never serve), so that a
   * peer banned for bad data cannot come back as a fresh session. Keeps the
   * later of two bans; an unknown stream is ignored.
   */
  banHost(streamId: string, host: string, untilMs: number): Promise<void>;

  /**
   * Removes a peer from a stream with its holdings and every transfer it
   * fetches or serves; resolves those transfers so the caller can withdraw
   * them. Unknown peer or stream: resolves [].
   */
  leavePeer(streamId: string, peerId: string): Promise<TransferRecord[]>;

  /** The peer's record, or undefined. */
  getPeer(streamId: string, peerId: string): Promise<PeerState | undefined>;

  /**
   * Adds ranges to a peer's holdings, clipped to the stream's bounds; resolves
   * the number of chunks that were not held before (0 for an unknown peer).
   * Availability grows by one on each newly held chunk of a viewer.
   */
  addHoldings(streamId: string, peerId: string, ranges: readonly ChunkRange[]): Promise<number>;

  /** Sets a peer's output position (first chunk not yet written out). No-op for an unknown peer. */
  setPosition(streamId: string, peerId: string, position: number): Promise<void>;

  /**
   * Sets lastSeen = nowMs for each of these peers that is in the stream, and
   * resolves the ids of those that are not (expired by another replica, or
   * lost with the store's data): their sessions must re-join.
   */
  touchPeers(streamId: string, peerIds: readonly string[], nowMs: number): Promise<string[]>;

  /**
   * Removes, in every stream, the peers with lastSeen + ttlMs <= nowMs, as
   * `leavePeer` would; resolves each with the transfers that went with it.
   */
  expirePeers(nowMs: number, ttlMs: number): Promise<ExpiredPeer[]>;

  /**
   * Records how a transfer served by `peerId` went, for trust: "ok" counts a
   * success and resets `strikes`; "failed" (unreachable, timed out) counts a
   * failure and a strike; "bad_data" (a chunk failed verification, or the
   * source refused a range it claimed to hold) counts a bad report. The peer
   * is banned as a source in this stream for as long as it stays in it
   * (never returned by `sources`, `addTransfer` refuses it, its holdings
   * leave availability) once it has `policy.banAfterBad` bad reports, or, for
   * a viewer, `policy.banAfterStrikes` failures in a row. A seeder is not
   * banned for failures (it may just be loaded; its holdings never count in
   * availability anyway). A banned viewer that reconnects joins afresh.
   * Resolves the updated counters, or undefined for an unknown peer.
   */
  recordSourceOutcome(
    streamId: string,
    peerId: string,
    outcome: SourceOutcome,
    policy: TrustPolicy,
  ): Promise<SourceTrust | undefined>;

  // ---- scheduling reads ----------------------------------------------------

  /**
   * Availability of every chunk of `window` (clipped to the stream's bounds) as
   * consecutive segments covering it, each with one count: the number of
   * viewers holding the chunk plus the number of transfers of it in flight.
   * Only copies that can be served on count: seeders (they hold everything),
   * peers with data port 0 (they serve nobody) and banned peers are not
   * counted, neither as holders nor as fetchers (a ban removes its holdings'
   * count). So 0 means "only a seeder can give it and
   * nobody is fetching it". Cost O(log n + segments). Unknown stream: [].
   */
  availability(streamId: string, window: ChunkRange): Promise<AvailabilitySegment[]>;

  /**
   * Peers that could serve part of `window` now: holding at least one chunk
   * of it, with a data port (not 0), not banned, not `exclude`, with a free
   * upload slot (uploads < maxUploadsSeeder for a seeder, < maxUploadsPeer
   * otherwise). The window is clipped to the stream's bounds, holdings to the
   * window. Every qualifying seeder
   * (a stream has few) plus up to `limit` viewers, found by looking at no
   * more than 4 x `limit` of the viewers that hold something, serve and have
   * a free slot (kept in an index by upload count), from a random start: load
   * spreads, the cost stays O(log n + limit) whatever the swarm size, and a
   * swarm whose servers are nearly all busy still yields its free ones.
   * No viewer is looked at when none holds a chunk of the window (a count
   * kept like availability, without copies in flight) or when `limit` is 0.
   * Unknown stream: [].
   */
  sources(streamId: string, window: ChunkRange, query: SourceQuery): Promise<SourceCandidate[]>;

  /**
   * What a plan reads: `availability` and `sources` of the same window, as
   * the two calls would give them, at one moment (Redis: 1 script, the
   * stream's bounds read once).
   */
  planInputs(streamId: string, window: ChunkRange, query: SourceQuery): Promise<PlanInputs>;

  // ---- transfers -----------------------------------------------------------

  /** A new transfer id: unique among every store on the same data (the replicas), and greater than every id this store returned before. */
  nextTransferId(): Promise<number>;

  /**
   * Records a transfer in flight, atomically checking that both peers are in
   * the stream, the range lies within the stream's bounds (a plan made
   * before `raiseLow` moved them is refused), the server is not banned, the
   * fetcher has fewer than maxDownloads transfers and the server fewer than
   * its upload limit. On "ok" the counts of both peers and the availability
   * of the range grow by one.
   */
  addTransfer(transfer: TransferRecord, limits: SlotLimits): Promise<AddTransferResult>;

  /**
   * `addTransfer` of each of `transfers`, in order, as that many calls one
   * after the other would, resolving their results in the same order: what a
   * plan directs one fetcher to (Redis: 1 script for them all, the records
   * read and written once). All of one stream and one fetcher; throws
   * otherwise.
   */
  addTransfers(transfers: readonly TransferRecord[], limits: SlotLimits): Promise<AddTransferResult[]>;

  /**
   * Removes a transfer of the stream (reported, cancelled) and resolves it, or
   * undefined when it is not in flight (already reported, expired, or its
   * peer left). Frees both slots and the availability it added. With
   * `fetcherId`, only a transfer that this peer fetches is taken (a report
   * naming another peer's transfer changes nothing and resolves undefined).
   */
  takeTransfer(streamId: string, transferId: number, fetcherId?: string): Promise<TransferRecord | undefined>;

  /**
   * Settles a transfer its fetcher reported, in one atomic step: takes it as
   * `takeTransfer(streamId, transferId, fetcherId)` does, adds the verified
   * chunks of its range to the fetcher's holdings as `addHoldings` does, and
   * records the outcome against its server as `recordSourceOutcome` does.
   * Resolves undefined, changing nothing, when `fetcherId` fetches no such
   * transfer in flight. The copy in flight of a chunk that the fetcher now
   * holds stays counted in the availability as a holder's: a report changes
   * the availability only where the transfer did not deliver.
   */
  settleTransfer(
    streamId: string,
    transferId: number,
    fetcherId: string,
    report: TransferSettlement,
    policy: TrustPolicy,
  ): Promise<SettledTransfer | undefined>;

  /**
   * `settleTransfer` of each of `settlements`, in order, as that many calls
   * one after the other would, resolving their results in the same order:
   * the reports of one message of a fetcher. Calls made at once settle as if
   * one after the other, in some order (Redis: the calls that come for a
   * stream while its previous settlement runs share one script, the
   * records, holdings and availability read and written once).
   */
  settleTransfers(
    streamId: string,
    fetcherId: string,
    settlements: readonly Settlement[],
    policy: TrustPolicy,
  ): Promise<(SettledTransfer | undefined)[]>;

  /** Transfers in flight that `fetcherId` fetches in the stream (at most maxDownloads). */
  transfersOf(streamId: string, fetcherId: string): Promise<TransferRecord[]>;

  /**
   * What planning reads about one fetcher, in one call (Redis: one script):
   * the stream's epoch and bounds, the peer (as `getPeer`) and its transfers
   * in flight (as `transfersOf`), all as of the same instant. An unknown
   * stream has epoch 0 and no chunks (low 0, high -1).
   */
  fetcherView(streamId: string, fetcherId: string): Promise<FetcherSnapshot>;

  /** Removes, in every stream, the transfers with expiresMs <= nowMs and resolves them. */
  expireTransfers(nowMs: number): Promise<TransferRecord[]>;

  // ---- events between replicas ----------------------------------------------

  /**
   * Publishes an event on the stream's channel to every subscription watching
   * the stream (this replica's own included). Fire-and-forget delivery:
   * a subscriber that is disconnected misses it and resynchronises from the
   * store when it is back (see `EventHandlers.resync`). Redis: 1 PUBLISH, or
   * 1 SPUBLISH on a Cluster with sharded subscribers; O(subscribers).
   */
  publishEvent(streamId: string, event: StreamEvent): Promise<void>;

  /**
   * Opens a subscription (Redis: its own connection) that delivers the
   * events of the streams it watches to `handlers.event`, and calls
   * `handlers.resync` whenever it may have missed some (it reconnected).
   */
  subscribeEvents(handlers: EventHandlers): EventSubscription;

  /**
   * Publishes an event on the fleet channel (one for the whole store, not
   * per stream) to every subscription watching it (`watchFleet`): a
   * replica's stats summary for the dashboard. Fire-and-forget like
   * `publishEvent`. Redis: 1 PUBLISH, or 1 SPUBLISH on a sharded Cluster.
   */
  publishFleetEvent(event: FleetEvent): Promise<void>;

  /**
   * What the store is, for operators: its kind, nodes, memory used and
   * server version. Redis: 1 INFO per node (a Cluster's masters). Not for a
   * hot path: a dashboard asks every few seconds.
   */
  storeInfo(): Promise<StoreInfo>;

  // ---- coordination --------------------------------------------------------

  /**
   * A lease that at most one holder has at a time (the cleanup leader of the
   * tracker replicas): takes it when nobody holds it or the holder's lease
   * expired, renews it (for another ttlMs) when `holderId` holds it already,
   * and resolves whether `holderId` holds it now. Atomic (one SET NX PX or
   * one script); O(1). A holder that stops renewing loses it after ttlMs.
   */
  acquireLease(name: string, holderId: string, ttlMs: number): Promise<boolean>;

  /** Gives the lease up if `holderId` holds it (another may take it at once); otherwise nothing. O(1). */
  releaseLease(name: string, holderId: string): Promise<void>;

  /**
   * Resolves when the store answers now; rejects (within about `timeoutMs`)
   * when it is unreachable. For health checks. O(1).
   */
  ping(timeoutMs: number): Promise<void>;

  /** Releases connections. The store is unusable afterwards. */
  close(): Promise<void>;
}

/** What a fetcher's report of a transfer settles (see SwarmStore.settleTransfer). */
export interface TransferSettlement {
  /** Chunks it verified, clipped to the transfer's range and the stream's bounds; undefined: the whole range. */
  verified?: readonly ChunkRange[];
  /** Recorded against the transfer's server; undefined records nothing (a cancelled transfer). */
  outcome?: SourceOutcome;
}

export interface SettledTransfer {
  /** The transfer, as takeTransfer resolves it. */
  transfer: TransferRecord;
  /** Chunks the fetcher did not hold before (as addHoldings resolves). */
  added: number;
  /** The server's trust after the outcome (as recordSourceOutcome resolves); undefined without an outcome or server. */
  trust?: SourceTrust;
}

export interface FetcherSnapshot extends ChunkBounds {
  epoch: number;
  /** The stream's StreamMeta.hashedChunks: chunks below it can be verified, so transferred. */
  hashedChunks: number;
  /** The stream's StreamMeta.failure ("" unless its hashing failed). */
  failure: string;
  peer: PeerState | undefined;
  transfers: TransferRecord[];
}

/** accepted: being hashed, not joinable; ready: joinable (hashing may go on); failed: hashing failed midway. */
export type StreamStatus = "accepted" | "ready" | "failed";
export type StreamKindName = StreamMeta["kind"];
export type PeerRoleName = "viewer" | "seeder";
/** in_order: deadline-first from the position; bulk: rarest-first everywhere. */
export type WantOrder = "in_order" | "bulk";
export type SourceOutcome = "ok" | "failed" | "bad_data";

/** When `recordSourceOutcome` bans a source. */
export interface TrustPolicy {
  /** Bad reports (bad data, refused ranges) that ban any source. */
  banAfterBad: number;
  /** Failures in a row (no OK between) that ban a viewer as a source. */
  banAfterStrikes: number;
}

export interface JoinResult {
  /** False when the stream is unknown. */
  joined: boolean;
  /** Transfers of a record this join replaced (empty for a first join). */
  dropped: TransferRecord[];
}

/**
 * The chunks a stream has now: `low` to `high`, both inclusive (the same
 * convention as ChunkRange); none when high < low (an empty file: low 0,
 * high -1). A file's are fixed: low 0, high its last chunk. A live stream's
 * high grows with its edge and its low is raised (`raiseLow`) as its window
 * moves; low never goes down.
 */
export interface ChunkBounds {
  low: number;
  high: number;
}

/** What every kind of stream has. */
interface NewStreamBase {
  streamId: string;
  name: string;
  /** Bytes of a chunk (a file's last one may be shorter; a live stream's at most this). */
  chunkSize: number;
  version: number;
  createdMs: number;
}

/** An on-demand file: bounds 0 to chunkCount - 1, fixed. */
export interface NewFileStream extends NewStreamBase {
  kind: "file";
  size: number;
}

/**
 * A live stream: no size; its bounds start empty (low 0, high -1), high
 * grows with the live edge (`raiseHigh`) and low is raised (`raiseLow`) as
 * its window moves. Only its shape and bounds so far: live ingest creates it.
 */
export interface NewLiveStream extends NewStreamBase {
  kind: "live";
  /** Chunks kept up to the live edge: the window's length (low = high + 1 - windowChunks once it is full). */
  windowChunks: number;
}

export type NewStream = NewFileStream | NewLiveStream;

/** What the store keeps about any stream beside what it was created with. */
interface StreamState extends ChunkBounds {
  status: StreamStatus;
  /** When it became ready, 0 before. */
  readyMs: number;
  /** Chunks whose hashes are stored, from chunk 0 (the hashed frontier); chunkCount once a file is fully hashed. */
  hashedChunks: number;
  /** Why its hashing failed (status "failed"), "" otherwise. */
  failure: string;
}

export interface FileStreamMeta extends NewFileStream, StreamState {
  /** ceil(size / chunkSize); the bounds are 0 to chunkCount - 1. */
  chunkCount: number;
}

/** A live stream's meta: its live edge is `high`. */
export interface LiveStreamMeta extends NewLiveStream, StreamState {
  /** The broadcast ended: high will not grow any more. */
  ended: boolean;
}

/** A stream's meta: a union on `kind`. */
export type StreamMeta = FileStreamMeta | LiveStreamMeta;

/** The stream's chunks as a range (first > last when it has none). */
export function boundsRange(b: ChunkBounds): ChunkRange {
  return { first: b.low, last: b.high };
}

export interface PeerJoin {
  peerId: string;
  /** Data-plane host other peers connect to. */
  host: string;
  /** Data-plane port; 0 when the peer serves nobody. */
  port: number;
  role: PeerRoleName;
  mode: WantOrder;
  position: number;
  /** Initial holdings. */
  have: readonly ChunkRange[];
}

export interface SourceTrust {
  /** Transfers served that the fetcher reported OK. */
  served: number;
  /** Transfers that failed (connection, timeout). */
  failures: number;
  /** Failures since the last OK. */
  strikes: number;
  /** Transfers reported BAD_DATA or refused. */
  bad: number;
  banned: boolean;
}

export interface PeerState extends SourceTrust {
  peerId: string;
  host: string;
  port: number;
  role: PeerRoleName;
  mode: WantOrder;
  position: number;
  holdings: RangeSet;
  lastSeenMs: number;
  /** Transfers in flight that it fetches. */
  downloads: number;
  /** Transfers in flight that it serves. */
  uploads: number;
}

export interface SourceCandidate extends SourceTrust {
  peerId: string;
  host: string;
  port: number;
  role: PeerRoleName;
  /** Holdings clipped to the requested window. */
  holdings: RangeSet;
  uploads: number;
}

/** One report to settle (see `SwarmStore.settleTransfers`). */
export interface Settlement {
  transferId: number;
  report: TransferSettlement;
}

/** Throws unless `transfers` are all of one stream and one fetcher (see `SwarmStore.addTransfers`). */
export function checkOneFetcher(transfers: readonly TransferRecord[]): void {
  const [t] = transfers;
  if (t && transfers.some((x) => x.streamId !== t.streamId || x.fetcherId !== t.fetcherId)) {
    throw new Error("addTransfers takes the transfers of one fetcher in one stream");
  }
}

/** A plan's reads of one window (see `SwarmStore.planInputs`). */
export interface PlanInputs {
  availability: AvailabilitySegment[];
  sources: SourceCandidate[];
}

export interface SourceQuery {
  /** Peer to leave out (the fetcher itself). */
  exclude: string;
  limit: number;
  maxUploadsPeer: number;
  maxUploadsSeeder: number;
}

export interface AvailabilitySegment {
  first: number;
  last: number;
  count: number;
}

export interface TransferRecord {
  transferId: number;
  streamId: string;
  fetcherId: string;
  serverId: string;
  serverRole: PeerRoleName;
  range: ChunkRange;
  startedMs: number;
  expiresMs: number;
}

export interface SlotLimits {
  maxDownloads: number;
  maxUploadsPeer: number;
  maxUploadsSeeder: number;
}

export type AddTransferResult = "ok" | "unknown-peer" | "out-of-bounds" | "banned" | "fetcher-busy" | "server-busy";

export interface ExpiredPeer {
  streamId: string;
  peerId: string;
  role: PeerRoleName;
  transfers: TransferRecord[];
}

/**
 * What one tracker replica tells the others about a stream, on the stream's
 * channel (`<prefix>:{<streamId>}:events` on Redis).
 *
 * - cancel: these transfers were withdrawn (their source left, expired or
 *   was banned, or they expired); `fetcherIds[i]` fetches `transferIds[i]`.
 *   The replica holding a fetcher's session sends it a Cancel and replans it.
 * - joined: a peer entered the swarm (or re-joined with what it holds).
 * - left: peers left the swarm (said so, their session ended, or they expired).
 * - holdings: these peers hold `chunks` more chunks between them; a replica
 *   sends at most one per stream per schedule tick, however many reports.
 * - published: the stream is ready under `name`.
 * - retired: the name now points at the newer stream `by`; peers already in
 *   this one may finish it.
 * - live: a live stream's window moved (chunks attested, its low end
 *   raised, or it ended): its bounds, the source time of its edge chunk and
 *   the media time a chunk covers (ms, moving average), and the recent
 *   chunks attested as random access points (increasing), for its viewers.
 */
export type StreamEvent =
  | { type: "cancel"; transferIds: number[]; fetcherIds: string[] }
  | { type: "joined"; peerId: string; role: PeerRoleName }
  | { type: "left"; peerIds: string[] }
  | { type: "holdings"; peerIds: string[]; chunks: number }
  | { type: "published"; name: string }
  | { type: "retired"; name: string; by: string }
  | {
      type: "live";
      low: number;
      high: number;
      ended: boolean;
      edgeTimestampMs: number;
      chunkMs: number;
      randomAccess: number[];
    };

export interface EventHandlers {
  /** An event of a watched stream. Must not throw. */
  event(streamId: string, event: StreamEvent): void;
  /** An event of the fleet channel, once `watchFleet` was called. Must not throw. */
  fleet?(event: FleetEvent): void;
  /** The subscription reconnected and may have missed events: re-read what matters from the store. */
  resync(): void;
}

export interface EventSubscription {
  /** Starts delivering the stream's events (idempotent); resolves once subscribed. */
  watch(streamId: string): Promise<void>;
  /** Stops delivering the stream's events (idempotent). */
  unwatch(streamId: string): Promise<void>;
  /** Starts delivering the fleet channel's events to `handlers.fleet` (idempotent); resolves once subscribed. */
  watchFleet(): Promise<void>;
  /** Stops delivering the fleet channel's events (idempotent). */
  unwatchFleet(): Promise<void>;
  /** Streams watched now. */
  readonly watching: ReadonlySet<string>;
  /** Ends the subscription (Redis: closes its connection). */
  close(): Promise<void>;
}

/** What `storeInfo` tells. */
export interface StoreInfo {
  kind: "memory" | "redis" | "redis-cluster";
  /** Servers answering for it (a Cluster's masters; 1 for standalone and memory). */
  nodes: number;
  /** Bytes of memory the server(s) use (Redis used_memory, summed over masters); undefined for memory. */
  usedMemoryBytes: number | undefined;
  /** Server version, e.g. "7.0.15" ("" for memory). */
  version: string;
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");

/** Parses an event off the wire; undefined when it is not one. */
export function parseStreamEvent(text: string): StreamEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const e = v as Record<string, unknown>;
  switch (e.type) {
    case "cancel": {
      const ids = e.transferIds;
      const fetchers = e.fetcherIds;
      if (
        !Array.isArray(ids) ||
        !Array.isArray(fetchers) ||
        ids.length !== fetchers.length ||
        !ids.every((x) => Number.isSafeInteger(x)) ||
        !fetchers.every((x) => typeof x === "string")
      )
        return undefined;
      return { type: "cancel", transferIds: ids as number[], fetcherIds: fetchers as string[] };
    }
    case "joined":
      if (typeof e.peerId !== "string" || (e.role !== "viewer" && e.role !== "seeder")) return undefined;
      return { type: "joined", peerId: e.peerId, role: e.role };
    case "left":
      if (!isStrings(e.peerIds)) return undefined;
      return { type: "left", peerIds: e.peerIds };
    case "holdings":
      if (!isStrings(e.peerIds) || !Number.isSafeInteger(e.chunks)) return undefined;
      return { type: "holdings", peerIds: e.peerIds, chunks: e.chunks as number };
    case "published":
      if (typeof e.name !== "string") return undefined;
      return { type: "published", name: e.name };
    case "retired":
      if (typeof e.name !== "string" || typeof e.by !== "string") return undefined;
      return { type: "retired", name: e.name, by: e.by };
    case "live": {
      const nums = [e.low, e.high, e.edgeTimestampMs, e.chunkMs];
      if (!nums.every((x) => Number.isSafeInteger(x)) || typeof e.ended !== "boolean") return undefined;
      const [low, high, edgeTimestampMs, chunkMs] = nums as number[];
      // absent from a replica that predates it: no random access points known
      const randomAccess = e.randomAccess ?? [];
      if (!Array.isArray(randomAccess) || !randomAccess.every((x) => Number.isSafeInteger(x))) return undefined;
      return {
        type: "live",
        low: low!,
        high: high!,
        ended: e.ended,
        edgeTimestampMs: edgeTimestampMs!,
        chunkMs: chunkMs!,
        randomAccess: randomAccess as number[],
      };
    }
    default:
      return undefined;
  }
}
