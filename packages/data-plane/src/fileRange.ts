import type { FileHandle } from "node:fs/promises";
import { Readable, type Writable } from "node:stream";

/**
 * Size of the pieces a range is read and sent in. A 256 KiB piece is one
 * read and, mostly, one socket write: against 64 KiB it took a seeder
 * serving 1 GiB from 1.4 to 1.1 CPU-s, for 768 KiB more memory per upload
 * in flight (the stream's high-water mark plus the piece on the socket).
 */
export const READ_PIECE_BYTES = 256 * 1024;

/** A file to read a range from: `close` when the range is done with it (false for a handle the caller keeps). */
export interface RangeFile {
  handle: FileHandle;
  close: boolean;
}

/** What `FileRangeReadable.sendTo` calls on its way. */
export interface RangeSendHooks {
  /** The first piece is read: the answer's head may go out (a read refused before any byte leaves it unsent). */
  head(): void;
  /** A piece of `bytes` is about to be written; the write waits for what this returns (an upload rate). */
  piece?(bytes: number): Promise<void> | void;
  /**
   * Aborted when the fetcher is gone even though `out` may never say so: a
   * pipelined request's response, queued behind another, emits no close when
   * the connection closes.
   */
  signal?: AbortSignal;
}

/** The destination went away before the range was sent (AbortError, as pipeline names it). */
class DestinationGone extends Error {
  override name = "AbortError";
}

/** A write that failed: the connection broke or was destroyed under it, so the fetcher is gone. */
const writeFailed = (pos: number, cause: unknown) =>
  new DestinationGone(`the connection failed at byte ${pos}`, { cause });

/**
 * Bytes [start, end) of a file, read as the consumer asks for them
 * (backpressured), one piece at a time; or sent with `sendTo`, which needs
 * no stream machinery and makes no garbage per piece. Use one or the other.
 * `open` runs before the first read: it may check the file and throw, and
 * then the stream errors (sendTo rejects) before any byte. A file shorter
 * than the range is an error, not a short stream.
 */
export class FileRangeReadable extends Readable {
  private opening: Promise<RangeFile> | undefined;
  private pos: number;

  constructor(
    private readonly open: () => Promise<RangeFile>,
    start: number,
    private readonly end: number,
    /** Names the file in errors. */
    private readonly name: string,
  ) {
    super({ highWaterMark: READ_PIECE_BYTES });
    this.pos = start;
  }

  override _read(): void {
    this.readPiece().catch((err: Error) => this.destroy(err));
  }

  /** Pushes the next piece (a new buffer: the stream's consumer keeps it), or the end. */
  private async readPiece(): Promise<void> {
    const file = await this.openOnce();
    const want = Math.min(READ_PIECE_BYTES, this.end - this.pos);
    if (want <= 0 || this.destroyed) {
      this.push(null);
      return;
    }
    const { bytesRead, buffer } = await file.handle.read(Buffer.allocUnsafe(want), 0, want, this.pos);
    if (bytesRead === 0) throw this.endedEarly();
    this.pos += bytesRead;
    this.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
    if (this.pos >= this.end) this.push(null);
  }

  /**
   * Writes the range to `out` through two buffers reused for the whole range:
   * one is read into while the other is on its way to the socket, and a
   * buffer is read into again only once its write has completed (which is
   * also the backpressure). A stream's pieces are each a new buffer, garbage
   * once written; at 4,096 pieces a GiB that garbage drove the seeder's
   * collector. Resolves once the last write completed (`out` is not ended);
   * rejects when the open or a read fails, or when `out` is closed first.
   */
  async sendTo(out: Writable, hooks: RangeSendHooks): Promise<void> {
    let closed = false;
    let wake: (() => void) | undefined;
    const onClose = () => {
      closed = true;
      wake?.();
    };
    out.once("close", onClose);
    hooks.signal?.addEventListener("abort", onClose, { once: true });
    if (hooks.signal?.aborted) closed = true;
    // waits for `p`, or less once `out` is closed (then `closed` is true)
    const settled = (p: Promise<unknown>) =>
      new Promise<void>((resolve, reject) => {
        wake = resolve;
        if (closed) resolve();
        p.then(() => resolve(), reject);
      });
    const stopIfGone = () => {
      if (closed || out.destroyed) throw new DestinationGone(`the fetcher went away at byte ${this.pos}`);
    };
    try {
      const file = await this.openOnce();
      const size = Math.min(READ_PIECE_BYTES, Math.max(1, this.end - this.pos));
      const slot = () => ({ buffer: Buffer.allocUnsafe(size), written: Promise.resolve() });
      let mine = slot();
      let other = slot();
      if (this.pos >= this.end) hooks.head();
      for (let first = true; this.pos < this.end; first = false, [mine, other] = [other, mine]) {
        await settled(mine.written); // this buffer's last write is done
        stopIfGone();
        const want = Math.min(size, this.end - this.pos);
        const { bytesRead } = await file.handle.read(mine.buffer, 0, want, this.pos);
        if (bytesRead === 0) throw this.endedEarly();
        if (first) hooks.head();
        const pending = hooks.piece?.(bytesRead);
        if (pending) await settled(pending);
        stopIfGone();
        this.pos += bytesRead;
        const piece = bytesRead === size ? mine.buffer : mine.buffer.subarray(0, bytesRead);
        const at = this.pos;
        mine.written = new Promise((resolve, reject) =>
          out.write(piece, (err) => (err ? reject(writeFailed(at, err)) : resolve())),
        );
        mine.written.catch(() => {}); // a failed write is seen when its buffer comes round again, or at the end
      }
      await settled(Promise.all([mine.written, other.written]));
      if (closed) throw new DestinationGone("the fetcher went away before the last write completed");
    } finally {
      out.off("close", onClose);
      hooks.signal?.removeEventListener("abort", onClose);
      this.destroy();
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const opening = this.opening;
    this.opening = undefined;
    if (!opening) return callback(err);
    opening
      .then(
        (file) => (file.close ? file.handle.close() : undefined),
        () => {},
      )
      .then(
        () => callback(err),
        () => callback(err),
      );
  }

  private openOnce(): Promise<RangeFile> {
    if (this.destroyed) return Promise.reject(new DestinationGone(`${this.name}: the read was stopped`));
    return (this.opening ??= this.open());
  }

  private endedEarly(): Error {
    return new Error(`${this.name} ended at byte ${this.pos}`);
  }
}
