import type { ChunkRange } from "@distribustream/pdtp";
import { LiveWindow } from "@distribustream/data-plane";

/**
 * The verified chunks of a live stream a viewer holds, to write out and to
 * serve on to other peers with their attestations. Chunks arrive out of
 * order (transfers run side by side) and a chunk given up leaves a gap for
 * good, while a LiveWindow keeps one contiguous run of sequence numbers: so
 * each run is a LiveWindow, runs are merged when a chunk joins two, and the
 * runs wholly below the swarm's window are dropped. Memory: each run keeps at
 * most `windowChunks` chunks, and only the run across the window's low end
 * holds chunks below it, so at most about two windows' worth.
 */
export class LiveHoldings {
  /** Disjoint, not adjacent, in sequence order. */
  private runs: LiveWindow[] = [];

  constructor(private readonly windowChunks: number) {}

  /** Chunks held. */
  get count(): number {
    let n = 0;
    for (const r of this.runs) n += r.edge! - r.low! + 1;
    return n;
  }

  /** Bytes held. */
  get bytes(): number {
    let n = 0;
    for (const r of this.runs) n += r.bytes;
    return n;
  }

  /**
   * Keeps verified chunk `seq`: its bytes (kept as given: pass a copy of a
   * reused buffer), its source time and its frame head (liveFrameHead of its
   * attestation). False when it is held already.
   */
  put(seq: number, data: Buffer, timestampMs: number, head: Buffer): boolean {
    const i = this.runBefore(seq);
    const run = this.runs[i];
    if (run && seq <= run.edge!) return false;
    const next = this.runs[i + 1];
    let at: number;
    if (run && run.edge === seq - 1) at = i;
    else {
      at = i + 1;
      this.runs.splice(at, 0, new LiveWindow(this.windowChunks));
    }
    const target = this.runs[at]!;
    target.push(seq, data, timestampMs);
    target.attest(seq, head);
    if (next && next.low === seq + 1) {
      moveInto(target, next);
      this.runs.splice(at + 1, 1);
    }
    return true;
  }

  has(seq: number): boolean {
    return this.runOf(seq) !== undefined;
  }

  /** Chunk `seq`'s bytes and source time, or undefined when not held. */
  chunk(seq: number): { data: Buffer; timestampMs: number } | undefined {
    return this.runOf(seq)?.chunk(seq);
  }

  /** Chunk `seq`'s frame head (length prefix and signed attestation), or undefined when not held. */
  head(seq: number): Buffer | undefined {
    return this.runOf(seq)?.attested({ first: seq, last: seq })?.[0];
  }

  /** True when every chunk of `range` is held. */
  holds(range: ChunkRange): boolean {
    const run = this.runOf(range.first);
    return run !== undefined && run.holds(range);
  }

  /** The frames of `range` for a /live/ request, or undefined when a chunk of it is not held. */
  attested(range: ChunkRange): Buffer[] | undefined {
    return this.runOf(range.first)?.attested(range);
  }

  /** What is held, as ranges in order. */
  ranges(): ChunkRange[] {
    return this.runs.map((r) => ({ first: r.low!, last: r.edge! }));
  }

  /** The chunks of `range` held, as ranges in order. */
  heldIn(range: ChunkRange): ChunkRange[] {
    const out: ChunkRange[] = [];
    for (const r of this.runs) {
      const first = Math.max(r.low!, range.first);
      const last = Math.min(r.edge!, range.last);
      if (first <= last) out.push({ first, last });
    }
    return out;
  }

  /** Forgets the runs that end below `low` (the swarm's window moved past them). */
  dropBelow(low: number): void {
    const keep = this.runs.findIndex((r) => r.edge! >= low);
    if (keep === -1) this.runs = [];
    else if (keep > 0) this.runs.splice(0, keep);
  }

  /** The run holding `seq`, if any. */
  private runOf(seq: number): LiveWindow | undefined {
    const run = this.runs[this.runBefore(seq)];
    return run && seq <= run.edge! ? run : undefined;
  }

  /** Index of the last run starting at or before `seq` (-1 when none does). */
  private runBefore(seq: number): number {
    let lo = -1;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runs[mid]!.low! <= seq) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** Appends run `from` (which starts right after `to`'s edge) to `to`: the same buffers, no copy. */
function moveInto(to: LiveWindow, from: LiveWindow): void {
  for (let seq = from.low!; seq <= from.edge!; seq++) {
    const c = from.chunk(seq)!;
    const head = from.attested({ first: seq, last: seq })![0]!;
    to.push(seq, c.data, c.timestampMs);
    to.attest(seq, head);
  }
}
