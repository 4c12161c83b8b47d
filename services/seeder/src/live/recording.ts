import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  writeFileSync,
  type WriteStream,
} from "node:fs";
import { open, stat } from "node:fs/promises";
import { basename, extname, join, resolve, sep } from "node:path";
import { streamIdFor } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";
import type { MediaFile } from "../library.js";

/** Bytes waiting to be written before the input is held (about 20 chunks of 50 KB). */
const HIGH_WATER_BYTES = 1 << 20;

/** How far the recording of a name got, kept beside its sequence state. */
interface Saved {
  name: string;
  /** The recording file. */
  path: string;
  /**
   * recording: its broadcast was going on when the seeder stopped (the next
   * run appends to it); finished: its input ended; failed: a write failed.
   */
  state: "recording" | "finished" | "failed";
  /** When the recording started (ms since the epoch). */
  startedMs: number;
}

export class LiveRecordingError extends Error {
  override name = "LiveRecordingError";
}

export interface LiveRecordingOptions {
  /** Folder of the recordings (created if missing). */
  dir: string;
  /** Folder of the small state file that says how far the recording got (the live sequence state's). */
  stateDir: string;
  name: string;
  log: Logger;
}

/**
 * The recording of one live broadcast: every chunk it cuts, appended in
 * order to DIR/NAME (the name URI-encoded: `live/cam` is `live%2Fcam`), so
 * the file is byte for byte what the source sent. A seeder stopped
 * mid-broadcast appends to it when it runs again, as the broadcast (its
 * stream and sequence numbers) continues; once the input ended the recording
 * is finished, and the next run of the broadcast starts a new one, the
 * finished one kept beside it as NAME.<start time> (e.g.
 * `cam.20250101T120000Z.ts`). A write that fails ends the recording, not the
 * broadcast.
 */
export class LiveRecording {
  /** The recording file. */
  readonly path: string;
  /** The recording folder, resolved: the recording is only served from inside it. */
  readonly dir: string;
  private readonly statePath: string;
  private out: WriteStream | undefined;
  private closed: Promise<void> | undefined;
  private drained: Promise<void> | undefined;
  private failure: Error | undefined;
  private finished: Promise<MediaFile | undefined> | undefined;

  private constructor(
    private readonly o: LiveRecordingOptions,
    dir: string,
    /** The recording of a broadcast that goes on: appended to. */
    private readonly continuing: boolean,
    private startedMs: number,
  ) {
    this.dir = dir;
    this.path = join(dir, encodeURIComponent(o.name));
    this.statePath = stateFile(o.stateDir, o.name);
  }

  /**
   * Opens the recording of `name`: the unfinished recording of the
   * broadcast is continued; a finished one (or any other file of that name
   * in the folder) is moved aside, never overwritten. Throws
   * LiveRecordingError when the folder cannot be used.
   */
  static open(o: LiveRecordingOptions): LiveRecording {
    let dir: string;
    try {
      mkdirSync(o.dir, { recursive: true });
      dir = realpathSync(o.dir);
      if (!statSync(dir).isDirectory()) throw new Error("not a folder");
      mkdirSync(o.stateDir, { recursive: true });
    } catch (err) {
      throw new LiveRecordingError(`cannot record in ${resolve(o.dir)}: ${(err as Error).message}`);
    }
    const path = join(dir, encodeURIComponent(o.name));
    const saved = readState(stateFile(o.stateDir, o.name), o.name);
    const there = existsSync(path);
    if (there && saved?.state === "recording" && saved.path === path) {
      o.log.info({ name: o.name, path, bytes: statSync(path).size }, "live recording continues");
      return new LiveRecording(o, dir, true, saved.startedMs);
    }
    if (there) {
      const since = saved?.path === path ? saved.startedMs : statSync(path).mtimeMs;
      const kept = keepAside(path, since);
      o.log.info({ name: o.name, path: kept, state: saved?.state }, "the previous live recording is kept aside");
    }
    return new LiveRecording(o, dir, false, 0);
  }

  /**
   * Appends a chunk's bytes (written from `data` itself, not copied).
   * Returns a promise while more than a MiB waits to be written, resolved
   * once it is: the caller holds its input meanwhile.
   */
  append(data: Buffer): Promise<void> | undefined {
    if (this.failure || this.finished || this.closed) return undefined;
    const out = this.out ?? this.openOut();
    if (!out || out.write(data)) return undefined;
    return (this.drained ??= new Promise<void>((resolve) => {
      const done = () => {
        out.off("drain", done);
        out.off("close", done);
        this.drained = undefined;
        resolve();
      };
      out.on("drain", done);
      out.on("close", done);
    }));
  }

  /**
   * The input ended: what was appended is written and synced, and the
   * recording is finished. Resolves the file to publish under the
   * broadcast's name, or undefined when there is none (nothing recorded, or
   * a write failed).
   */
  finish(): Promise<MediaFile | undefined> {
    return (this.finished ??= this.finishFile());
  }

  /**
   * Writes what was appended and closes the file (an unfinished recording
   * is continued by the next run); after finish, resolves once it finished.
   */
  async close(): Promise<void> {
    if (this.finished) {
      await this.finished;
      return;
    }
    await this.closeOut();
  }

  private async finishFile(): Promise<MediaFile | undefined> {
    await this.closeOut();
    if (this.failure || (!this.out && !this.continuing)) return undefined;
    try {
      this.save("finished");
      const fh = await open(this.path, "r+");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      const st = await stat(this.path);
      if (st.size === 0) return undefined;
      const version = Math.floor(st.mtimeMs);
      this.o.log.info({ name: this.o.name, path: this.path, bytes: st.size }, "live recording finished");
      return {
        name: this.o.name,
        path: this.path,
        size: st.size,
        version,
        streamId: streamIdFor(this.o.name, st.size, version),
        chunkSize: 0,
        chunkCount: 0,
      };
    } catch (err) {
      this.fail(err as Error);
      return undefined;
    }
  }

  private closeOut(): Promise<void> {
    const out = this.out;
    if (!out || out.closed) return (this.closed ??= Promise.resolve());
    return (this.closed ??= new Promise<void>((resolve) => {
      out.once("close", () => resolve());
      out.end();
    }));
  }

  /** Opens the file for appending (its state saved first); undefined when the state cannot be saved. */
  private openOut(): WriteStream | undefined {
    if (!this.continuing) {
      this.startedMs = Date.now();
      try {
        this.save("recording");
      } catch (err) {
        this.fail(err as Error);
        return undefined;
      }
      this.o.log.info({ name: this.o.name, path: this.path }, "live recording started");
    }
    const out = createWriteStream(this.path, { flags: "a", highWaterMark: HIGH_WATER_BYTES });
    out.on("error", (err) => this.fail(err));
    return (this.out = out);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.o.log.error(
      { name: this.o.name, path: this.path, err },
      "live recording failed: the broadcast goes on unrecorded",
    );
    try {
      this.save("failed");
    } catch {
      // the state folder fails too: the next run keeps this recording aside all the same (it is not "recording")
    }
  }

  private save(state: Saved["state"]): void {
    const saved: Saved = { name: this.o.name, path: this.path, state, startedMs: this.startedMs };
    const tmp = `${this.statePath}.tmp`;
    writeFileSync(tmp, JSON.stringify(saved));
    renameSync(tmp, this.statePath);
  }
}

/** True when `real` (a resolved path) lies inside the folder `dir` (resolved too). */
export function insideFolder(dir: string, real: string): boolean {
  return real.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function stateFile(stateDir: string, name: string): string {
  return join(stateDir, `record-${encodeURIComponent(name)}.json`);
}

/** The saved state of the name's recording; undefined when there is none or it cannot be read (the file is then kept aside). */
function readState(path: string, name: string): Saved | undefined {
  try {
    const saved = JSON.parse(readFileSync(path, "utf8")) as Partial<Saved>;
    const states: readonly unknown[] = ["recording", "finished", "failed"];
    if (
      saved.name !== name ||
      typeof saved.path !== "string" ||
      !states.includes(saved.state) ||
      typeof saved.startedMs !== "number"
    ) {
      return undefined;
    }
    return saved as Saved;
  } catch {
    return undefined;
  }
}

/**
 * Moves `path` to a free name beside it that says when it was recorded:
 * `cam.ts` to `cam.20250101T120000Z.ts` (`-2`, `-3`… appended when taken).
 * Returns the new path.
 */
function keepAside(path: string, sinceMs: number): string {
  const base = basename(path);
  const ext = extname(base);
  const stem = ext && ext !== base ? base.slice(0, -ext.length) : base;
  const suffix = ext && ext !== base ? ext : "";
  const stamp = new Date(sinceMs)
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/[-:]/g, "");
  const dir = path.slice(0, path.length - base.length);
  for (let i = 1; ; i++) {
    const candidate = `${dir}${stem}.${stamp}${i > 1 ? `-${i}` : ""}${suffix}`;
    if (existsSync(candidate)) continue;
    renameSync(path, candidate);
    return candidate;
  }
}
