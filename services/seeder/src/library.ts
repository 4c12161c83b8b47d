import type { Dirent } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { chunkCount, streamIdFor, streamNameProblem } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";

/** One version of one file of the media folder, as published. */
export interface MediaFile {
  /** Stream name: path relative to the media folder with "/" separators. */
  name: string;
  /** Path as found under the media folder (may be a symlink that stays inside it). */
  path: string;
  size: number;
  /** Modification time in whole milliseconds; a change means new content. */
  version: number;
  streamId: string;
  /** Set from the tracker's PublishResult; 0 until then (the stream is not served before). */
  chunkSize: number;
  chunkCount: number;
}

export interface ScanResult {
  /** Files to publish: new ones and new versions of changed ones. */
  added: MediaFile[];
  /** Files gone from the folder (not those replaced by a new version). */
  removed: MediaFile[];
  /** Old versions replaced by an entry of `added`. */
  replaced: MediaFile[];
}

const MAX_DEPTH = 32;

/**
 * The files of a media folder. Each scan walks the folder; a new or changed
 * file is published only once it is settled (same size and modification time
 * on two scans in a row, or not modified for `settleMs`), so that a file still
 * being copied in is not published half-written. Dotfiles, dot-folders, names
 * that are not valid stream names and symlinks leading outside the folder are
 * skipped.
 */
export class MediaLibrary {
  private readonly byName = new Map<string, MediaFile>();
  private readonly byStream = new Map<string, MediaFile>();
  private readonly unsettled = new Map<string, { size: number; mtimeMs: number }>();
  private readonly warned = new Set<string>();

  private constructor(
    /** Real path of the media folder. */
    readonly root: string,
    private readonly settleMs: number,
    private readonly log: Logger,
  ) {}

  /** Opens a media folder; throws with a clear message when it is missing or not a folder. */
  static async open(folder: string, settleMs: number, log: Logger): Promise<MediaLibrary> {
    let root: string;
    try {
      root = await realpath(folder);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(
        code === "ENOENT"
          ? `media folder ${folder} does not exist`
          : `cannot open media folder ${folder}: ${(err as Error).message}`,
      );
    }
    if (!(await stat(root)).isDirectory()) throw new Error(`media folder ${folder} is not a folder`);
    return new MediaLibrary(root, settleMs, log);
  }

  /** Records the chunk size the tracker gave a published stream. */
  setChunkSize(streamId: string, chunkSize: number): void {
    const f = this.byStream.get(streamId);
    if (!f) return;
    f.chunkSize = chunkSize;
    f.chunkCount = chunkCount(f.size, chunkSize);
  }

  get(streamId: string): MediaFile | undefined {
    return this.byStream.get(streamId);
  }

  byNameOf(name: string): MediaFile | undefined {
    return this.byName.get(name);
  }

  files(): MediaFile[] {
    return [...this.byName.values()];
  }

  /** True when `real` (a resolved path) lies inside the media folder. */
  contains(real: string): boolean {
    return real.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep);
  }

  /** Walks the folder once and updates what is published. */
  async scan(nowMs = Date.now()): Promise<ScanResult> {
    const seen = new Map<string, { path: string; size: number; mtimeMs: number }>();
    await this.walk(this.root, "", 0, seen);
    const result: ScanResult = { added: [], removed: [], replaced: [] };

    for (const [name, f] of seen) {
      const version = Math.floor(f.mtimeMs);
      const current = this.byName.get(name);
      if (current && current.size === f.size && current.version === version) {
        this.unsettled.delete(name);
        continue;
      }
      const before = this.unsettled.get(name);
      const settled =
        (before !== undefined && before.size === f.size && before.mtimeMs === f.mtimeMs) ||
        nowMs - f.mtimeMs >= this.settleMs;
      if (!settled) {
        this.unsettled.set(name, { size: f.size, mtimeMs: f.mtimeMs });
        continue;
      }
      this.unsettled.delete(name);
      const file: MediaFile = {
        name,
        path: f.path,
        size: f.size,
        version,
        streamId: streamIdFor(name, f.size, version),
        chunkSize: 0,
        chunkCount: 0,
      };
      if (current) {
        this.byStream.delete(current.streamId);
        result.replaced.push(current);
      }
      this.byName.set(name, file);
      this.byStream.set(file.streamId, file);
      result.added.push(file);
    }
    for (const [name, file] of this.byName) {
      if (seen.has(name)) continue;
      this.byName.delete(name);
      this.byStream.delete(file.streamId);
      result.removed.push(file);
    }
    for (const name of this.unsettled.keys()) if (!seen.has(name)) this.unsettled.delete(name);
    return result;
  }

  private async walk(
    dir: string,
    prefix: string,
    depth: number,
    seen: Map<string, { path: string; size: number; mtimeMs: number }>,
  ): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      this.warnOnce(`readdir:${dir}`, { dir, err: (err as Error).message }, "cannot read folder, skipped");
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const name = prefix ? `${prefix}/${e.name}` : e.name;
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < MAX_DEPTH) await this.walk(path, name, depth + 1, seen);
        continue;
      }
      if (!e.isFile() && !e.isSymbolicLink()) continue;
      const problem = streamNameProblem(name);
      if (problem) {
        this.warnOnce(`name:${name}`, { name, problem }, "file name is not a valid stream name, skipped");
        continue;
      }
      try {
        if (e.isSymbolicLink()) {
          const real = await realpath(path);
          if (!this.contains(real)) {
            this.warnOnce(`link:${name}`, { name }, "symlink leads outside the media folder, not published");
            continue;
          }
        }
        const st = await stat(path);
        if (!st.isFile()) continue; // symlinks to folders are not followed (no loops)
        seen.set(name, { path, size: st.size, mtimeMs: st.mtimeMs });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
          this.warnOnce(`stat:${name}`, { name, err: (err as Error).message }, "cannot read file, skipped");
        }
      }
    }
  }

  private warnOnce(key: string, fields: object, msg: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size > 10_000) this.warned.clear();
    this.warned.add(key);
    this.log.warn(fields, msg);
  }
}
