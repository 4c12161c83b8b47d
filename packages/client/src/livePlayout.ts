/**
 * When a live viewer writes each chunk out: where it tunes in, when a missing
 * chunk is given up (skipped), when it re-tunes. Pure logic over a clock: the
 * download feeds it what the tracker announced and what arrived verified, and
 * writes what `step` says, in order.
 *
 * The playback clock: the first chunk written at time t with source time ts
 * sets the viewer's delay D = t - ts; chunk s is due at ts(s) + D + grace. A
 * chunk still missing when due is skipped, but only when a later chunk is
 * here to write instead: while nothing later has arrived (the source or the
 * swarm stalled) the viewer waits and discards nothing. A viewer whose delay
 * grew past `retuneAfterMs` (a long stall) jumps back to the live edge minus
 * the prebuffer, never backwards.
 *
 * Where an output starts: in an MPEG-TS stream some chunks begin at a random
 * access point (a PAT, PMT and video keyframe: their attestations say so,
 * and the tracker's window lists the recent ones), and an output that starts
 * with one decodes from its first byte. A tune-in or re-tune goes to the
 * newest such chunk at or before the edge minus the prebuffer (so the
 * viewer's delay grows by up to a keyframe interval), else to the oldest one
 * after it; a stream without any (not MPEG-TS) starts at the prebuffer point.
 * When the tune-in chunk itself never arrives, the viewer skips on to the
 * next random access point rather than start mid-picture.
 *
 * Source times come from attestations (`announce`). Before a chunk's
 * attestation is here, its time is estimated from the window the tracker
 * sent (`window`: the edge chunk's time and the average media time of a
 * chunk): edge_ts - (edge - seq) * chunk_ms, or the same from the nearest
 * announced chunk after it. So a viewer tunes in from the window alone,
 * before it holds any chunk.
 */
/** Media behind the live edge a viewer starts at by default: well under a second. */
export const DEFAULT_PREBUFFER_MS = 500;

export interface PlayoutOptions {
  /** Media behind the live edge to start at (default DEFAULT_PREBUFFER_MS). */
  prebufferMs?: number;
  /** Slack past a chunk's due time before it is skipped (default 300 ms). */
  graceMs?: number;
  /** Re-tune when the delay has grown past this (default 5 s beyond the prebuffer). */
  retuneAfterMs?: number;
  /** Start at the window's low end instead of the edge (--from-start); no re-tuning then. */
  fromStart?: boolean;
  /** Once the broadcast ended, how long past its deadline a last chunk is still waited for (default 5 s). */
  endWaitMs?: number;
}

/** The swarm's window as the tracker sends it (Joined, LiveEdge). */
export interface PlayoutWindow {
  low: number;
  edge: number;
  /** Source time of the edge chunk. */
  edgeTimestampMs: number;
  /** Average media time of a chunk (at least 1). */
  chunkMs: number;
  /** The broadcast ended: `edge` is its last chunk. */
  ended?: boolean;
  /** Recent chunks in [low, edge] that begin at a random access point. */
  randomAccess?: readonly number[];
}

export interface PlayoutStep {
  /** Chunks to write now, in order (each one arrived). */
  write: number[];
  /** Chunks given up, in order (counted; never written). */
  skipped: number[];
  /** True when this step re-tuned to the edge. */
  retuned: boolean;
  /** The broadcast ended and its last chunk was written or skipped. */
  done: boolean;
  /** When to call step again if nothing else happens (a deadline), or undefined. */
  wakeAt: number | undefined;
}

/** Announced chunks looked at after an unannounced one for its estimate. */
const ESTIMATE_SCAN = 16;

export class LivePlayout {
  private readonly prebufferMs: number;
  private readonly graceMs: number;
  private readonly retuneAfterMs: number;
  private readonly fromStart: boolean;
  private readonly endWaitMs: number;
  /** Source timestamps of announced (attested) chunks, by sequence number. */
  private readonly announced = new Map<number, number>();
  private readonly here = new Set<number>();
  /** Chunks known to begin at a random access point (from attestations and windows), not below the window. */
  private readonly access = new Set<number>();
  /** The stream has random access points (one was ever known): never start elsewhere. */
  private hasAccess = false;
  private low = 0;
  private edge = -1;
  /** The window's edge chunk and its source time: where estimates start from. */
  private anchor: { seq: number; ts: number } | undefined;
  /** Average media time of a chunk, for estimates; 0 until a window says. */
  private chunkMs = 0;
  private last: number | undefined;
  /** Next chunk to write; undefined until tuned in. */
  private pos: number | undefined;
  /**
   * The viewer's delay (write time minus source time). At a tune-in it is
   * provisional (the first chunk is due a prebuffer from now); the first
   * write measures it.
   */
  private delay: number | undefined;
  private measured = false;

  constructor(opts: PlayoutOptions = {}) {
    this.prebufferMs = opts.prebufferMs ?? DEFAULT_PREBUFFER_MS;
    this.graceMs = opts.graceMs ?? 300;
    this.retuneAfterMs = opts.retuneAfterMs ?? this.prebufferMs + 5_000;
    this.fromStart = opts.fromStart ?? false;
    this.endWaitMs = opts.endWaitMs ?? 5_000;
  }

  /** The next chunk to write (undefined before tune-in): what the tracker schedules by. */
  get position(): number | undefined {
    return this.pos;
  }

  /** The viewer's delay in ms as measured at its first write since tuning in (undefined before). */
  get delayMs(): number | undefined {
    return this.measured ? this.delay : undefined;
  }

  /**
   * An attested chunk the swarm has: `seq` with source time `timestampMs`,
   * and whether it begins at a random access point, when the attestation says.
   */
  announce(seq: number, timestampMs: number, randomAccess?: boolean): void {
    if (seq < this.low || (this.pos !== undefined && seq < this.pos)) return;
    this.announced.set(seq, timestampMs);
    if (randomAccess === true) this.addAccess(seq);
    else if (randomAccess === false) this.access.delete(seq);
    if (seq > this.edge) this.edge = seq;
  }

  /**
   * The swarm's window: moves the low end and the edge (never back), and
   * anchors the estimates of chunks not announced yet at the edge's time.
   */
  window(w: PlayoutWindow): void {
    if (w.edge >= this.edge) {
      this.edge = w.edge;
      // a replica that has not heard the stream's edge yet sends no source time (0): no anchor from it
      if (w.edgeTimestampMs > 0) this.anchor = { seq: w.edge, ts: w.edgeTimestampMs };
    }
    if (w.chunkMs > 0 || this.chunkMs === 0) this.chunkMs = Math.max(1, w.chunkMs);
    this.setLow(w.low);
    for (const seq of w.randomAccess ?? []) if (seq >= this.low && seq <= w.edge) this.addAccess(seq);
    if (w.ended) this.end(w.edge);
  }

  /** The swarm's window starts at `low`: nothing below it can still arrive. */
  setLow(low: number): void {
    if (low <= this.low) return;
    this.low = low;
    for (const seq of this.announced.keys())
      if (seq < low && (this.pos === undefined || seq < this.pos)) this.forget(seq);
    for (const seq of this.access) if (seq < low) this.access.delete(seq);
  }

  /** The broadcast ended with chunk `last`. */
  end(last: number): void {
    this.last = last;
  }

  /** Chunk `seq` arrived and verified. False when it is no longer wanted (already past). */
  arrived(seq: number): boolean {
    if (this.pos !== undefined && seq < this.pos) return false;
    this.here.add(seq);
    return true;
  }

  /** Whether chunk `seq` is still wanted (not written, skipped or behind the position). */
  wants(seq: number): boolean {
    return !this.here.has(seq) && (this.pos === undefined || seq >= this.pos) && seq >= this.low;
  }

  /** Decides what to write and skip at time `now`. Call after each change and at `wakeAt`. */
  step(now: number): PlayoutStep {
    const out: PlayoutStep = { write: [], skipped: [], retuned: false, done: false, wakeAt: undefined };
    if (this.pos === undefined) {
      if (this.edge < 0) return out;
      this.tuneIn(this.tuneInPoint(), now);
    } else if (this.delay === undefined) {
      // tuned in before any source time was known: the deadlines start once one is
      this.tuneIn(this.pos, now);
    }
    if (this.pos! < this.low) {
      this.retune(out, Math.max(this.low, this.tuneInPoint()), now);
    } else if (!this.fromStart && this.measured && this.behind(now) > this.retuneAfterMs) {
      const to = this.tuneInPoint();
      if (to > this.pos!) this.retune(out, to, now);
    }
    for (;;) {
      const seq = this.pos!;
      if (this.last !== undefined && seq > this.last) {
        out.done = true;
        return out;
      }
      if (this.here.has(seq)) {
        const ts = this.announced.get(seq);
        if (!this.measured && ts !== undefined) {
          this.delay = Math.max(0, now - ts);
          this.measured = true;
        }
        out.write.push(seq);
        this.forget(seq);
        this.pos = seq + 1;
        continue;
      }
      // Once the broadcast ended nothing later is coming: a chunk still missing
      // `endWaitMs` after its deadline is skipped all the same. (Its holders may
      // have just exited; nothing waits behind it, so waiting costs no delay.)
      const laterHere = this.laterHere(seq);
      const due = this.dueAt(seq);
      const skipAt =
        due === undefined ? undefined : laterHere ? due : this.last !== undefined ? due + this.endWaitMs : undefined;
      if (skipAt !== undefined && now >= skipAt) {
        // before the first write, on to the next random access point: an output starts at one
        const to = (this.measured ? undefined : this.nextAccess(seq)) ?? seq + 1;
        for (let s = seq; s < to; s++) {
          out.skipped.push(s);
          this.forget(s);
        }
        this.pos = to;
        continue;
      }
      out.wakeAt = skipAt;
      return out;
    }
  }

  /** How far behind the live edge the position is, in source time. */
  private behind(now: number): number {
    const edgeTs = this.sourceTime(this.edge);
    const posTs = this.sourceTime(this.pos!);
    if (edgeTs !== undefined && posTs !== undefined) return edgeTs - posTs;
    return this.delay !== undefined && posTs !== undefined ? now - posTs - this.delay : 0;
  }

  /**
   * The chunk to start at: the newest random access point at or before the
   * prebuffer point, else the oldest after it; in a stream without any, the
   * prebuffer point. (A stream with points but none known past the position
   * stays where it is: the lowest it may start at.)
   */
  private tuneInPoint(): number {
    const point = this.prebufferPoint();
    if (this.fromStart) return point;
    const floor = Math.max(this.low, this.pos ?? 0);
    let before: number | undefined;
    let after: number | undefined;
    for (const seq of this.access) {
      if (seq < floor || seq > this.edge) continue;
      if (seq <= point) before = Math.max(before ?? seq, seq);
      else after = Math.min(after ?? seq, seq);
    }
    return before ?? after ?? (this.hasAccess ? floor : point);
  }

  private addAccess(seq: number): void {
    this.access.add(seq);
    this.hasAccess = true;
  }

  /** The oldest announced chunk within the prebuffer of the edge's source time (with --from-start, the low end). */
  private prebufferPoint(): number {
    const floor = Math.max(this.low, this.pos ?? 0);
    if (this.fromStart) return floor;
    const edgeTs = this.sourceTime(this.edge);
    let start = this.edge;
    if (edgeTs !== undefined) {
      for (let s = this.edge - 1; s >= floor; s--) {
        const ts = this.sourceTime(s);
        if (ts === undefined || ts < edgeTs - this.prebufferMs) break;
        start = s;
      }
    }
    return Math.max(floor, start);
  }

  private tuneIn(to: number, now: number): void {
    this.pos = to;
    const ts = this.sourceTime(to);
    this.delay = ts === undefined ? undefined : now - ts + this.prebufferMs;
    this.measured = false;
  }

  private retune(out: PlayoutStep, to: number, now: number): void {
    for (let s = this.pos!; s < to; s++) {
      out.skipped.push(s);
      this.forget(s);
    }
    this.tuneIn(to, now);
    out.retuned = true;
  }

  /** When chunk `seq` is due: its source time plus the viewer's delay and the grace. */
  private dueAt(seq: number): number | undefined {
    if (this.delay === undefined) return undefined;
    const ts = this.sourceTime(seq);
    return ts === undefined ? undefined : ts + this.delay + this.graceMs;
  }

  /** Source time of chunk `seq`: its attestation's, else an estimate. */
  private sourceTime(seq: number): number | undefined {
    return this.announced.get(seq) ?? this.estimate(seq);
  }

  /**
   * Source time of an unannounced chunk: from the nearest announced one after
   * it (looked for among the next few when a window anchors the estimates),
   * less the average chunk time for each chunk between; else from the
   * window's edge. Without a window, the next announced chunk's time (a lower bound).
   */
  private estimate(seq: number): number | undefined {
    const to = this.anchor ? Math.min(this.edge, seq + ESTIMATE_SCAN) : this.edge;
    for (let s = seq + 1; s <= to; s++) {
      const ts = this.announced.get(s);
      if (ts !== undefined) return ts - (s - seq) * this.chunkMs;
    }
    return this.anchor && this.anchor.ts - (this.anchor.seq - seq) * this.chunkMs;
  }

  /** The first random access point known after `seq`, or undefined. */
  private nextAccess(seq: number): number | undefined {
    let next: number | undefined;
    for (const s of this.access) if (s > seq && s <= this.edge) next = Math.min(next ?? s, s);
    return next;
  }

  private laterHere(seq: number): boolean {
    for (const s of this.here) if (s > seq) return true;
    return false;
  }

  private forget(seq: number): void {
    this.announced.delete(seq);
    this.here.delete(seq);
    this.access.delete(seq);
  }
}
