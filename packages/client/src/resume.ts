import { constants } from "node:fs";
import { access, lstat, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { RangeSet, type Manifest } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime/log";
import { PART_SUFFIX } from "./outputTarget.js";

/**
 * Resuming a download (dsclient -c). A download run with -c that stops
 * before the end keeps `FILE.dspart` and, beside it, `FILE.dsclient`: a small
 * JSON record of the stream (name, id, version, size, chunk size) and of the
 * chunks written to the partial file. A later run with -c reads the record;
 * when the tracker still has the same version of the stream, the download
 * checks each recorded chunk against the signed manifest, as it checks a
 * chunk on receipt, and fetches only the rest. The record is a hint, never
 * trusted: a chunk counts only once its bytes in the file hash right.
 * With no partial file but FILE itself there at the stream's size (a
 * finished download, or one copied from elsewhere), -c checks every chunk of
 * FILE the same way: a complete, correct FILE is fetched from no one.
 */

/** Suffix of the record beside a kept partial file. */
export const RECORD_SUFFIX = ".dsclient";
/** How often the record is brought up to date while chunks arrive (a SIGKILL loses at most this much). */
const SAVE_INTERVAL_MS = 2000;
/** A record larger than this is not one dsclient wrote (a fragmented 100 GiB file makes a few MiB). */
const MAX_RECORD_BYTES = 64 * 1024 * 1024;

/** What FILE.dsclient holds. */
export interface PartialRecord {
  /** Format of the record. */
  dsclient: 1;
  name: string;
  streamId: string;
  version: number;
  size: number;
  chunkSize: number;
  /** Chunks written to FILE.dspart, as "0-15,17,20-31". */
  chunks: string;
}

export type StreamHeader = Omit<PartialRecord, "dsclient" | "chunks">;

/** The record's path for the output `path`. */
export function recordPath(path: string): string {
  return path + RECORD_SUFFIX;
}

/** The record fields of a manifest. */
export function streamHeader(m: Manifest): StreamHeader {
  const b = m.body;
  return { name: b.name, streamId: b.streamId, version: b.version, size: b.size, chunkSize: b.chunkSize };
}

/** What -c can use of an earlier download of the output `path`. */
export type KeptPartial =
  | { kind: "none" }
  /** There is a partial download, but of something else: it is replaced, for this reason. */
  | { kind: "restart"; reason: string }
  /** The partial file and the chunks its record names (still to be checked). */
  | { kind: "resume"; claimed: RangeSet }
  /** No partial file, but FILE itself is there with the stream's size: every chunk of it is to be checked. */
  | { kind: "whole"; claimed: RangeSet };

/** What the kept partial download of `path` is worth for the stream `m` as the tracker has it now. */
export async function findPartial(path: string, m: Manifest): Promise<KeptPartial> {
  const part = path + PART_SUFFIX;
  const record = recordPath(path);
  const partThere = await exists(part);
  let text: string;
  try {
    if ((await lstat(record)).size > MAX_RECORD_BYTES) throw Object.assign(new Error(), { code: "EFBIG" });
    text = await readFile(record, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") return { kind: "restart", reason: `cannot read ${record} (${code ?? String(err)})` };
    if (partThere) {
      return { kind: "restart", reason: `${part} has no ${basename(record)} beside it saying which chunks it holds` };
    }
    return m.chunkCount > 0 && (await checkableWhole(path, m.body.size))
      ? { kind: "whole", claimed: new RangeSet([{ first: 0, last: m.chunkCount - 1 }]) }
      : { kind: "none" };
  }
  if (!partThere) return { kind: "none" };
  const rec = parseRecord(text, m.chunkCount);
  if (typeof rec === "string") return { kind: "restart", reason: `${record} ${rec}` };
  const now = streamHeader(m);
  if (rec.name !== now.name) {
    return { kind: "restart", reason: `${part} was kept for the stream "${rec.name}", not "${now.name}"` };
  }
  if (rec.streamId !== now.streamId || rec.version !== now.version || rec.size !== now.size) {
    return {
      kind: "restart",
      reason:
        `"${now.name}" changed on the tracker since ${basename(part)} was kept ` +
        `(version ${rec.version}, ${rec.size} bytes; now version ${now.version}, ${now.size} bytes)`,
    };
  }
  if (rec.chunkSize !== now.chunkSize) {
    return {
      kind: "restart",
      reason: `the tracker now cuts "${now.name}" in chunks of ${now.chunkSize} bytes, not ${rec.chunkSize} as when ${basename(part)} was kept`,
    };
  }
  return { kind: "resume", claimed: rec.claimed };
}

/** Makes FILE (findPartial's "whole") the partial file FILE.dspart, to be checked chunk by chunk. */
export async function wholeAsPartial(path: string): Promise<void> {
  await rename(path, path + PART_SUFFIX);
}

/** Puts FILE back where it was found, when nothing was written to it and the download did not complete. */
export async function partialAsWhole(path: string): Promise<void> {
  await rename(path + PART_SUFFIX, path);
  await removeRecord(recordPath(path));
}

/** Parses a record's text; a string says what is wrong with it. */
export function parseRecord(text: string, chunkCount: number): (StreamHeader & { claimed: RangeSet }) | string {
  let v: Partial<Record<keyof PartialRecord, unknown>>;
  try {
    v = JSON.parse(text) as typeof v;
  } catch {
    return "is not JSON";
  }
  if (typeof v !== "object" || v === null || v.dsclient !== 1) return "is not a dsclient record (format 1)";
  const { name, streamId, version, size, chunkSize, chunks } = v;
  if (typeof name !== "string" || typeof streamId !== "string" || typeof chunks !== "string") {
    return "lacks the stream's name, id or chunks";
  }
  if (![version, size, chunkSize].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
    return "lacks the stream's version, size or chunk size";
  }
  const claimed = new RangeSet();
  for (const part of chunks === "" ? [] : chunks.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    const first = Number(m?.[1]);
    const last = m?.[2] === undefined ? first : Number(m[2]);
    if (!m || !(first <= last) || last >= chunkCount) return `names chunks "${part.slice(0, 40)}" the stream has not`;
    claimed.add({ first, last });
  }
  return {
    name,
    streamId,
    version: version as number,
    size: size as number,
    chunkSize: chunkSize as number,
    claimed,
  };
}

/**
 * Keeps FILE.dsclient current while a download with -c runs: written when
 * the partial file is opened, then at most every SAVE_INTERVAL_MS while
 * chunks arrive, and once more when the download stops. `chunks` says what
 * to record: the chunks written, and those kept from an earlier run not yet
 * checked (an interruption while checking must not lose them).
 */
export class RecordKeeper {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  private warned = false;

  constructor(
    private readonly path: string,
    private readonly header: StreamHeader,
    private readonly chunks: () => RangeSet,
    private readonly log: Logger,
  ) {}

  /** Chunks were written: the record follows within SAVE_INTERVAL_MS. */
  changed(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.save();
    }, SAVE_INTERVAL_MS);
    this.timer.unref();
  }

  /** Writes the record now (after any write in progress). */
  save(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  /** Stops the updates: a last write when the partial file is kept, else the record is removed. */
  async close(keep: boolean): Promise<void> {
    if (this.closed) return this.writing;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (keep) return this.save();
    await this.writing;
    await removeRecord(this.path);
  }

  /** Replaces the record in one rename, never writing through a link planted at the temporary name. */
  private async write(): Promise<void> {
    const record: PartialRecord = { dsclient: 1, ...this.header, chunks: this.chunks().toString() };
    const tmp = `${this.path}.tmp`;
    try {
      await unlinkIfPresent(tmp);
      await writeFile(tmp, JSON.stringify(record) + "\n", { flag: "wx", mode: 0o644 });
      await rename(tmp, this.path);
    } catch (err) {
      if (this.warned) return;
      this.warned = true;
      this.log.warn({ err, path: this.path }, "cannot write the record of the partial download: -c cannot resume it");
    }
  }
}

/** Removes the record of the output `path`, if any (a download without -c, or one that completed). */
export async function removeRecord(record: string): Promise<void> {
  await unlinkIfPresent(record).catch(() => {});
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/**
 * Whether FILE can be checked in place of a partial download: a regular file
 * of the stream's size, not a symbolic link, with no other name (a partial
 * file is written to, and reopened only under those conditions), that this
 * user may write. Anything else is left alone and downloaded over as usual.
 */
async function checkableWhole(path: string, size: number): Promise<boolean> {
  try {
    const st = await lstat(path);
    if (!st.isFile() || st.nlink !== 1 || st.size !== size) return false;
    await access(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
