import { rangeWithin, streamNameProblem, type ChunkRange } from "@distribustream/pdtp";
import { invalidArgument } from "@distribustream/runtime";

/** Most ranges accepted in one message; holdings are a handful of ranges in practice. */
export const MAX_RANGES = 4096;
/** Most transfer reports in one message. */
export const MAX_REPORTS = 1024;

export function checkName(name: string, what = "stream name"): void {
  const problem = streamNameProblem(name);
  if (problem) throw invalidArgument(`bad ${what}: ${problem}`);
}

export function checkString(value: string, field: string, maxBytes: number): void {
  if (Buffer.byteLength(value) > maxBytes) throw invalidArgument(`${field} is longer than ${maxBytes} bytes`);
}

/** Every range well-formed and inside [0, chunkCount); throws INVALID_ARGUMENT naming the first bad one. */
export function checkRanges(ranges: readonly ChunkRange[], chunkCount: number, field: string): void {
  if (ranges.length > MAX_RANGES) throw invalidArgument(`${field} has ${ranges.length} ranges (at most ${MAX_RANGES})`);
  for (const r of ranges) {
    if (rangeWithin(r, chunkCount)) continue;
    const why =
      r.first > r.last
        ? "has first > last"
        : Number.isSafeInteger(r.first) && Number.isSafeInteger(r.last) && r.first >= 0
          ? `is beyond the stream's ${chunkCount} chunks`
          : "is not a range of chunk numbers";
    throw invalidArgument(`${field}: range ${r.first}-${r.last} ${why}`);
  }
}
