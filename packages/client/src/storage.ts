import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { RangeSet } from "@distribustream/pdtp";
import { BufferFile, type Layout } from "./bufferFile.js";
import { DownloadError, ioError, outputError } from "./errors.js";
import { InOrderWriter } from "./inOrderWriter.js";
import { endOutput, PART_SUFFIX, type OutputTarget } from "./outputTarget.js";

/**
 * Where a download keeps its verified chunks and how they reach the output.
 * Chunks are written to disk as they arrive (any order); `position()` is the
 * first chunk not yet written to the output.
 */
export interface Storage {
  readonly held: RangeSet;
  /** Name of the output for messages ("standard output" or a path). */
  readonly outputName: string;
  position(): number;
  /** True while the output's reader is not keeping up (writes wait for it). */
  outputBlocked(): boolean;
  /** Writes a verified chunk and marks it held. Rejects with a DownloadError (exit 5) on I/O errors. */
  put(index: number, data: Buffer): Promise<void>;
  /** Bytes [start, end) of held chunks, for serving peers. */
  read(start: number, end: number): Readable;
  /** Resolves once every chunk is held and the output is complete and flushed. */
  finish(): Promise<void>;
  /** Settles only with the first failure of the output (e.g. the reader went away). */
  readonly failed: Promise<never>;
  /** Releases files; a finished output stays. */
  close(): Promise<void>;
  /** Releases files and deletes a partial output. */
  discard(): Promise<void>;
}

export interface StorageOptions {
  tempDir: string;
  onPosition?: (position: number) => void;
}

export async function openStorage(target: OutputTarget, layout: Layout, opts: StorageOptions): Promise<Storage> {
  if (target.kind === "file") return FileStorage.open(target.path, layout);
  return StreamStorage.open(target, layout, opts);
}

/**
 * A regular file: chunks go to `<path>.dspart` at their offsets, renamed to
 * `<path>` when complete. `close()` keeps a partial `.dspart` (for -c, see
 * resume.ts); `discard()` removes it.
 */
export class FileStorage implements Storage {
  readonly held = new RangeSet();
  readonly failed = new Promise<never>(() => {});
  private done = false;
  /** Chunks written since the file was opened: none means its bytes are as they were found. */
  written = 0;

  private constructor(
    private readonly file: BufferFile,
    private readonly finalPath: string,
  ) {}

  static async open(path: string, layout: Layout): Promise<FileStorage> {
    return new FileStorage(await BufferFile.create(path + PART_SUFFIX, layout, { anonymous: false }), path);
  }

  /**
   * The `<path>.dspart` an interrupted download kept, holding nothing until
   * its chunks are checked and `adopt`ed; undefined when there is none, a
   * reason when it cannot be resumed (see BufferFile.reopen).
   */
  static async reopen(path: string, layout: Layout): Promise<FileStorage | string | undefined> {
    const file = await BufferFile.reopen(path + PART_SUFFIX, layout);
    return file instanceof BufferFile ? new FileStorage(file, path) : file;
  }

  get outputName(): string {
    return this.finalPath;
  }

  /** The partial file, `<path>.dspart` until complete. */
  get partPath(): string {
    return this.file.path;
  }

  /** Reads chunk `index` back, into `scratch` when it is large enough (to check a kept chunk). */
  readChunk(index: number, scratch?: Buffer): Promise<Buffer> {
    return this.file.readChunk(index, scratch).catch((err: unknown) => {
      throw ioError(err, "reading", this.file.path);
    });
  }

  /** Counts chunk `index`, already in the file and checked against the manifest, as held. */
  adopt(index: number): void {
    this.held.add({ first: index, last: index });
  }

  position(): number {
    return this.held.firstMissing(0);
  }

  outputBlocked(): boolean {
    return false;
  }

  async put(index: number, data: Buffer): Promise<void> {
    this.written++;
    await this.file.writeChunk(index, data, this.finalPath);
    this.held.add({ first: index, last: index });
  }

  read(start: number, end: number): Readable {
    return this.file.createReadStream(start, end);
  }

  async finish(): Promise<void> {
    if (this.done) return;
    if (this.held.count !== this.file.layout.chunkCount) throw new Error("finish() before every chunk is held");
    await this.file.rename(this.finalPath);
    this.done = true;
  }

  close(): Promise<void> {
    return this.file.close();
  }

  async discard(): Promise<void> {
    if (this.done) return this.file.close();
    return this.file.remove();
  }
}

/**
 * Standard output, a FIFO, a device or a socket: chunks go to an anonymous
 * temporary buffer file and are copied to the output in order.
 */
class StreamStorage implements Storage {
  readonly held = new RangeSet();
  readonly failed: Promise<never>;
  private readonly writer: InOrderWriter;

  private constructor(
    private readonly file: BufferFile,
    private readonly sink: Writable,
    private readonly target: Exclude<OutputTarget, { kind: "file" }>,
    layout: Layout,
    onPosition: (position: number) => void,
  ) {
    this.writer = new InOrderWriter(this, sink, layout.chunkCount, onPosition);
    this.failed = this.writer.done().then(
      () => new Promise<never>(() => {}),
      (err) => Promise.reject(this.outputError(err)),
    );
    this.failed.catch(() => {});
  }

  static async open(
    target: Exclude<OutputTarget, { kind: "file" }>,
    layout: Layout,
    opts: StorageOptions,
  ): Promise<StreamStorage> {
    const tmp = join(opts.tempDir, `dsclient-${process.pid}-${randomBytes(6).toString("hex")}.buffer`);
    const file = await BufferFile.create(tmp, layout, { anonymous: true });
    let sink: Writable;
    if (target.kind === "stdout") sink = target.sink?.writable ?? process.stdout;
    else if (target.type === "socket") sink = createConnection(target.path);
    else sink = createWriteStream(target.path, { flags: "w" });
    return new StreamStorage(file, sink, target, layout, opts.onPosition ?? (() => {}));
  }

  get outputName(): string {
    return this.target.kind === "stdout" ? (this.target.sink?.name ?? "standard output") : this.target.path;
  }

  position(): number {
    return this.writer.position;
  }

  outputBlocked(): boolean {
    return this.writer.waiting;
  }

  readChunk(index: number, scratch?: Buffer): Promise<Buffer> {
    return this.file.readChunk(index, scratch);
  }

  async put(index: number, data: Buffer): Promise<void> {
    await this.file.writeChunk(index, data, `the download buffer in ${this.file.path}`);
    this.held.add({ first: index, last: index });
    this.writer.kick();
  }

  read(start: number, end: number): Readable {
    return this.file.createReadStream(start, end);
  }

  async finish(): Promise<void> {
    try {
      await this.writer.done();
      await endOutput(this.sink, this.target);
    } catch (err) {
      throw this.outputError(err);
    }
  }

  close(): Promise<void> {
    if (this.target.kind !== "stdout") this.sink.destroy();
    return this.file.close();
  }

  discard(): Promise<void> {
    return this.close();
  }

  private outputError(err: unknown): DownloadError {
    return outputError(err, this.outputName);
  }
}
