import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Writable } from "node:stream";
import { DownloadError, ExitCode } from "./errors.js";

/**
 * Where the downloaded bytes go.
 * - "file": a regular file, downloaded into `<path>.dspart` and renamed when complete;
 * - "stdout": the process's standard output, or `sink` instead (a player's
 *   standard input, see DownloadOptions.sink): written in order, never ended;
 * - "stream": a path that is not a regular file (FIFO, character device, UNIX
 *   socket); written strictly in order, like stdout.
 */
export type OutputTarget =
  | { kind: "file"; path: string }
  | { kind: "stdout"; sink?: { writable: Writable; name: string } }
  | { kind: "stream"; path: string; type: "fifo" | "char" | "socket" };

/** Suffix of the partial file beside a regular output. */
export const PART_SUFFIX = ".dspart";

/** Default output file name for a stream name: its last path segment. */
export function defaultOutputName(name: string): string {
  const seg = name.split("/").filter((s) => s.length > 0);
  const last = seg[seg.length - 1];
  if (!last || last === "." || last === "..")
    throw new DownloadError(`cannot derive a file name from "${name}"`, ExitCode.USAGE);
  return last;
}

/**
 * Resolves the --output value for a stream: "-" is stdout; an existing
 * directory receives the default name; a FIFO, character device or socket is
 * written in order; anything else is a regular file (created or overwritten).
 */
export async function resolveOutput(output: string | undefined, name: string, cwd: string): Promise<OutputTarget> {
  if (output === "-") return { kind: "stdout" };
  if (output === "") throw new DownloadError("empty output path", ExitCode.USAGE);
  let path = resolve(cwd, output ?? defaultOutputName(name));
  let st = await statOrUndefined(path);
  if (st?.isDirectory()) {
    path = join(path, defaultOutputName(name));
    st = await statOrUndefined(path);
    if (st?.isDirectory()) throw new DownloadError(`output ${path} is a directory`, ExitCode.USAGE);
  }
  if (!st || st.isFile()) return { kind: "file", path };
  if (st.isFIFO()) return { kind: "stream", path, type: "fifo" };
  if (st.isCharacterDevice()) return { kind: "stream", path, type: "char" };
  if (st.isSocket()) return { kind: "stream", path, type: "socket" };
  throw new DownloadError(`output ${path} is neither a file, a FIFO, a device nor a socket`, ExitCode.USAGE);
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new DownloadError(`cannot use output ${path}: ${code ?? (err as Error).message}`, ExitCode.IO, {
      cause: err,
    });
  }
}

/**
 * Ends what was written to `sink` for `target`: standard output cannot be
 * ended, so an empty write completes after everything before it; any other
 * sink is ended and flushed.
 */
export function endOutput(sink: Writable, target: OutputTarget): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (target.kind === "stdout") {
      sink.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    } else {
      sink.once("error", reject);
      sink.end(() => resolve());
    }
  });
}
