import { constants } from "node:fs";
import { open, realpath, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ChunkSource, StreamLayout } from "@distribustream/data-plane";
import { rangeWithin, type ChunkRange } from "@distribustream/pdtp";
import type { MediaFile } from "./library.js";

const READ_SIZE = 64 * 1024;

/** Published files on disk by stream id, and the folder they must stay in (a MediaLibrary, the live recordings). */
export interface FileCatalog {
  get(streamId: string): MediaFile | undefined;
  /** True when `real` (a resolved path) lies inside the folder the files are served from. */
  contains(real: string): boolean;
}

/** The seeder's data-plane source: every chunk of every published file of a catalog (the media folder's). */
export class MediaSource implements ChunkSource {
  constructor(private readonly library: FileCatalog) {}

  layout(streamId: string): StreamLayout | undefined {
    const f = this.library.get(streamId);
    if (!f || f.chunkSize === 0) return undefined;
    return { size: f.size, chunkSize: f.chunkSize, chunkCount: f.chunkCount, name: f.name };
  }

  holds(streamId: string, range: ChunkRange): boolean {
    const f = this.library.get(streamId);
    return f !== undefined && f.chunkSize > 0 && rangeWithin(range, f.chunkCount);
  }

  read(streamId: string, start: number, end: number): Readable {
    const f = this.library.get(streamId);
    if (!f) return Readable.from([]).destroy(new Error(`stream ${streamId} is no longer published`));
    return new FileRangeReadable(this.library, f, start, end);
  }
}

/**
 * Bytes [start, end) of a published file, read from disk as the consumer
 * asks for them. Opening re-checks that the path still resolves inside the
 * media folder and that the file is the published version; otherwise the
 * stream errors and nothing is sent.
 */
class FileRangeReadable extends Readable {
  private fh: FileHandle | undefined;
  private pos: number;

  constructor(
    private readonly library: FileCatalog,
    private readonly file: MediaFile,
    start: number,
    private readonly end: number,
  ) {
    super({ highWaterMark: READ_SIZE });
    this.pos = start;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    void (async () => {
      const real = await realpath(this.file.path);
      if (!this.library.contains(real)) throw new Error(`${this.file.name} now leads outside its folder`);
      this.fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
      const st = await this.fh.stat();
      if (!st.isFile() || st.size !== this.file.size || Math.floor(st.mtimeMs) !== this.file.version) {
        throw new Error(`${this.file.name} changed since it was published`);
      }
    })().then(
      () => callback(),
      (err: Error) => callback(err),
    );
  }

  override _read(): void {
    const fh = this.fh;
    const want = Math.min(READ_SIZE, this.end - this.pos);
    if (!fh || want <= 0) {
      this.push(null);
      return;
    }
    fh.read(Buffer.allocUnsafe(want), 0, want, this.pos).then(
      ({ bytesRead, buffer }) => {
        if (bytesRead === 0) return this.destroy(new Error(`${this.file.name} is shorter than published`));
        this.pos += bytesRead;
        this.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
        if (this.pos >= this.end) this.push(null);
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return callback(err);
    fh.close().then(
      () => callback(err),
      () => callback(err),
    );
  }
}
