import type { ChunkRange } from "@distribustream/pdtp";
import type { AvailabilitySegment } from "./store.js";

/**
 * A piecewise-constant count over chunks [0, size): sorted segment starts
 * with the count that holds up to the next start. Holdings and transfers are
 * ranges, so the number of segments stays proportional to the number of
 * range boundaries in the swarm, not to the number of chunks.
 */
export class SegmentCounts {
  private starts: number[] = [0];
  private counts: number[] = [0];

  constructor(readonly size: number) {}

  /** Index of the segment containing chunk n. */
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

  /** Adds delta to the count of every chunk of range (clipped to the size). */
  add(range: ChunkRange, delta: number): void {
    const first = Math.max(0, range.first);
    const last = Math.min(this.size - 1, range.last);
    if (first > last || delta === 0) return;
    const a = this.split(first);
    const end = last + 1 < this.size ? this.split(last + 1) : this.starts.length;
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

  /** Segments covering `window` (clipped), in order. */
  slice(window: ChunkRange): AvailabilitySegment[] {
    const first = Math.max(0, window.first);
    const last = Math.min(this.size - 1, window.last);
    const out: AvailabilitySegment[] = [];
    if (first > last) return out;
    for (let i = this.find(first); i < this.starts.length; i++) {
      const s = this.starts[i]!;
      if (s > last) break;
      const e = i + 1 < this.starts.length ? this.starts[i + 1]! - 1 : this.size - 1;
      out.push({ first: Math.max(s, first), last: Math.min(e, last), count: this.counts[i]! });
    }
    return out;
  }

  get segmentCount(): number {
    return this.starts.length;
  }
}
