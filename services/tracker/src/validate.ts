import { streamNameProblem, type ChunkRange } from "@distribustream/pdtp";
import { invalidArgument } from "@distribustream/runtime";
import type { ChunkBounds } from "@distribustream/swarm-store";

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

/** Every range well-formed and inside `bounds`; throws INVALID_ARGUMENT naming the first bad one. */
export function checkRanges(ranges: readonly ChunkRange[], bounds: ChunkBounds, field: string): void {
  if (ranges.length > MAX_RANGES) throw invalidArgument(`${field} has ${ranges.length} ranges (at most ${MAX_RANGES})`);
  for (const r of ranges) {
    const numbers = Number.isSafeInteger(r.first) && Number.isSafeInteger(r.last) && r.first >= 0;
    if (numbers && r.first <= r.last && r.first >= bounds.low && r.last <= bounds.high) continue;
    const why = r.first > r.last ? "has first > last" : numbers ? outside(bounds) : "is not a range of chunk numbers";
    throw invalidArgument(`${field}: range ${r.first}-${r.last} ${why}`);
  }
}

/** Why a chunk number past `bounds` is refused: "is beyond the stream's N chunks" (from 0), or names the bounds. */
export function outside(bounds: ChunkBounds): string {
  return bounds.low === 0
    ? `is beyond the stream's ${bounds.high + 1} chunks`
    : `is outside the stream's chunks ${bounds.low}-${bounds.high}`;
}
