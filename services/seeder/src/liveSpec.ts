import { statSync } from "node:fs";
import { resolve } from "node:path";
import { streamNameProblem } from "@distribustream/pdtp";
import type { ChunkPolicy } from "./live/chunker.js";
import type { LiveInput } from "./live/sources.js";

/** One live broadcast to publish: its stream name and where its bytes come from. */
export interface LiveSpec {
  /** The stream name viewers ask for (pdtp://tracker/NAME); it hides a media file or origin of that name. */
  name: string;
  input: LiveInput;
  /**
   * Nominal bitrate in bits per second, published for a stdin, HTTP or
   * stream input (0 or unset: unknown). A file input's is the one it is
   * played at.
   */
  bitrate?: number | undefined;
  /** Where the chunks are cut (default DEFAULT_CHUNK_POLICY: 64 KiB or 200 ms). */
  policy?: ChunkPolicy | undefined;
  /** Chunks kept to serve (default DEFAULT_LIVE_WINDOW_CHUNKS). */
  windowChunks?: number | undefined;
}

/**
 * Chunks a seeder keeps of each broadcast: 150, i.e. 30 s of media at the
 * default policy (a 200 ms chunk each). That is what a viewer tuning in
 * (a second or two behind the edge), one that stalls and re-tunes, and the
 * checksum service after a tracker reconnect (whose backoff reaches 10 s)
 * may still ask for, at a memory bound of 150 x 64 KiB = 9.4 MiB per stream.
 * Above ~2.6 Mbit/s the size bound cuts first and the window covers less
 * time (~4 s at 20 Mbit/s): raise it with the bitrate if viewers need more.
 */
export const DEFAULT_LIVE_WINDOW_CHUNKS = 150;

/** A live entry or setting that cannot be used; the message names where. */
export class LiveSpecError extends Error {
  override name = "LiveSpecError";
}

/**
 * A bitrate in bits per second, with an optional decimal (SI) suffix as
 * encoders write them: "2M" and "2Mbit/s" are 2 000 000, "1500k" is
 * 1 500 000, "64000" is 64 000 ("b", "bit/s", "bps" may follow). Bytes are
 * refused ("2MB"): other rates of this CLI are bytes per second, and a
 * bitrate given in them would be 8 times off. Throws RangeError.
 */
export function parseBitrate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKMG]?)(b|bit\/s|bps|bits\/s)?$/.exec(text.trim());
  if (!m) {
    throw new RangeError(
      `"${text}" is not a bitrate in bits per second (examples: 2M = 2 Mbit/s, 1500k, 64000; bytes are not taken)`,
    );
  }
  const scale = { "": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9 }[m[2] as "" | "k" | "K" | "M" | "G"];
  const rate = Math.round(Number(m[1]) * scale);
  if (rate <= 0) throw new RangeError(`bitrate "${text}" must be above 0`);
  if (!Number.isSafeInteger(rate) || rate > 100e9) throw new RangeError(`bitrate "${text}" is beyond 100 Gbit/s`);
  return rate;
}

/** What applies to every entry given as "NAME=SOURCE". */
export interface LiveEntryDefaults {
  /** Bits per second: a file's playing rate, the published nominal rate of the others. */
  bitrate?: number | undefined;
  /** A file starts over at its end. */
  loop?: boolean | undefined;
  windowChunks?: number | undefined;
}

/**
 * Parses "NAME=SOURCE" (split at the first "=", so a name holds none):
 * SOURCE is "-" (standard input), an http:// or https:// URL, or a file path
 * (played at `bitrate`, looped with `loop`). Throws LiveSpecError naming
 * `where` (when not empty); checkLiveSpecs checks what needs the whole list
 * or the disk.
 */
export function parseLiveEntry(entry: string, defaults: LiveEntryDefaults = {}, where = ""): LiveSpec {
  const fail = (msg: string) => new LiveSpecError(where ? `${where}: ${msg}` : msg);
  const eq = entry.indexOf("=");
  if (eq < 0) throw fail(`expected NAME=SOURCE (SOURCE: -, an http(s):// URL or a file), got "${entry}"`);
  const name = entry.slice(0, eq).trim();
  const source = entry.slice(eq + 1).trim();
  const nameProblem = streamNameProblem(name);
  if (nameProblem) throw fail(`"${entry}": ${nameProblem}`);
  if (source === "") throw fail(`"${entry}": no SOURCE after "=" (-, an http(s):// URL or a file)`);
  const spec = (input: LiveInput): LiveSpec => ({
    name,
    input,
    ...(defaults.bitrate !== undefined && input.kind !== "file" ? { bitrate: defaults.bitrate } : {}),
    ...(defaults.windowChunks !== undefined ? { windowChunks: defaults.windowChunks } : {}),
  });
  if (source === "-") return spec({ kind: "stdin" });
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    let url: URL;
    try {
      url = new URL(source);
    } catch {
      throw fail(`"${source}" is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw fail(`"${source}": a live URL must use http:// or https://`);
    }
    return spec({ kind: "http", url: source });
  }
  if (defaults.bitrate === undefined) {
    throw fail(`the file ${source} needs a bitrate to be played at (live_bitrate, e.g. 2M for 2 Mbit/s)`);
  }
  return spec({ kind: "file", path: resolve(source), bitrate: defaults.bitrate, loop: defaults.loop ?? false });
}

/**
 * Throws LiveSpecError for a list that cannot run: two broadcasts of one
 * name (or of the name of an origin in `otherNames`), standard input read
 * twice, a file that is not there, a file without a bitrate, a window
 * under 2 chunks.
 */
export function checkLiveSpecs(specs: readonly LiveSpec[], otherNames: ReadonlySet<string> = new Set()): void {
  const names = new Set<string>();
  let stdin = false;
  for (const s of specs) {
    if (names.has(s.name)) throw new LiveSpecError(`two live broadcasts are named "${s.name}"`);
    if (otherNames.has(s.name)) {
      throw new LiveSpecError(`"${s.name}" is the name of a live broadcast and of an origin; give one another name`);
    }
    names.add(s.name);
    const w = s.windowChunks;
    if (w !== undefined && !(Number.isInteger(w) && w >= 2)) {
      throw new LiveSpecError(`"${s.name}": a window of ${w} chunks (at least 2)`);
    }
    const input = s.input;
    if (input.kind === "stdin") {
      if (stdin) throw new LiveSpecError(`"${s.name}": standard input (-) is already the source of another broadcast`);
      stdin = true;
    } else if (input.kind === "file") {
      if (!(input.bitrate > 0)) throw new LiveSpecError(`"${s.name}": the file ${input.path} needs a bitrate above 0`);
      let isFile = false;
      try {
        isFile = statSync(input.path).isFile();
      } catch (err) {
        throw new LiveSpecError(
          `"${s.name}": ${input.path} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
        );
      }
      if (!isFile) throw new LiveSpecError(`"${s.name}": ${input.path} is not a file`);
    }
  }
}
