import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { parsePdtpUrl } from "@distribustream/pdtp";
import { DownloadError, ExitCode } from "./errors.js";
import { defaultOutputName } from "./outputTarget.js";

/**
 * Several downloads in one dsclient run (URLs as arguments, or -i FILE):
 * each to its own output, `jobs` at a time, one exit status for all.
 */

/** A URL to download and where it was given (for messages): "argument 2", "list.txt:7". */
export interface UrlSource {
  url: string;
  where: string;
}

/** Most bytes of a URL list (-i): far more than any list of URLs a person or a script writes. */
const MAX_LIST_BYTES = 16 * 1024 * 1024;

/**
 * The URLs of a list file (-i FILE; "-" reads standard input): one a line,
 * surrounding blanks trimmed; blank lines and lines starting with # skipped.
 * Rejects with a usage error (exit 2) when the file cannot be read.
 */
export async function readUrlList(file: string, stdin: Readable = process.stdin): Promise<UrlSource[]> {
  let text: string;
  try {
    text = file === "-" ? await readAll(stdin) : await readFile(file, "utf8");
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new DownloadError(`cannot read the URL list ${file}: ${why}`, ExitCode.USAGE, { cause: err });
  }
  const name = file === "-" ? "standard input" : file;
  const out: UrlSource[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line !== "" && !line.startsWith("#")) out.push({ url: line, where: `${name}:${i + 1}` });
  });
  return out;
}

async function readAll(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const part of stream) {
    const b = part as Buffer;
    bytes += b.length;
    if (bytes > MAX_LIST_BYTES) throw new Error(`longer than ${MAX_LIST_BYTES} bytes`);
    parts.push(b);
  }
  return Buffer.concat(parts).toString("utf8");
}

/**
 * Checks the URLs of a batch before anything starts, so that a typo never
 * leaves half a batch done: each must parse, and with several, each writes
 * its own file (its name's last segment, in `outputDir` when -o names an
 * existing directory). Throws a usage error (exit 2) naming the URL, or the
 * two URLs that would write the same file. `output` with several URLs must
 * be an existing directory: "-" or a file cannot take several downloads.
 */
export async function checkBatch(
  sources: readonly UrlSource[],
  output: string | undefined,
  cwd: string,
): Promise<void> {
  const names = sources.map(({ url, where }) => {
    try {
      return parsePdtpUrl(url).name;
    } catch (err) {
      const at = sources.length > 1 ? ` (${where})` : "";
      throw new DownloadError(`${(err as Error).message}${at}`, ExitCode.USAGE);
    }
  });
  if (sources.length < 2) return;
  let dir = cwd;
  if (output !== undefined) {
    const st = output === "-" ? undefined : await stat(resolve(cwd, output)).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new DownloadError(
        `-o ${output} with ${sources.length} URLs: give a directory that exists (each URL writes its own file in it)`,
        ExitCode.USAGE,
      );
    }
    dir = resolve(cwd, output);
  }
  const seen = new Map<string, string>();
  sources.forEach(({ url }, i) => {
    const path = join(dir, defaultOutputName(names[i]!));
    const other = seen.get(path);
    if (other !== undefined) {
      throw new DownloadError(`${other} and ${url} would both write ${path}`, ExitCode.USAGE);
    }
    seen.set(path, url);
  });
}

/**
 * Runs `run` for each item, at most `jobs` at once, starting them in list
 * order; no new one starts once `signal` is aborted. Resolves with each
 * item's exit code, undefined for those never started.
 */
export async function runJobs<T>(
  items: readonly T[],
  jobs: number,
  run: (item: T, index: number) => Promise<number>,
  signal?: AbortSignal,
): Promise<(number | undefined)[]> {
  const codes: (number | undefined)[] = items.map(() => undefined);
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal?.aborted) {
      const i = next++;
      codes[i] = await run(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
  return codes;
}

/** The exit status of a batch: 0 when every download succeeded, else the code of the first one (in list order) that failed. */
export function batchExitCode(codes: readonly (number | undefined)[]): number {
  return codes.find((c) => c !== undefined && c !== 0) ?? 0;
}
