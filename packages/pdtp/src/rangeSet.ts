import type { ChunkRange } from "./gen/pdtp/v1/common.js";

/**
 * A set of chunk numbers kept as sorted, disjoint, non-adjacent inclusive
 * ranges. Holdings of a peer are a handful of ranges in practice, so every
 * operation is O(number of ranges) with a binary search where it matters.
 */
export class RangeSet {
  private rs: ChunkRange[] = [];
  private n = 0;

  constructor(ranges: Iterable<ChunkRange> = []) {
    for (const r of ranges) this.add(r);
  }

  static of(first: number, last: number): RangeSet {
    return new RangeSet([{ first, last }]);
  }

  /** Number of chunks in the set (kept up to date, O(1)). */
  get count(): number {
    return this.n;
  }

  private recount(): void {
    let n = 0;
    for (const r of this.rs) n += r.last - r.first + 1;
    this.n = n;
  }

  get isEmpty(): boolean {
    return this.rs.length === 0;
  }

  /** The ranges, sorted; callers must not mutate them. */
  ranges(): readonly ChunkRange[] {
    return this.rs;
  }

  clone(): RangeSet {
    const c = new RangeSet();
    c.rs = this.rs.map((r) => ({ first: r.first, last: r.last }));
    c.n = this.n;
    return c;
  }

  /** Index of the last range whose first <= n, or -1. */
  private floor(n: number): number {
    let lo = 0;
    let hi = this.rs.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.rs[mid]!.first <= n) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  has(n: number): boolean {
    const i = this.floor(n);
    return i >= 0 && this.rs[i]!.last >= n;
  }

  /** True when every chunk of `range` is in the set. */
  hasRange(range: ChunkRange): boolean {
    const i = this.floor(range.first);
    return i >= 0 && this.rs[i]!.last >= range.last;
  }

  /** Adds a range; returns the number of chunks that were not already in the set. */
  add(range: ChunkRange): number {
    if (range.first > range.last) return 0;
    // appending in order (parsing stored holdings, building from sorted input): O(1)
    const tail = this.rs[this.rs.length - 1];
    if (!tail || range.first > tail.last + 1) {
      this.rs.push({ first: range.first, last: range.last });
      this.n += range.last - range.first + 1;
      return range.last - range.first + 1;
    }
    if (range.first >= tail.first && range.last > tail.last) {
      const added = range.last - tail.last;
      this.rs[this.rs.length - 1] = { first: tail.first, last: range.last };
      this.n += added;
      return added;
    }
    if (this.hasRange(range)) return 0;
    const before = this.n;
    let first = range.first;
    let last = range.last;
    const out: ChunkRange[] = [];
    let placed = false;
    for (const r of this.rs) {
      if (r.last + 1 < first) out.push(r);
      else if (last + 1 < r.first) {
        if (!placed) {
          out.push({ first, last });
          placed = true;
        }
        out.push(r);
      } else {
        first = Math.min(first, r.first);
        last = Math.max(last, r.last);
      }
    }
    if (!placed) out.push({ first, last });
    this.rs = out;
    this.recount();
    return this.n - before;
  }

  addAll(ranges: Iterable<ChunkRange>): number {
    let n = 0;
    for (const r of ranges) n += this.add(r);
    return n;
  }

  /** Removes a range from the set. */
  remove(range: ChunkRange): void {
    const out: ChunkRange[] = [];
    for (const r of this.rs) {
      if (r.last < range.first || r.first > range.last) out.push(r);
      else {
        if (r.first < range.first) out.push({ first: r.first, last: range.first - 1 });
        if (r.last > range.last) out.push({ first: range.last + 1, last: r.last });
      }
    }
    this.rs = out;
    this.recount();
  }

  /** First chunk >= from that is not in the set. */
  firstMissing(from: number): number {
    const i = this.floor(from);
    if (i >= 0 && this.rs[i]!.last >= from) return this.rs[i]!.last + 1;
    return from;
  }

  /** Ranges inside `within` that are not in the set, in order. */
  *gaps(within: ChunkRange): Generator<ChunkRange> {
    let cursor = within.first;
    for (let i = Math.max(0, this.floor(within.first)); i < this.rs.length; i++) {
      const r = this.rs[i]!;
      if (r.last < cursor) continue;
      if (r.first > within.last) break;
      if (r.first > cursor) yield { first: cursor, last: Math.min(r.first - 1, within.last) };
      cursor = r.last + 1;
      if (cursor > within.last) return;
    }
    if (cursor <= within.last) yield { first: cursor, last: within.last };
  }

  /** Parts of `range` that are in the set, in order (from a binary search: O(log n + parts)). */
  *intersect(range: ChunkRange): Generator<ChunkRange> {
    for (let i = Math.max(0, this.floor(range.first)); i < this.rs.length; i++) {
      const r = this.rs[i]!;
      if (r.last < range.first) continue;
      if (r.first > range.last) break;
      yield { first: Math.max(r.first, range.first), last: Math.min(r.last, range.last) };
    }
  }

  /** The whole range of the set that holds chunk `n`, or undefined when `n` is not in the set: O(log n). */
  rangeAt(n: number): ChunkRange | undefined {
    const r = this.rs[this.floor(n)];
    return r && r.last >= n ? { first: r.first, last: r.last } : undefined;
  }

  /** The first part of `range` that is in the set, or undefined: O(log n), no iterator. */
  firstIn(range: ChunkRange): ChunkRange | undefined {
    if (range.first > range.last) return undefined;
    let i = this.floor(range.first);
    if (i < 0 || this.rs[i]!.last < range.first) i++;
    const r = this.rs[i];
    if (!r || r.first > range.last) return undefined;
    return { first: Math.max(r.first, range.first), last: Math.min(r.last, range.last) };
  }

  toString(): string {
    return this.rs.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join(",");
  }
}
