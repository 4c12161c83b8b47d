import { createWriteStream } from "node:fs";
import { createConnection } from "node:net";
import type { Writable } from "node:stream";
import { outputError, type DownloadError } from "./errors.js";
import { SLOW_WRITE_MS } from "./inOrderWriter.js";
import { endOutput, type OutputTarget } from "./outputTarget.js";

/**
 * Where a live viewer's chunks go, in order: standard output, a FIFO, a
 * device, a socket, or a regular file written straight (a recording that
 * stays usable however the viewer ends; there is nothing to resume). One
 * write at a time: the next waits until the sink took the last, so a slow
 * reader holds back the writing, never the fetching.
 */
export class LiveOutput {
  readonly name: string;
  /** Settles only with the first failure of the sink (its reader went away: OutputClosed, exit 0). */
  readonly failed: Promise<never>;
  private readonly sink: Writable;
  private writeSince: number | undefined;
  private failure: DownloadError | undefined;
  private rejectFailed!: (err: DownloadError) => void;

  constructor(private readonly target: OutputTarget) {
    this.name = target.kind === "stdout" ? (target.sink?.name ?? "standard output") : target.path;
    if (target.kind === "stdout") this.sink = target.sink?.writable ?? process.stdout;
    else if (target.kind === "stream" && target.type === "socket") this.sink = createConnection(target.path);
    else this.sink = createWriteStream(target.path, { flags: "w" });
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {});
    this.sink.on("error", (err) => this.fail(err));
  }

  /** True while a write has waited on the reader for more than SLOW_WRITE_MS (a paused player). */
  get blocked(): boolean {
    return this.writeSince !== undefined && Date.now() - this.writeSince > SLOW_WRITE_MS;
  }

  /** Hands `data` to the sink; resolves once it took it. Rejects with the output's failure. */
  write(data: Buffer): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    this.writeSince = Date.now();
    return new Promise<void>((resolve, reject) => {
      const onClose = () => reject(this.fail(Object.assign(new Error("output closed"), { code: "EPIPE" })));
      this.sink.once("close", onClose);
      this.sink.write(data, (err) => {
        this.sink.off("close", onClose);
        this.writeSince = undefined;
        if (err) reject(this.fail(err));
        else resolve();
      });
    });
  }

  /** Flushes and ends the output (standard output stays open: it waits for what was written). */
  async finish(): Promise<void> {
    try {
      await endOutput(this.sink, this.target);
    } catch (err) {
      throw this.fail(err);
    }
  }

  close(): void {
    if (this.target.kind !== "stdout") this.sink.destroy();
  }

  private fail(err: unknown): DownloadError {
    this.failure ??= outputError(err, this.name);
    this.rejectFailed(this.failure);
    return this.failure;
  }
}
