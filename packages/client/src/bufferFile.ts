import { constants } from "node:fs";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { FileRangeReadable } from "@distribustream/data-plane";
import { chunkSpan } from "@distribustream/pdtp";
import { ioError } from "./errors.js";

export interface Layout {
  size: number;
  chunkSize: number;
  chunkCount: number;
}

/**
 * Always a new file: never follows a symbolic link or writes into a file
 * hard-linked elsewhere that someone planted at the path.
 */
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOFOLLOW;

/**
 * The disk-backed buffer of one download: a file the size of the stream in
 * which each verified chunk is written at its offset. It is read back to
 * serve other peers and, for pipe outputs, to write the output in order, so
 * memory use does not grow with the file. Reads and writes go through one
 * FileHandle, which keeps working when the file is renamed.
 */
export class BufferFile {
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    private currentPath: string,
    readonly layout: Layout,
    private readonly linked: boolean,
  ) {}

  /**
   * Creates the buffer at `path`, sized to the stream. Whatever was at `path`
   * (a previous partial file, or a symbolic link or hard link planted in a
   * shared folder) is unlinked first, never written through. With
   * `anonymous`, the file is unlinked at once: it lives only as long as the
   * handle, even if the process is killed.
   */
  static async create(path: string, layout: Layout, opts: { anonymous: boolean }): Promise<BufferFile> {
    let handle: FileHandle;
    try {
      if (!opts.anonymous) await unlinkIfPresent(path);
      handle = await open(path, CREATE_FLAGS, 0o644);
    } catch (err) {
      throw ioError(err, "creating", path);
    }
    try {
      await handle.truncate(layout.size);
      if (opts.anonymous) await unlink(path);
    } catch (err) {
      await handle.close().catch(() => {});
      await unlink(path).catch(() => {});
      throw ioError(err, "creating", path);
    }
    return new BufferFile(handle, path, layout, !opts.anonymous);
  }

  /**
   * Opens the buffer an interrupted download kept at `path` (dsclient -c),
   * to go on with it: undefined when there is none, a reason when it cannot
   * be resumed. As `create`, it never writes through a link: a symbolic link
   * is refused (O_NOFOLLOW), and so is a file with other hard links. A file
   * of another size than the stream's is not this stream's buffer.
   */
  static async reopen(path: string, layout: Layout): Promise<BufferFile | string | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return undefined;
      if (code === "ELOOP") return `${path} is a symbolic link`;
      throw ioError(err, "opening", path);
    }
    try {
      const st = await handle.stat();
      const problem = !st.isFile()
        ? `${path} is not a regular file`
        : st.nlink !== 1
          ? `${path} has other hard links`
          : st.size !== layout.size
            ? `${path} has ${st.size} bytes, the stream ${layout.size}`
            : undefined;
      if (problem === undefined) return new BufferFile(handle, path, layout, true);
      await handle.close();
      return problem;
    } catch (err) {
      await handle.close().catch(() => {});
      throw ioError(err, "opening", path);
    }
  }

  get path(): string {
    return this.currentPath;
  }

  /** Writes chunk `index` at its offset; rejects with a DownloadError (exit 5) on I/O errors. */
  async writeChunk(index: number, data: Buffer, displayPath: string = this.currentPath): Promise<void> {
    const { start, end } = chunkSpan(index, this.layout.size, this.layout.chunkSize);
    if (data.length !== end - start) {
      throw new Error(`chunk ${index} has ${data.length} bytes, expected ${end - start}`);
    }
    try {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await this.handle.write(data, off, data.length - off, start + off);
        off += bytesWritten;
      }
    } catch (err) {
      throw ioError(err, "writing", displayPath);
    }
  }

  /** Reads chunk `index` back, into `scratch` when it is large enough. */
  async readChunk(index: number, scratch?: Buffer): Promise<Buffer> {
    const { start, end } = chunkSpan(index, this.layout.size, this.layout.chunkSize);
    const buf =
      scratch && scratch.length >= end - start ? scratch.subarray(0, end - start) : Buffer.allocUnsafe(end - start);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.handle.read(buf, off, buf.length - off, start + off);
      if (bytesRead === 0) throw new Error(`buffer file ${this.currentPath} ended at byte ${start + off}`);
      off += bytesRead;
    }
    return buf;
  }

  /** Bytes [start, end) as a stream that reads on demand (backpressured). */
  createReadStream(start: number, end: number): Readable {
    const file = { handle: this.handle, close: false };
    return new FileRangeReadable(() => Promise.resolve(file), start, end, `buffer file ${this.currentPath}`);
  }

  /** Renames the file; the handle, and reads in progress, keep working. */
  async rename(to: string): Promise<void> {
    try {
      await rename(this.currentPath, to);
    } catch (err) {
      throw ioError(err, "renaming to", to);
    }
    this.currentPath = to;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  /** Closes and deletes the file (a partial download). */
  async remove(): Promise<void> {
    await this.close().catch(() => {});
    if (this.linked) await unlink(this.currentPath).catch(() => {});
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
