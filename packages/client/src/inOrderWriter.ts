import type { Writable } from "node:stream";
import type { RangeSet } from "@distribustream/pdtp";

export interface ChunkReader {
  /** Chunks held (verified and written to the buffer). */
  readonly held: RangeSet;
  /** Reads chunk `index`, into `scratch` when it is large enough (returning a view of it). */
  readChunk(index: number, scratch?: Buffer): Promise<Buffer>;
}

/**
 * Copies chunks from the buffer to a sink strictly in order, as soon as they
 * are contiguous with what was already written. One chunk is in memory at a
 * time, in one buffer reused for every chunk: the next chunk is read only
 * once the sink has taken the previous one (its write callback), so a slow
 * reader (a media player on a FIFO) holds back only the writer, never the
 * download, and a long download makes no garbage here.
 */
export class InOrderWriter {
  private next = 0;
  private running = false;
  private waitingForDrain = false;
  private scratch: Buffer | undefined;
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

  /** First chunk not yet handed to the sink. */
  get position(): number {
    return this.next;
  }

  /** True while the sink is full and the writer waits for it to drain. */
  get waiting(): boolean {
    return this.waitingForDrain;
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
    try {
      while (this.next < this.chunkCount && this.source.held.has(this.next) && !this.failure) {
        const data = await this.source.readChunk(this.next, this.scratch);
        if (!this.scratch || data.length > this.scratch.length) this.scratch = data;
        this.waitingForDrain = true;
        try {
          await this.written(data);
        } finally {
          this.waitingForDrain = false;
        }
        this.next++;
        this.onAdvance(this.next);
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.running = false;
    }
    if (this.failure) return;
    if (this.next >= this.chunkCount) this.resolveFinished();
    else if (this.source.held.has(this.next)) this.kick();
  }

  /** Resolves once the sink has taken `data` (so its buffer may be reused). */
  private written(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const onClose = () => reject(Object.assign(new Error("output closed"), { code: "EPIPE" }));
      this.sink.once("close", onClose);
      this.sink.write(data, (err) => {
        this.sink.off("close", onClose);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectFinished(err);
  }
}
