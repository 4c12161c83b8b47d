import type { ChunkRange, PeerMessage, TransferReport } from "@distribustream/pdtp";
import { RangeSet } from "@distribustream/pdtp";

/** Reports per message; the tracker refuses more than 1024. */
const MAX_REPORTS = 1000;

/**
 * Coalesces what a peer tells the tracker during a download: transfer
 * reports, newly held ranges and the output position. Reports are sent on
 * the next turn of the event loop (so transfers ending together share one
 * message, and the tracker can reuse the slot at once); Have and Position at
 * most every `intervalMs`. Never one message per chunk.
 */
export class ControlBatcher {
  private reports: TransferReport[] = [];
  private have = new RangeSet();
  private position: number | undefined;
  private sentPosition = -1;
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastFlush = 0;

  constructor(
    private readonly send: (msg: PeerMessage) => void,
    private readonly streamId: () => string | undefined,
    private readonly intervalMs = 100,
  ) {}

  report(r: TransferReport): void {
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

  /** Position already known to the tracker (sent in Join). */
  positionKnown(next: number): void {
    this.sentPosition = next;
    this.position = undefined;
  }

  /** Forgets everything pending (the session it was meant for is gone). */
  reset(): void {
    this.reports = [];
    this.have = new RangeSet();
    this.position = undefined;
    this.sentPosition = -1;
    this.cancelTimers();
  }

  flush(): void {
    this.cancelTimers();
    this.lastFlush = Date.now();
    const streamId = this.streamId();
    for (let i = 0; i < this.reports.length; i += MAX_REPORTS) {
      this.send({ body: { $case: "reports", value: { reports: this.reports.slice(i, i + MAX_REPORTS) } } });
    }
    this.reports = [];
    if (!streamId) return;
    if (!this.have.isEmpty) {
      this.send({ body: { $case: "have", value: { streamId, ranges: [...this.have.ranges()] } } });
      this.have = new RangeSet();
    }
    if (this.position !== undefined && this.position !== this.sentPosition) {
      this.send({ body: { $case: "position", value: { streamId, nextChunk: this.position } } });
      this.sentPosition = this.position;
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
