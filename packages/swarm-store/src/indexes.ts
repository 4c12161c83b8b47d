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
 * Members ordered by a score, ties by member: the memory store's counterpart
 * of a Redis sorted set. Three of them per stream: `reach` (viewers that can
 * serve, by the highest chunk each holds: those holding something at or
 * after chunk f are the last countFrom(f) ranks, so when few peers are ahead
 * of a fetcher, `sources` samples them instead of every free peer), `floor`
 * (every peer holding something, by the lowest chunk it holds) and
 * `transfers` (by the last chunk of their range): `raiseLow` visits only the
 * peers and transfers below the new bound. Updates are O(log n) searches
 * plus an array move (memmove-fast at swarm sizes).
 */
export class ScoreIndex<K extends string | number> {
  private readonly ids: K[] = [];
  private readonly scores: number[] = [];
  private readonly score = new Map<K, number>();

  get size(): number {
    return this.ids.length;
  }

  /** Sets a member's score (ZADD). */
  set(id: K, score: number): void {
    const cur = this.score.get(id);
    if (cur === score) return;
    if (cur !== undefined) this.remove(id);
    const i = this.lowerBound(score, id);
    this.ids.splice(i, 0, id);
    this.scores.splice(i, 0, score);
    this.score.set(id, score);
  }

  /** Sets a member's score only when that raises it, or adds it (ZADD GT). */
  raise(id: K, score: number): void {
    const cur = this.score.get(id);
    if (cur === undefined || score > cur) this.set(id, score);
  }

  /** Sets a member's score only when that lowers it, or adds it (ZADD LT). */
  lower(id: K, score: number): void {
    const cur = this.score.get(id);
    if (cur === undefined || score < cur) this.set(id, score);
  }

  remove(id: K): void {
    const cur = this.score.get(id);
    if (cur === undefined) return;
    const i = this.lowerBound(cur, id);
    this.ids.splice(i, 1);
    this.scores.splice(i, 1);
    this.score.delete(id);
  }

  /** Number of members whose score is >= first. */
  countFrom(first: number): number {
    return this.ids.length - this.lowerBound(first);
  }

  /** Members whose score is < end, in order (ZRANGEBYSCORE -inf (end). */
  below(end: number): K[] {
    return this.ids.slice(0, this.lowerBound(end));
  }

  at(rank: number): K | undefined {
    return this.ids[rank];
  }

  /** First index whose (score, id) is >= (score, id); without id, the first whose score is >= score. */
  private lowerBound(score: number, id?: K): number {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const s = this.scores[mid]!;
      if (s < score || (s === score && id !== undefined && this.ids[mid]! < id)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
