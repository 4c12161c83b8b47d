import { constants } from "node:fs";
import { open, realpath } from "node:fs/promises";
import { Readable } from "node:stream";
import { FileRangeReadable, type ChunkSource, type RangeFile, type StreamLayout } from "@distribustream/data-plane";
import { rangeWithin, type ChunkRange } from "@distribustream/pdtp";
import type { MediaFile } from "./library.js";

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
    return new FileRangeReadable(() => openPublished(this.library, f), start, end, f.name);
  }
}

/**
 * Opens a published file to serve a range of it: re-checks that its path
 * still resolves inside the media folder and that the file is the published
 * version; otherwise the read errors and nothing is sent.
 */
async function openPublished(library: FileCatalog, file: MediaFile): Promise<RangeFile> {
  const real = await realpath(file.path);
  if (!library.contains(real)) throw new Error(`${file.name} now leads outside its folder`);
  const handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size !== file.size || Math.floor(st.mtimeMs) !== file.version) {
      throw new Error(`${file.name} changed since it was published`);
    }
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  return { handle, close: true };
}
