import type { ChunkRange } from "@distribustream/pdtp";
import type { AvailabilitySegment } from "./store.js";

/**
 * A piecewise-constant count over a stream's chunks [low, high]: sorted
 * segment starts with the count that holds up to the next start (the first
 * start is always `low`). Holdings and transfers are ranges, so the number of
 * segments stays proportional to the number of range boundaries in the
 * swarm, not to the number of chunks.
 *
 * The bounds move like a live stream's: `dropBelow` raises low (forgetting
 * the counts below it) and `grow` raises high (the new chunks count 0). A
 * file's stay where they were created.
 */
export class SegmentCounts {
  private starts: number[];
  private counts: number[] = [0];

  /** Counts 0 over [low, high]; empty when high < low. */
  constructor(
    low: number,
    private high: number,
  ) {
    this.starts = [low];
  }

  /** The first chunk counted (the first segment's start). */
  get low(): number {
    return this.starts[0]!;
  }

  /** Index of the segment containing chunk n (n >= low). */
  private find(n: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= n) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Makes `n` a segment start; returns its index. */
  private split(n: number): number {
    const i = this.find(n);
    if (this.starts[i] === n) return i;
    this.starts.splice(i + 1, 0, n);
    this.counts.splice(i + 1, 0, this.counts[i]!);
    return i + 1;
  }

  /** Adds delta to the count of every chunk of range (clipped to [low, high]). */
  add(range: ChunkRange, delta: number): void {
    const first = Math.max(this.low, range.first);
    const last = Math.min(this.high, range.last);
    if (first > last || delta === 0) return;
    const a = this.split(first);
    const end = last < this.high ? this.split(last + 1) : this.starts.length;
    for (let i = a; i < end; i++) this.counts[i]! += delta;
    // merge equal neighbours around the touched span
    const lo = Math.max(1, a);
    const hi = Math.min(this.starts.length - 1, end);
    for (let i = hi; i >= lo; i--) {
      if (this.counts[i] === this.counts[i - 1]) {
        this.starts.splice(i, 1);
        this.counts.splice(i, 1);
      }
    }
  }

  /** Raises high to n; chunks (high, n] count 0. No-op when n <= high. */
  grow(n: number): void {
    if (n <= this.high) return;
    // the chunk after the old high starts a zero segment (unless the counts end in one already)
    const from = Math.max(this.low, this.high + 1);
    if (this.counts[this.counts.length - 1] !== 0) {
      this.starts.push(from);
      this.counts.push(0);
    }
    this.high = n;
  }

  /** Forgets the counts below chunk n: the segment holding n starts at n. O(segments dropped). No-op when n <= low. */
  dropBelow(n: number): void {
    if (n <= this.low) return;
    if (n > this.high) {
      this.starts = [n];
      this.counts = [0];
      return;
    }
    const i = this.find(n);
    this.starts.splice(0, i);
    this.counts.splice(0, i);
    this.starts[0] = n;
  }

  /** Segments covering `window` (clipped to [low, high]), in order. */
  slice(window: ChunkRange): AvailabilitySegment[] {
    const first = Math.max(this.low, window.first);
    const last = Math.min(this.high, window.last);
    const out: AvailabilitySegment[] = [];
    if (first > last) return out;
    for (let i = this.find(first); i < this.starts.length; i++) {
      const s = this.starts[i]!;
      if (s > last) break;
      const e = i + 1 < this.starts.length ? this.starts[i + 1]! - 1 : last;
      out.push({ first: Math.max(s, first), last: Math.min(e, last), count: this.counts[i]! });
    }
    return out;
  }

  get segmentCount(): number {
    return this.starts.length;
  }
}
