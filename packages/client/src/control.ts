import type { ChunkRange, PeerMessage, Position } from "@distribustream/pdtp";
import { RangeSet, TransferReport } from "@distribustream/pdtp";

/** Reports per message; the tracker refuses more than 1024. */
const MAX_REPORTS = 1000;
/**
 * Encoded size a Reports or Have message stays within: half the tracker's
 * 64 KiB inbound limit, so framing and future fields never push it over.
 */
export const MAX_MESSAGE_BYTES = 32 * 1024;
/**
 * Ranges per Have message and per report's `verified`: a range encodes in at
 * most 14 bytes (two 32-bit varints with tags, plus its own tag and length),
 * so 2048 of them stay under MAX_MESSAGE_BYTES (the tracker accepts 4096).
 */
export const MAX_RANGES = 2048;
/** Bytes a message adds around its repeated field (oneof tag and length, stream id). */
const ENVELOPE_BYTES = 128;
/**
 * Delays per Position: a uint32 varint takes at most 5 bytes, so 4096 stay
 * well under MAX_MESSAGE_BYTES; more (a viewer writing a burst) are sampled
 * down to this many, spread evenly.
 */
export const MAX_DELAYS = 4096;
const MAX_UINT32 = 0xffffffff;

/**
 * Coalesces what a peer tells the tracker during a download: transfer
 * reports, newly held ranges and the output position. Reports are sent on
 * the next turn of the event loop (so transfers ending together share one
 * message, and the tracker can reuse the slot at once); Have and Position at
 * most every `intervalMs`. Never one message per chunk. A live viewer's
 * playback since its last Position (the delay of each chunk written, the
 * chunks skipped) rides on the next Position.
 */
export class ControlBatcher {
  private reports: TransferReport[] = [];
  private have = new RangeSet();
  private position: number | undefined;
  private sentPosition = -1;
  private delays: number[] = [];
  private skipped = 0;
  private rejected: Record<string, number> = {};
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastFlush = 0;

  constructor(
    private readonly send: (msg: PeerMessage) => void,
    private readonly streamId: () => string | undefined,
    private readonly intervalMs = 100,
  ) {}

  report(r: TransferReport): void {
    if (r.verified.length > MAX_RANGES) {
      // A fragmented set: the rest is credited as holdings, in Have messages.
      this.have.addAll(r.verified.slice(MAX_RANGES));
      r = { ...r, verified: r.verified.slice(0, MAX_RANGES) };
    }
    this.reports.push(r);
    this.immediate ??= setImmediate(() => {
      this.immediate = undefined;
      this.flush();
    });
  }

  /** Chunks held that no report will mention (transfers the tracker cancelled). */
  held(ranges: Iterable<ChunkRange>): void {
    this.have.addAll(ranges);
    this.soon();
  }

  /** The first chunk not yet written to the output. */
  setPosition(next: number): void {
    if (next === this.sentPosition) return;
    this.position = next;
    this.soon();
  }

  /** A live viewer's playback: delays (source to write, ms) of chunks written, and chunks skipped. */
  played(delaysMs: readonly number[], skipped: number): void {
    if (delaysMs.length === 0 && skipped === 0) return;
    for (const d of delaysMs) this.delays.push(Math.min(MAX_UINT32, Math.max(0, Math.round(d))));
    this.skipped = Math.min(MAX_UINT32, this.skipped + skipped);
    this.soon();
  }

  /** A live chunk refused (by its verifier's reason), counted on the next Position for the operators. */
  rejectedChunk(reason: string): void {
    this.rejected[reason] = Math.min(MAX_UINT32, (this.rejected[reason] ?? 0) + 1);
    this.soon();
  }

  /** Position already known to the tracker (sent in Join). */
  positionKnown(next: number): void {
    this.sentPosition = next;
    this.position = undefined;
  }

  /**
   * The position the Join said was a placeholder (a live viewer not tuned in
   * yet): the first one set is sent whatever it is, even the same number, as
   * the tracker waits for it before planning the viewer.
   */
  positionUnknown(): void {
    this.sentPosition = -1;
  }

  /** Forgets everything pending (the session it was meant for is gone). */
  reset(): void {
    this.reports = [];
    this.have = new RangeSet();
    this.position = undefined;
    this.sentPosition = -1;
    this.delays = [];
    this.skipped = 0;
    this.rejected = {};
    this.cancelTimers();
  }

  flush(): void {
    this.cancelTimers();
    this.lastFlush = Date.now();
    const streamId = this.streamId();
    let batch: TransferReport[] = [];
    let bytes = ENVELOPE_BYTES;
    for (const r of this.reports) {
      // the report, its field tag and a length of up to 3 bytes
      const size = TransferReport.encode(r).finish().length + 4;
      if (batch.length > 0 && (batch.length === MAX_REPORTS || bytes + size > MAX_MESSAGE_BYTES)) {
        this.send({ body: { $case: "reports", value: { reports: batch } } });
        batch = [];
        bytes = ENVELOPE_BYTES;
      }
      batch.push(r);
      bytes += size;
    }
    if (batch.length > 0) this.send({ body: { $case: "reports", value: { reports: batch } } });
    this.reports = [];
    if (!streamId) return;
    const have = this.have.ranges();
    for (let i = 0; i < have.length; i += MAX_RANGES) {
      this.send({ body: { $case: "have", value: { streamId, ranges: have.slice(i, i + MAX_RANGES) } } });
    }
    this.have = new RangeSet();
    const live = this.delays.length > 0 || this.skipped > 0 || Object.keys(this.rejected).length > 0;
    const next = this.position ?? this.sentPosition;
    // Playback figures wait for a position to go with (a viewer not yet tuned in has none).
    if (next >= 0 && (next !== this.sentPosition || live)) {
      const value: Position = { streamId, nextChunk: next };
      if (live) {
        value.live = { delaysMs: sample(this.delays, MAX_DELAYS), skipped: this.skipped, rejected: this.rejected };
      }
      this.send({ body: { $case: "position", value } });
      this.sentPosition = next;
      this.delays = [];
      this.skipped = 0;
      this.rejected = {};
    }
    this.position = undefined;
  }

  close(): void {
    this.cancelTimers();
  }

  private soon(): void {
    if (this.timer || this.immediate) return;
    const wait = Math.max(0, this.lastFlush + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  private cancelTimers(): void {
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
    this.immediate = undefined;
    this.timer = undefined;
  }
}

/** At most `max` of `xs`, evenly spread (all of them when they fit). */
function sample(xs: number[], max: number): number[] {
  if (xs.length <= max) return xs;
  return Array.from({ length: max }, (_, i) => xs[Math.floor((i * xs.length) / max)]!);
}
