import type { ChunkRange } from "./gen/pdtp/v1/common.js";

/** Largest chunk size the protocol accepts (16 MiB); tickets and buffers rely on it. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Smallest chunk size (1 KiB); smaller chunks only add control traffic. */
export const MIN_CHUNK_SIZE = 1024;
/** Default chunk size: 256 KiB keeps control traffic well under 1% (see README). */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** Number of chunks of a file of `size` bytes; an empty file has none. */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

/** Byte span [start, end) of chunk `index`. */
export function chunkSpan(index: number, size: number, chunkSize: number): { start: number; end: number } {
  const start = index * chunkSize;
  return { start, end: Math.min(start + chunkSize, size) };
}

/** Byte span [start, end) covered by an inclusive chunk range. */
export function rangeSpan(range: ChunkRange, size: number, chunkSize: number): { start: number; end: number } {
  return { start: range.first * chunkSize, end: Math.min((range.last + 1) * chunkSize, size) };
}

/** Number of chunks in an inclusive range. */
export function rangeLength(range: ChunkRange): number {
  return range.last - range.first + 1;
}

/** True when the range is well-formed and inside [0, count). */
export function rangeWithin(range: ChunkRange, count: number): boolean {
  return (
    Number.isSafeInteger(range.first) &&
    Number.isSafeInteger(range.last) &&
    range.first >= 0 &&
    range.first <= range.last &&
    range.last < count
  );
}

export function formatRange(range: ChunkRange): string {
  return range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`;
}
