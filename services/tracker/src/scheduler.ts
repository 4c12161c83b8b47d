import { RangeSet, type ChunkRange } from "@distribustream/pdtp";
import type { AvailabilitySegment, ChunkBounds, SourceCandidate, WantOrder } from "@distribustream/swarm-store";

/**
 * The tracker's brain, as a pure function: given what one fetcher holds and
 * wants, how available each chunk is and who could serve, decide which
 * ranges it fetches from whom. No I/O, so it is tested without a network.
 *
 * Which chunks: for an in-order peer, deadline first inside the urgent window
 * that starts at its output position (lowest missing chunk first); beyond it,
 * and everywhere for a bulk peer, rarest first by availability (holders plus
 * copies in flight, so concurrent fetchers spread over different chunks).
 *
 * From whom: a peer holding the chunks, with a free upload slot, scored by
 * trust, free slots and locality; a seeder only for chunks that no peer holds
 * or fetches (super-seeding: each chunk leaves the seeder about once), or for
 * the urgent window of a starving fetcher (nothing in flight for a while and
 * no peer able to serve it).
 *
 * Cost: O((segments + need ranges) log + pieces x sources), independent of
 * the number of chunks and of the swarm size (sources are a bounded sample).
 */

export interface SchedulerLimits {
  /** Transfers in flight per fetcher. */
  maxDownloads: number;
  /** Transfers in flight served by one viewer. */
  maxUploadsPeer: number;
  /** Transfers in flight served by one seeder. */
  maxUploadsSeeder: number;
  /** Chunks in one directive (at least 1). */
  maxRangeChunks: number;
  /** Chunks from the position that are fetched deadline-first (in-order peers). */
  urgentChunks: number;
  /** Chunks ahead of the first missing one that an in-order peer wants at once. */
  lookaheadChunks: number;
  /** Chunks ahead of the first missing one that a bulk peer considers at once. */
  bulkWindowChunks: number;
}

export const DEFAULT_LIMITS: SchedulerLimits = {
  maxDownloads: 4,
  maxUploadsPeer: 4,
  maxUploadsSeeder: 8,
  maxRangeChunks: 16,
  urgentChunks: 8,
  lookaheadChunks: 1024,
  bulkWindowChunks: 4096,
};

/** Limits with chunk counts derived from byte sizes for a stream's chunk size. */
export function limitsFor(
  chunkSize: number,
  base: Omit<SchedulerLimits, "maxRangeChunks" | "urgentChunks" | "lookaheadChunks" | "bulkWindowChunks">,
  bytes: { maxRangeBytes: number; urgentBytes: number; lookaheadBytes: number } = {
    maxRangeBytes: 4 * 1024 * 1024,
    urgentBytes: 2 * 1024 * 1024,
    lookaheadBytes: 256 * 1024 * 1024,
  },
): SchedulerLimits {
  const chunks = (b: number, min: number) => Math.max(min, Math.floor(b / Math.max(1, chunkSize)));
  return {
    ...base,
    maxRangeChunks: chunks(bytes.maxRangeBytes, 1),
    urgentChunks: Math.min(chunks(bytes.urgentBytes, 1), 64),
    lookaheadChunks: chunks(bytes.lookaheadBytes, 16),
    bulkWindowChunks: chunks(bytes.lookaheadBytes, 64),
  };
}

export interface FetcherView {
  peerId: string;
  host: string;
  mode: WantOrder;
  /** First chunk not yet written out. */
  position: number;
  holdings: RangeSet;
  /** Ranges it is fetching now. */
  inFlight: readonly ChunkRange[];
  /** Number of transfers it has in flight. */
  downloads: number;
}

export interface ScheduleInput {
  fetcher: FetcherView;
  /** The chunks it may be given (inclusive; none when high < low): the stream's bounds, or fewer. */
  bounds: ChunkBounds;
  limits: SchedulerLimits;
  /** Availability segments covering `window` (see SwarmStore.availability). */
  availability: readonly AvailabilitySegment[];
  /** Peers that could serve part of the window (see SwarmStore.sources). */
  sources: readonly SourceCandidate[];
  /**
   * The fetcher has had nothing in flight for a while (see Planner): its
   * urgent window may then come from a seeder even if copies are in flight
   * elsewhere or held by peers that cannot serve it.
   */
  starving?: boolean;
  /** Random numbers in [0, 1) for tie-breaking; injectable for tests. */
  random?: () => number;
}

export interface Assignment {
  range: ChunkRange;
  source: SourceCandidate;
}

/**
 * The chunks of `bounds` a fetcher considers now, or undefined when it wants
 * nothing more there (it holds or fetches everything from its position, or
 * from the low bound, up to the high one).
 */
export function wantWindow(
  fetcher: Pick<FetcherView, "mode" | "position" | "holdings" | "inFlight">,
  bounds: ChunkBounds,
  limits: SchedulerLimits,
): ChunkRange | undefined {
  const busy = busySet(fetcher);
  const start = fetcher.mode === "in_order" ? Math.max(bounds.low, fetcher.position) : bounds.low;
  const first = busy.firstMissing(start);
  if (first > bounds.high) return undefined;
  const span = fetcher.mode === "in_order" ? limits.lookaheadChunks : limits.bulkWindowChunks;
  return { first, last: Math.min(bounds.high, first + Math.max(1, span) - 1) };
}

function busySet(f: Pick<FetcherView, "holdings" | "inFlight">): RangeSet {
  const busy = f.holdings.clone();
  busy.addAll(f.inFlight);
  return busy;
}

interface Piece {
  first: number;
  last: number;
  count: number;
  urgent: boolean;
  tie: number;
}

/** Decides the fetcher's next directives; [] when it has no free slot or nothing can be served. */
export function schedule(input: ScheduleInput): Assignment[] {
  const { fetcher, limits, bounds } = input;
  const random = input.random ?? Math.random;
  let free = limits.maxDownloads - fetcher.downloads;
  if (free <= 0) return [];
  const window = wantWindow(fetcher, bounds, limits);
  if (!window) return [];

  // what it needs: the window minus what it holds or fetches
  const busy = busySet(fetcher);
  const need = new RangeSet(busy.gaps(window));
  if (need.isEmpty) return [];

  const urgentEnd =
    fetcher.mode === "in_order" ? Math.max(bounds.low, fetcher.position) + Math.max(0, limits.urgentChunks) - 1 : -1;

  // pieces: need split by availability segments (uniform count each)
  const pieces: Piece[] = [];
  for (const seg of input.availability) {
    for (const part of need.intersect(seg)) {
      // split at the urgent boundary so the urgent part sorts first
      if (part.first <= urgentEnd && part.last > urgentEnd) {
        pieces.push({ first: part.first, last: urgentEnd, count: seg.count, urgent: true, tie: 0 });
        pieces.push({ first: urgentEnd + 1, last: part.last, count: seg.count, urgent: false, tie: random() });
      } else {
        const urgent = part.last <= urgentEnd;
        pieces.push({ ...part, count: seg.count, urgent, tie: urgent ? 0 : random() });
      }
    }
  }
  const inOrder = fetcher.mode === "in_order";
  pieces.sort((a, b) => {
    if (a.urgent !== b.urgent) return a.urgent ? -1 : 1;
    if (a.urgent) return a.first - b.first; // deadline first
    if (a.count !== b.count) return a.count - b.count; // rarest first
    return inOrder ? a.first - b.first : a.tie - b.tie; // nearest the position, or random
  });

  // upload slots as this batch uses them
  const uploads = new Map<string, number>();
  for (const s of input.sources) uploads.set(s.peerId, s.uploads);
  const canServe = (s: SourceCandidate) =>
    !s.banned &&
    s.peerId !== fetcher.peerId &&
    s.port > 0 &&
    uploads.get(s.peerId)! < (s.role === "seeder" ? limits.maxUploadsSeeder : limits.maxUploadsPeer);
  // what does not change within this batch, once per source (not once per source and piece)
  const fixed = new Map<string, number>();
  for (const s of input.sources) {
    const trust = ((s.served + 1) / (s.served + s.failures + 1)) * 0.5 ** s.bad;
    fixed.set(s.peerId, trust * (sameNetwork(s.host, fetcher.host) ? 2 : 1));
  }
  const score = (s: SourceCandidate) => {
    const max = s.role === "seeder" ? limits.maxUploadsSeeder : limits.maxUploadsPeer;
    const freeSlots = (max - uploads.get(s.peerId)!) / max;
    return fixed.get(s.peerId)! * freeSlots;
  };

  const out: Assignment[] = [];
  const maxRange = Math.max(1, limits.maxRangeChunks);

  // pass 1: peers anywhere; the seeder only for chunks no one else has or fetches.
  // pass 2 (a starving in-order fetcher): the seeder also for the urgent window.
  // Copies in flight elsewhere are normally worth waiting for: that wait is
  // what keeps seeder egress near one copy when many viewers start together.
  for (const pass of [1, 2]) {
    if (pass === 2 && (!input.starving || fetcher.downloads > 0 || out.length > 0 || urgentEnd < 0)) break;
    for (const piece of pieces) {
      if (free <= 0) break;
      if (pass === 2 && !piece.urgent) continue;
      const seederOk = piece.count === 0 || pass === 2;
      let cursor = piece.first;
      while (cursor <= piece.last && free > 0) {
        // skip what an earlier directive of this batch took
        const open = need.firstIn({ first: cursor, last: piece.last });
        if (!open) break;
        cursor = open.first;
        const run = need.rangeAt(cursor)!;
        let best: SourceCandidate | undefined;
        let bestScore = -1;
        let bestRange: ChunkRange | undefined;
        let bestIsSeeder = true;
        let next = Infinity;
        for (const s of input.sources) {
          if (!canServe(s)) continue;
          const isSeeder = s.role === "seeder";
          if (isSeeder && !seederOk) continue;
          const held = s.holdings.rangeAt(cursor);
          if (!held) {
            const later = s.holdings.firstIn({ first: cursor, last: piece.last });
            if (later) next = Math.min(next, later.first);
            continue;
          }
          const range = isSeeder
            ? { first: cursor, last: Math.min(held.last, run.last, piece.last, cursor + maxRange - 1) }
            : peerRange(cursor, run, held, maxRange);
          // a peer always beats a seeder; among equals, the best score for the longest range, ties at random
          const sc = score(s) * (range.last - range.first + 1) + random() * 1e-9;
          if ((bestIsSeeder && !isSeeder) || (bestIsSeeder === isSeeder && sc > bestScore)) {
            best = s;
            bestScore = sc;
            bestRange = range;
            bestIsSeeder = isSeeder;
          }
        }
        if (!best || !bestRange) {
          if (next === Infinity) break;
          cursor = next;
          continue;
        }
        const range = bestRange;
        out.push({ range, source: best });
        need.remove(range);
        uploads.set(best.peerId, uploads.get(best.peerId)! + 1);
        free--;
        cursor = range.last + 1;
      }
    }
  }
  return out;
}

/**
 * What a peer holding `held` (its whole run around `at`) is given from chunk
 * `at` of `run`, a run of needed chunks: forward over the chunks of the run
 * it holds, up to maxRange; then, with room left, back over those before
 * `at`. In a swarm whose holdings have become a patchwork, the rarest chunk
 * often lies a few chunks into such a run, and a range cut at it left the
 * chunks before it to a directive of their own: every directive is a tracker
 * round trip, a ticket and a request, so fewer and longer ones cost less per
 * byte. (A seeder's range stays forward and on its piece: it serves only
 * what no one else has or fetches.)
 */
function peerRange(at: number, run: ChunkRange, held: ChunkRange, maxRange: number): ChunkRange {
  const last = Math.min(held.last, run.last, at + maxRange - 1);
  const room = maxRange - (last - at + 1);
  return { first: Math.max(run.first, held.first, at - room), last };
}

/** Same IPv4 /24, or same IPv6 /64. */
export function sameNetwork(a: string, b: string): boolean {
  if (!a || !b) return false;
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.\d+$/;
  const ma = v4.exec(a);
  const mb = v4.exec(b);
  if (ma && mb) return ma[1] === mb[1] && ma[2] === mb[2] && ma[3] === mb[3];
  if (a.includes(":") && b.includes(":")) {
    const prefix = (h: string) => expandV6(h)?.slice(0, 4).join(":");
    const pa = prefix(a);
    return pa !== undefined && pa === prefix(b);
  }
  return false;
}

function expandV6(h: string): string[] | undefined {
  const parts = h.split("::");
  if (parts.length > 2) return undefined;
  const head = parts[0] ? parts[0].split(":") : [];
  const tail = parts.length === 2 && parts[1] ? parts[1].split(":") : [];
  const fill = parts.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return undefined;
  return [...head, ...new Array<string>(fill).fill("0"), ...tail].map((x) => x.toLowerCase().replace(/^0+(?=.)/, ""));
}
