/**
 * What the dashboard serves: the JSON of /api/stats.json and
 * /api/streams/ID.json, and of the Server-Sent Events that carry the same
 * figures to the pages. Field names are stable (documented in the README);
 * new fields may be added. Shared by the server and the pages (types only).
 * Rates are bytes per second, times epoch milliseconds, delays milliseconds.
 */

/** /api/stats.json, and the "stats" event of /api/events. */
export interface StatsSnapshot {
  generatedMs: number;
  /** Figures over every stream listed (not only the rows). */
  totals: {
    streams: number;
    viewers: number;
    seeders: number;
    /** Viewers whose data port the trackers could not connect to: they download, never serve (pdtp_tracker_unreachable_peers over the replicas alive). */
    unreachablePeers: number;
    peerBytes: number;
    seederBytes: number;
    /** peerBytes / (peerBytes + seederBytes) in percent; null before any byte. */
    offloadPercent: number | null;
    completed: number;
  };
  /** The streams with the most viewers first, then by name: at most `streams` of the query (default 200). */
  streams: StreamRow[];
  fleet: FleetSnapshot;
}

export interface StreamRow {
  streamId: string;
  name: string;
  kind: "file" | "live";
  status: "accepted" | "ready" | "failed";
  /** File: bytes; live: null. */
  size: number | null;
  chunkSize: number;
  /** File: chunks; live: chunks of its window now (high - low + 1). */
  chunks: number;
  /** Live: its window's chunk bounds and length; null for a file. */
  window: { low: number; high: number; windowChunks: number } | null;
  /** Live: sequence number of its edge (newest attested chunk), null before any or for a file. */
  liveEdge: number | null;
  /** Live: the broadcast ended. */
  ended: boolean;
  /** Peers in its swarm (swarm store), over every replica. */
  viewers: number;
  seeders: number;
  /** Viewers that wrote the whole file out (pdtp_tracker_completed_total over the replicas alive). */
  completed: number;
  /** Bytes viewers got from peers and from seeders (pdtp_tracker_delivered_bytes_total over the replicas alive). */
  peerBytes: number;
  seederBytes: number;
  /** Share of the bytes carried by peers, percent; null before any byte. */
  offloadPercent: number | null;
  /** Live: median and 95th percentile of the viewers' delay behind the source; null without reports. */
  delayP50Ms: number | null;
  delayP95Ms: number | null;
}

export interface FleetSnapshot {
  replicas: ReplicaRow[];
  store: StoreRow;
  checksum: ChecksumRow;
  seeders: SeederRow[];
}

export interface ReplicaRow {
  replicaId: string;
  address: string;
  /** Its last summary came within 3 of its intervals (at least 3 s). */
  alive: boolean;
  lastSeenMs: number;
  uptimeSeconds: number;
  viewers: number;
  seeders: number;
  directivesPerSecond: number;
  /** Its last swarm store ping; null when it failed. */
  storeLatencyMs: number | null;
  storeUp: boolean;
  cleanupLeader: boolean;
  checksumReachable: boolean;
  /** Its viewers whose data port did not accept its connect-back probe. */
  unreachablePeers: number;
}

export interface StoreRow {
  kind: "memory" | "redis" | "redis-cluster";
  nodes: number;
  up: boolean;
  /** The dashboard's own PING round trip; null when it failed. */
  latencyMs: number | null;
  usedMemoryBytes: number | null;
  version: string;
}

export interface ChecksumRow {
  /** The dashboard was told how to reach the checksum service's metrics. */
  configured: boolean;
  up: boolean | null;
  bytesHashedTotal: number | null;
  /** Bytes hashed per second over the last few seconds. */
  hashBytesPerSecond: number | null;
  liveChunksAttestedPerSecond: number | null;
  /** Alive replicas that reached the checksum service, of all alive. */
  reachableFromReplicas: number;
}

export interface SeederRow {
  peerId: string;
  address: string;
  agent: string;
  streams: number;
  upRate: number;
  replicaId: string;
}

/** /api/streams/ID.json, and the "stream" event of /api/events?stream=ID. */
export interface StreamDetail {
  generatedMs: number;
  stream: StreamRow;
  /** Peers in its swarm (viewers + seeders). */
  peersTotal: number;
  /** The misbehaving, then the busiest: at most `peers` of the query (default 50). */
  peers: PeerRow[];
  availability: AvailabilityStrip;
  /** Once a second for the last 10 minutes (in an SSE "stream" event after the first, only the newest point). */
  history: HistoryPoint[];
  /** Joins, departures, completions, bans and rejected chunks, newest first. */
  notices: NoticeRow[];
}

export interface PeerRow {
  peerId: string;
  role: "viewer" | "seeder";
  address: string;
  agent: string;
  /** The tracker replica its session is on ("" when that replica did not list it). */
  replicaId: string;
  downRate: number;
  upRate: number;
  /** Chunks held; null when unknown (live streams, peers their replica did not list). */
  held: number | null;
  /** As a source: transfers served OK, failed, reported bad; banned from serving. */
  served: number;
  failures: number;
  bad: number;
  banned: boolean;
  /** Live: its delay behind the source. */
  delayMs: number | null;
}

export interface AvailabilityStrip {
  low: number;
  high: number;
  /** Chunks per bucket (the last may hold fewer). */
  bucketChunks: number;
  /** Per bucket, the fewest copies any of its chunks has among viewers (holders plus copies in flight). */
  minHolders: number[];
}

export interface HistoryPoint {
  t: number;
  offloadPercent: number | null;
  peerRate: number;
  seederRate: number;
}

export interface NoticeRow {
  atMs: number;
  streamId: string;
  type: "joined" | "left" | "completed" | "banned" | "bad-chunk";
  peerId: string;
  detail: string;
  replicaId: string;
}
