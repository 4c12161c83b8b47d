import type { Writable } from "node:stream";
import type { RangeSet } from "@distribustream/pdtp";

export interface ChunkReader {
  /** Chunks held (verified and written to the buffer). */
  readonly held: RangeSet;
  /** Reads chunk `index`, into `scratch` when it is large enough (returning a view of it). */
  readChunk(index: number, scratch?: Buffer): Promise<Buffer>;
}

/** A write the sink has not taken for this long means its reader is not keeping up. */
export const SLOW_WRITE_MS = 100;

/**
 * Copies chunks from the buffer to a sink strictly in order, as soon as they
 * are contiguous with what was already written. Two chunk buffers alternate
 * for the whole download: chunk n+1 is read into one while the sink takes
 * chunk n from the other, and chunk n+2 is read only once the sink has taken
 * chunk n (its write callback). So at most two chunks are in memory, a slow
 * reader (a media player on a FIFO) holds back only the writer, never the
 * download, and a long download makes no garbage here.
 */
export class InOrderWriter {
  private next = 0;
  private running = false;
  /** When the write in progress was handed to the sink. */
  private writeSince: number | undefined;
  private readonly buffers: [Buffer | undefined, Buffer | undefined] = [undefined, undefined];
  private failure: Error | undefined;
  private readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private rejectFinished!: (err: Error) => void;

  constructor(
    private readonly source: ChunkReader,
    private readonly sink: Writable,
    private readonly chunkCount: number,
    private readonly onAdvance: (position: number) => void = () => {},
  ) {
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    this.finished.catch(() => {});
    sink.on("error", (err) => this.fail(err));
    if (chunkCount === 0) this.resolveFinished();
  }

  /** First chunk not yet taken by the sink. */
  get position(): number {
    return this.next;
  }

  /**
   * True while the sink's reader is not keeping up: a write has been pending
   * for more than SLOW_WRITE_MS. (write() returning false is no signal here:
   * a chunk is usually larger than the sink's high-water mark, so it returns
   * false for every chunk, however fast the reader.)
   */
  get waiting(): boolean {
    return this.writeSince !== undefined && Date.now() - this.writeSince > SLOW_WRITE_MS;
  }

  /** Resolves when every chunk has been handed to the sink; rejects on a sink error. */
  done(): Promise<void> {
    return this.finished;
  }

  /** Call whenever chunks were added to `held`. */
  kick(): void {
    if (this.running || this.failure) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    let writing: Promise<void> | undefined;
    try {
      let read = this.next;
      while (read < this.chunkCount && this.source.held.has(read) && !this.failure) {
        const slot = read % 2;
        const scratch = this.buffers[slot];
        // The sink may still be taking chunk read-1, from the other buffer.
        const data = await this.source.readChunk(read, scratch);
        if (!scratch || data.length > scratch.length) this.buffers[slot] = data;
        if (writing) await this.taken(writing);
        if (this.failure) return;
        writing = this.write(data);
        read++;
      }
      if (writing) await this.taken(writing);
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.running = false;
    }
    if (this.failure) return;
    if (this.next >= this.chunkCount) this.resolveFinished();
    else if (this.source.held.has(this.next)) this.kick();
  }

  /** Waits for the write in progress; the next chunk has then been taken. */
  private async taken(writing: Promise<void>): Promise<void> {
    await writing;
    this.next++;
    this.onAdvance(this.next);
  }

  /** Hands `data` to the sink; resolves once it took it (so its buffer may be reused). */
  private write(data: Buffer): Promise<void> {
    this.writeSince = Date.now();
    const p = new Promise<void>((resolve, reject) => {
      const onClose = () => reject(Object.assign(new Error("output closed"), { code: "EPIPE" }));
      this.sink.once("close", onClose);
      this.sink.write(data, (err) => {
        this.sink.off("close", onClose);
        this.writeSince = undefined;
        if (err) reject(err);
        else resolve();
      });
    });
    // Awaited later (after the next read); a failure meanwhile must not be an unhandled rejection.
    p.catch(() => {});
    return p;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectFinished(err);
  }
}
