/**
 * Fleet events: what a tracker replica tells whoever watches the whole fleet
 * (the dashboard), on one channel for the store (`<prefix>:fleet` on Redis),
 * as opposed to the per-stream channels of StreamEvent. Today one kind: a
 * replica's stats summary, about once a second. Every list in it is bounded,
 * so a summary stays a few KiB to a few tens of KiB whatever the swarm size.
 */

/** Most streams, peers per stream, seeders, events and name totals one summary carries. */
export const FLEET_LIMITS = {
  streams: 200,
  peersPerStream: 24,
  seeders: 64,
  events: 32,
  totals: 1000,
  /** Longest string kept (names, addresses, agents, details). */
  text: 256,
} as const;

/**
 * Upper bounds (ms) of the buckets of a viewer-delay histogram: bucket i
 * counts the viewers whose current delay is at most LIVE_DELAY_BUCKETS_MS[i]
 * (and above the bound before it); the last bucket holds the rest.
 */
export const LIVE_DELAY_BUCKETS_MS = [
  100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 7500,
  10_000, 15_000, 20_000, 30_000,
] as const;

/** One peer of a stream as a replica sees it. */
export interface FleetPeer {
  peerId: string;
  /** Its session is on this replica (address, agent, held, trust and delay are known only there). */
  local: boolean;
  role: "viewer" | "seeder";
  /** Data-plane address other peers reach it at ("" when not local). */
  address: string;
  /** Its Hello's agent string, e.g. "dsclient/0.1.0" ("" when not local). */
  agent: string;
  /** Bytes per second it fetched, as reported by itself to this replica. */
  downRate: number;
  /** Bytes per second it served, as reported by the fetchers on this replica. */
  upRate: number;
  /** Chunks it holds (-1 unknown: not local, or a live stream). */
  held: number;
  /** Its trust as a source in this stream, as last recorded by this replica (fleet-wide counters). */
  served: number;
  failures: number;
  bad: number;
  banned: boolean;
  /** Live: its latest source-to-output delay (ms), or -1. */
  delayMs: number;
}

/** One stream as a replica sees it. */
export interface FleetStream {
  streamId: string;
  name: string;
  kind: "file" | "live";
  /** Sessions of this replica in it. */
  viewers: number;
  seeders: number;
  /** Live: how many of this replica's viewers have each delay (LIVE_DELAY_BUCKETS_MS, then the rest). */
  delayHistogram: number[];
  /** The busiest and the misbehaving peers first, at most FLEET_LIMITS.peersPerStream. */
  peers: FleetPeer[];
}

/** Cumulative figures of one stream name on a replica: the same counters as its Prometheus metrics. */
export interface FleetTotals {
  name: string;
  /** pdtp_tracker_delivered_bytes_total{stream=name,source="peer"} */
  peerBytes: number;
  /** pdtp_tracker_delivered_bytes_total{stream=name,source="seeder"} */
  seederBytes: number;
  /** pdtp_tracker_completed_total{stream=name} */
  completed: number;
}

/** A seeder session of a replica. */
export interface FleetSeeder {
  peerId: string;
  address: string;
  agent: string;
  /** Streams it publishes in this session. */
  streams: number;
  /** Bytes per second it served, as reported by the fetchers on this replica (all streams). */
  upRate: number;
}

/** Something an operator wants to see happen: a join or departure, a completed download, a ban, a rejected chunk. */
export interface FleetNotice {
  atMs: number;
  streamId: string;
  type: "joined" | "left" | "completed" | "banned" | "bad-chunk";
  peerId: string;
  detail: string;
}

/** A replica's stats summary. */
export interface ReplicaStats {
  replicaId: string;
  /** Its PDTP address as it listens (host:port). */
  address: string;
  startedMs: number;
  sentMs: number;
  /** How often it sends one (ms): a watcher counts it gone after a few missed. */
  intervalMs: number;
  viewers: number;
  seeders: number;
  directivesPerSecond: number;
  /** Round trip of its last store ping (ms), -1 when it failed. */
  storeLatencyMs: number;
  storeUp: boolean;
  cleanupLeader: boolean;
  /** It has the checksum service's network key (it reached the service). */
  checksumReachable: boolean;
  /** Its viewer sessions whose data port did not accept the connect-back probe (never sources); 0 from older replicas. */
  unreachablePeers: number;
  streams: FleetStream[];
  totals: FleetTotals[];
  seederSessions: FleetSeeder[];
  notices: FleetNotice[];
  /** Notices left out of this summary (over FLEET_LIMITS.events). */
  noticesDropped: number;
}

export type FleetEvent = { type: "replica-stats"; stats: ReplicaStats };

// ---- parsing ------------------------------------------------------------------
// A fleet channel can be published to by anything that reaches the store; a
// watcher takes only well-formed summaries, with every list and string bounded.

class Bad extends Error {}
type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Bad();
  return v as Obj;
};
const num = (v: unknown, min = -1): number => {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min) throw new Bad();
  return v;
};
const str = (v: unknown): string => {
  if (typeof v !== "string" || v.length > FLEET_LIMITS.text) throw new Bad();
  return v;
};
const bool = (v: unknown): boolean => {
  if (typeof v !== "boolean") throw new Bad();
  return v;
};
const list = <T>(v: unknown, max: number, each: (x: unknown) => T): T[] => {
  if (!Array.isArray(v) || v.length > max) throw new Bad();
  return v.map(each);
};
const oneOf = <T extends string>(v: unknown, values: readonly T[]): T => {
  if (!values.includes(v as T)) throw new Bad();
  return v as T;
};

const NOTICE_TYPES = ["joined", "left", "completed", "banned", "bad-chunk"] as const;

function parsePeer(v: unknown): FleetPeer {
  const p = obj(v);
  return {
    peerId: str(p.peerId),
    local: bool(p.local),
    role: oneOf(p.role, ["viewer", "seeder"] as const),
    address: str(p.address),
    agent: str(p.agent),
    downRate: num(p.downRate, 0),
    upRate: num(p.upRate, 0),
    held: num(p.held),
    served: num(p.served, 0),
    failures: num(p.failures, 0),
    bad: num(p.bad, 0),
    banned: bool(p.banned),
    delayMs: num(p.delayMs),
  };
}

function parseStream(v: unknown): FleetStream {
  const s = obj(v);
  return {
    streamId: str(s.streamId),
    name: str(s.name),
    kind: oneOf(s.kind, ["file", "live"] as const),
    viewers: num(s.viewers, 0),
    seeders: num(s.seeders, 0),
    delayHistogram: list(s.delayHistogram, LIVE_DELAY_BUCKETS_MS.length + 1, (x) => num(x, 0)),
    peers: list(s.peers, FLEET_LIMITS.peersPerStream, parsePeer),
  };
}

function parseStats(v: unknown): ReplicaStats {
  const r = obj(v);
  return {
    replicaId: str(r.replicaId),
    address: str(r.address),
    startedMs: num(r.startedMs, 0),
    sentMs: num(r.sentMs, 0),
    intervalMs: num(r.intervalMs, 1),
    viewers: num(r.viewers, 0),
    seeders: num(r.seeders, 0),
    directivesPerSecond: num(r.directivesPerSecond, 0),
    storeLatencyMs: num(r.storeLatencyMs),
    storeUp: bool(r.storeUp),
    cleanupLeader: bool(r.cleanupLeader),
    checksumReachable: bool(r.checksumReachable),
    unreachablePeers: r.unreachablePeers === undefined ? 0 : num(r.unreachablePeers, 0),
    streams: list(r.streams, FLEET_LIMITS.streams, parseStream),
    totals: list(r.totals, FLEET_LIMITS.totals, (x) => {
      const t = obj(x);
      return {
        name: str(t.name),
        peerBytes: num(t.peerBytes, 0),
        seederBytes: num(t.seederBytes, 0),
        completed: num(t.completed, 0),
      };
    }),
    seederSessions: list(r.seederSessions, FLEET_LIMITS.seeders, (x) => {
      const s = obj(x);
      return {
        peerId: str(s.peerId),
        address: str(s.address),
        agent: str(s.agent),
        streams: num(s.streams, 0),
        upRate: num(s.upRate, 0),
      };
    }),
    notices: list(r.notices, FLEET_LIMITS.events, (x) => {
      const n = obj(x);
      return {
        atMs: num(n.atMs, 0),
        streamId: str(n.streamId),
        type: oneOf(n.type, NOTICE_TYPES),
        peerId: str(n.peerId),
        detail: str(n.detail),
      };
    }),
    noticesDropped: num(r.noticesDropped, 0),
  };
}

/** Parses a fleet event off the wire; undefined when it is not a well-formed one. */
export function parseFleetEvent(text: string): FleetEvent | undefined {
  try {
    const e = obj(JSON.parse(text));
    if (e.type !== "replica-stats") return undefined;
    return { type: "replica-stats", stats: parseStats(e.stats) };
  } catch {
    return undefined;
  }
}

/** A string cut to FLEET_LIMITS.text characters, for the writers of summaries. */
export function fleetText(s: string): string {
  return s.length > FLEET_LIMITS.text ? s.slice(0, FLEET_LIMITS.text) : s;
}
