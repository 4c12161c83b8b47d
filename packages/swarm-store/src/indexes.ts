/**
 * The viewers of a stream that can serve (they hold something, have a data
 * port and are not banned), bucketed by how many transfers each serves now:
 * the memory store's counterpart of the Redis store's `sources` sorted set
 * (member = peer, score = uploads). Ranks run through the buckets in load
 * order, so the peers with fewer than k uploads are exactly the ranks
 * [0, countBelow(k)), and `sources` can sample them from a random rank
 * without looking at busy peers. Every operation is O(1) or O(highest load),
 * and loads are bounded by the upload slot limits (a handful).
 */
export class LoadIndex {
  private readonly buckets: string[][] = [];
  private readonly where = new Map<string, { load: number; i: number }>();

  get size(): number {
    return this.where.size;
  }

  has(id: string): boolean {
    return this.where.has(id);
  }

  /** Adds a peer with this load; no-op when it is already in. */
  add(id: string, load: number): void {
    if (this.where.has(id)) return;
    const b = (this.buckets[load] ??= []);
    this.where.set(id, { load, i: b.length });
    b.push(id);
  }

  remove(id: string): void {
    const w = this.where.get(id);
    if (!w) return;
    const b = this.buckets[w.load]!;
    const last = b.pop()!;
    if (last !== id) {
      b[w.i] = last;
      this.where.get(last)!.i = w.i;
    }
    this.where.delete(id);
  }

  /** Changes a peer's load by delta, if it is in (ZADD XX INCR). */
  shift(id: string, delta: number): void {
    const w = this.where.get(id);
    if (!w) return;
    this.remove(id);
    this.add(id, Math.max(0, w.load + delta));
  }

  /** Number of peers whose load is below max. */
  countBelow(max: number): number {
    let n = 0;
    for (let load = 0; load < Math.min(max, this.buckets.length); load++) n += this.buckets[load]?.length ?? 0;
    return n;
  }

  /** The peer at this rank in load order, or undefined past the end. */
  at(rank: number): string | undefined {
    let r = rank;
    for (const b of this.buckets) {
      if (!b) continue;
      if (r < b.length) return b[r];
      r -= b.length;
    }
    return undefined;
  }
}

/**
 * The same viewers ordered by the highest chunk each holds: the memory
 * store's counterpart of the Redis store's `reach` sorted set. Those holding
 * something at or after chunk f are the last countFrom(f) ranks, so when few
 * peers are ahead of a fetcher (a new chunk that has just left the seeder, a
 * live edge), `sources` samples them instead of every free peer. Updates are
 * O(log n) searches plus an array move (memmove-fast at swarm sizes).
 */
export class ReachIndex {
  private readonly ids: string[] = [];
  private readonly scores: number[] = [];
  private readonly score = new Map<string, number>();

  get size(): number {
    return this.ids.length;
  }

  /** Sets a peer's highest chunk; only ever raises it (ZADD GT). */
  raise(id: string, highest: number): void {
    const cur = this.score.get(id);
    if (cur !== undefined && cur >= highest) return;
    if (cur !== undefined) this.remove(id);
    const i = this.lowerBound(highest, id);
    this.ids.splice(i, 0, id);
    this.scores.splice(i, 0, highest);
    this.score.set(id, highest);
  }

  remove(id: string): void {
    const cur = this.score.get(id);
    if (cur === undefined) return;
    const i = this.lowerBound(cur, id);
    this.ids.splice(i, 1);
    this.scores.splice(i, 1);
    this.score.delete(id);
  }

  /** Number of peers whose highest chunk is >= first. */
  countFrom(first: number): number {
    return this.ids.length - this.lowerBound(first, "");
  }

  at(rank: number): string | undefined {
    return this.ids[rank];
  }

  /** First index whose (score, id) is >= (score, id). */
  private lowerBound(score: number, id: string): number {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const s = this.scores[mid]!;
      if (s < score || (s === score && this.ids[mid]! < id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
