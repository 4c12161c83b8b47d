import { Readable } from "node:stream";
import type { ChunkRange } from "@distribustream/pdtp";

interface Held {
  seq: number;
  /** Offset of the chunk's first byte in this window's numbering of the broadcast's bytes. */
  offset: number;
  data: Buffer;
  timestampMs: number;
  /** The chunk's frame head on the data plane (length prefix and signed attestation), once attested. */
  head?: Buffer;
}

/**
 * The last `windowChunks` chunks of a live stream, in memory, as a peer (the
 * seeder, or a viewer serving on) holds them for the data plane: a range of sequence numbers maps onto bytes
 * numbered from the first chunk this window ever held, so a read is a slice
 * of the held buffers (no copy). Memory is bounded by the window.
 */
/** Requests waiting for attestations at once, at most: beyond, a request is answered at once (416). */
const MAX_WAITERS = 256;

interface Waiter {
  range: ChunkRange;
  resolve: (frames: Buffer[] | undefined) => void;
  timer: NodeJS.Timeout;
}

export class LiveWindow {
  private readonly held: Held[] = [];
  private nextOffset = 0;
  private readonly waiters = new Set<Waiter>();

  constructor(readonly windowChunks: number) {
    if (!(Number.isInteger(windowChunks) && windowChunks >= 1)) throw new Error(`window of ${windowChunks} chunks`);
  }

  /** Lowest sequence number held, or undefined when empty. */
  get low(): number | undefined {
    return this.held[0]?.seq;
  }

  /** Highest sequence number held (the live edge here), or undefined when empty. */
  get edge(): number | undefined {
    return this.held[this.held.length - 1]?.seq;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.held.length === 0 ? 0 : this.nextOffset - this.held[0]!.offset;
  }

  /**
   * Adds the next chunk: `seq` must follow the edge (any number when empty).
   * Drops the oldest chunk when the window is full.
   */
  push(seq: number, data: Buffer, timestampMs: number): void {
    const edge = this.edge;
    if (edge !== undefined && seq !== edge + 1) throw new Error(`chunk ${seq} does not follow ${edge}`);
    this.held.push({ seq, offset: this.nextOffset, data, timestampMs });
    this.nextOffset += data.length;
    if (this.held.length > this.windowChunks) this.held.shift();
  }

  /** Chunk `seq`, or undefined when not held. */
  chunk(seq: number): { data: Buffer; timestampMs: number } | undefined {
    const h = this.find(seq);
    return h && { data: h.data, timestampMs: h.timestampMs };
  }

  /** Attaches chunk `seq`'s attestation frame head; false when the chunk is no longer held. */
  attest(seq: number, head: Buffer): boolean {
    const h = this.find(seq);
    if (!h) return false;
    h.head = head;
    for (const w of this.waiters) {
      if (seq < w.range.first || seq > w.range.last) continue;
      const frames = this.attested(w.range);
      if (frames) this.settle(w, frames);
    }
    return true;
  }

  /**
   * The frames of `range` as soon as every chunk of it is attested (at once
   * when it is), or undefined after `timeoutMs` or when a chunk of it is not
   * held.
   */
  whenAttested(range: ChunkRange, timeoutMs: number): Promise<Buffer[] | undefined> {
    if (!this.holds(range)) return Promise.resolve(undefined);
    const now = this.attested(range);
    if (now || this.waiters.size >= MAX_WAITERS) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w: Waiter = { range, resolve, timer: setTimeout(() => this.settle(w, undefined), timeoutMs) };
      this.waiters.add(w);
    });
  }

  private settle(w: Waiter, frames: Buffer[] | undefined): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
    w.resolve(frames);
  }

  /**
   * The frames of `range` for a /live/ request, head and bytes of each chunk
   * in order (slices, no copy), or undefined when a chunk of it is not held
   * with its attestation.
   */
  attested(range: ChunkRange): Buffer[] | undefined {
    if (!this.holds(range)) return undefined;
    const out: Buffer[] = [];
    for (let seq = range.first; seq <= range.last; seq++) {
      const h = this.find(seq)!;
      if (!h.head) return undefined;
      out.push(h.head, h.data);
    }
    return out;
  }

  holds(range: ChunkRange): boolean {
    const low = this.low;
    const edge = this.edge;
    return (
      low !== undefined && edge !== undefined && range.first >= low && range.last <= edge && range.first <= range.last
    );
  }

  /** Bytes [start, end) of `range` for `read`, or undefined when not every chunk is held. */
  span(range: ChunkRange): { start: number; end: number } | undefined {
    if (!this.holds(range)) return undefined;
    const first = this.find(range.first)!;
    const last = this.find(range.last)!;
    return { start: first.offset, end: last.offset + last.data.length };
  }

  /**
   * Bytes [start, end) as a stream of slices of the held chunks. A chunk
   * dropped from the window meanwhile is still sent (the slices hold it).
   */
  read(start: number, end: number): Readable {
    const base = this.held[0]?.offset ?? 0;
    if (start < base || end > this.nextOffset || start > end) return failing(start, end);
    const parts: Buffer[] = [];
    let i = this.indexAt(start);
    for (let at = start; at < end; i++) {
      const h = this.held[i]!;
      const from = at - h.offset;
      const to = Math.min(h.data.length, end - h.offset);
      parts.push(h.data.subarray(from, to));
      at += to - from;
    }
    return Readable.from(parts, { objectMode: false });
  }

  private find(seq: number): Held | undefined {
    const low = this.low;
    return low === undefined ? undefined : this.held[seq - low];
  }

  /** Index of the held chunk holding byte `offset` (binary search: offsets grow). */
  private indexAt(offset: number): number {
    let lo = 0;
    let hi = this.held.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.held[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** A read of bytes no longer (or not yet) held: fails before its first byte with 416, as the data plane expects. */
function failing(start: number, end: number): Readable {
  const err = Object.assign(new Error(`bytes ${start}-${end} are no longer held`), { refusalStatus: 416 });
  return new Readable({
    read() {
      this.destroy(err);
    },
  });
}
