import type { ChunkSource } from "@distribustream/data-plane";
import type { Logger } from "@distribustream/runtime";
import { MediaSource } from "./fileSource.js";
import { MediaLibrary, type MediaFile } from "./library.js";
import type { PublishSink, PublishSource } from "./publishing.js";

export interface FolderWatchOptions {
  /** The media folder; must exist. */
  folder: string;
  /** Publish files added later and unpublish removed ones (default true). */
  watch?: boolean | undefined;
  /** How often the folder is scanned (default 2 s). */
  scanIntervalMs?: number | undefined;
  log: Logger;
}

/**
 * The media folder as a source: scanned once at open (what is settled then
 * is published at once), then every `scanIntervalMs` while watching, its
 * new, changed and removed files handed to publishing.
 */
export class FolderWatch implements PublishSource {
  /** Serves the folder's files on the data plane, straight from disk. */
  readonly chunks: ChunkSource;
  private timer: NodeJS.Timeout | undefined;
  private scanning = false;
  private stopped = false;

  private constructor(
    private readonly library: MediaLibrary,
    private readonly o: FolderWatchOptions,
  ) {
    this.chunks = new MediaSource(library);
  }

  static async open(o: FolderWatchOptions): Promise<FolderWatch> {
    const scanEvery = o.scanIntervalMs ?? 2_000;
    const library = await MediaLibrary.open(o.folder, 2 * scanEvery, o.log);
    await library.scan();
    o.log.info({ media: library.root, files: library.files().length }, "media folder scanned");
    return new FolderWatch(library, o);
  }

  claims(name: string): boolean {
    return this.library.byNameOf(name) !== undefined;
  }

  byNameOf(name: string): MediaFile | undefined {
    return this.library.byNameOf(name);
  }

  files(): MediaFile[] {
    return this.library.files();
  }

  setChunkSize(streamId: string, chunkSize: number): void {
    this.library.setChunkSize(streamId, chunkSize);
  }

  /**
   * Hands changes to `sink` from now on (files still settling at open are
   * picked up by the first rescan). `hidden`: names an earlier source claims,
   * whose media files are not published.
   */
  start(sink: PublishSink, hidden: (name: string) => boolean): void {
    if (!(this.o.watch ?? true)) return;
    this.timer = setInterval(() => void this.rescan(sink, hidden), this.o.scanIntervalMs ?? 2_000);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  private async rescan(sink: PublishSink, hidden: (name: string) => boolean): Promise<void> {
    if (this.scanning || this.stopped) return;
    const log = this.o.log;
    this.scanning = true;
    try {
      const { added, removed, replaced } = await this.library.scan();
      for (const f of replaced)
        log.info({ name: f.name, oldStreamId: f.streamId }, "file changed, publishing new version");
      for (const f of removed) {
        if (hidden(f.name)) continue; // never published: the origin of that name is
        log.info({ name: f.name, streamId: f.streamId }, "file removed, unpublishing");
        sink.unpublish(f.name);
      }
      for (const f of added) {
        if (hidden(f.name)) {
          log.warn({ name: f.name }, "media file has the name of an origin or live broadcast, not published (that is)");
          continue;
        }
        log.info({ name: f.name, size: f.size, streamId: f.streamId }, "publishing");
        sink.publish(f);
      }
    } catch (err) {
      log.error({ err }, "media folder scan failed");
    } finally {
      this.scanning = false;
    }
  }
}
