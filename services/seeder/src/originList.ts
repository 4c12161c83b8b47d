import { originUrlProblem, streamNameProblem } from "@distribustream/pdtp";

/** One origin to publish: its URL and the stream name it is published under. */
export interface OriginSpec {
  url: string;
  name: string;
  /** Where it was given, for messages: "--origin" or "FILE:LINE". */
  where: string;
}

/** An origin entry or list file that cannot be used; the message names where. */
export class OriginListError extends Error {
  override name = "OriginListError";
}

/**
 * The stream name of an origin URL: the last segment of its path,
 * percent-decoded ("https://cdn.example/v/intro%20cut.mp4" -> "intro cut.mp4").
 * Undefined when the path has none (it ends with "/").
 */
export function defaultStreamName(url: string): string | undefined {
  const path = new URL(url).pathname;
  const last = path.slice(path.lastIndexOf("/") + 1);
  if (!last) return undefined;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/**
 * Parses one entry, "URL [NAME]": the URL (http or https) and, optionally
 * after white space, the stream name (by default the URL path's last
 * segment). Throws OriginListError naming `where` (when not empty).
 */
export function parseOriginEntry(entry: string, where: string): OriginSpec {
  const parts = entry.trim().split(/\s+/);
  const fail = (msg: string) => new OriginListError(where ? `${where}: ${msg}` : msg);
  if (parts.length === 0 || parts[0] === "") throw fail("no origin URL");
  if (parts.length > 2) throw fail(`expected "URL [NAME]", got ${parts.length} words`);
  const url = parts[0]!;
  const problem = originUrlProblem(url);
  if (problem) throw fail(problem);
  const name = parts[1] ?? defaultStreamName(url);
  if (name === undefined) throw fail(`${url} has no file name at the end of its path; give a stream name after it`);
  const nameProblem = streamNameProblem(name);
  if (nameProblem) throw fail(`stream name: ${nameProblem}`);
  return { url, name, where };
}

/**
 * Parses an origin list file: one "URL [NAME]" per line; blank lines and
 * comments (from a "#" at the start of a line or after white space) are
 * skipped. Throws OriginListError naming the file and line.
 */
export function parseOriginList(text: string, file: string): OriginSpec[] {
  const specs: OriginSpec[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line) specs.push(parseOriginEntry(line, `${file}:${i + 1}`));
  });
  return specs;
}

/** Throws OriginListError when two origins would publish the same stream name. */
export function checkOriginNames(specs: readonly OriginSpec[]): void {
  const seen = new Map<string, OriginSpec>();
  for (const s of specs) {
    const first = seen.get(s.name);
    if (first) {
      throw new OriginListError(
        `${s.where}: stream name "${s.name}" is already used by ${first.url} (${first.where}); give one of them another name`,
      );
    }
    seen.set(s.name, s);
  }
}
