import { rangeLength, rangeSpan, type ChunkRange } from "@distribustream/pdtp";
import type { ChunkBounds, FileStreamMeta, LiveStreamMeta, StreamMeta } from "@distribustream/swarm-store";

/*
 * What the tracker does differently for each kind of stream, in one place:
 * everything else reads a stream's bounds (`low`, `high`) and these.
 */

/** What never changes of a stream, kept by sessions and the planner. */
export type StreamShape =
  Pick<FileStreamMeta, "kind" | "size" | "chunkSize"> | Pick<LiveStreamMeta, "kind" | "chunkSize">;

export function shapeOf(meta: StreamMeta): StreamShape {
  return meta.kind === "file"
    ? { kind: meta.kind, size: meta.size, chunkSize: meta.chunkSize }
    : { kind: meta.kind, chunkSize: meta.chunkSize };
}

/** Bytes of a range of the stream's chunks: exact for a file; at most, for a live stream (chunks up to chunkSize). */
export function rangeBytes(s: StreamShape, range: ChunkRange): number {
  if (s.kind === "live") return rangeLength(range) * s.chunkSize;
  const span = rangeSpan(range, s.size, s.chunkSize);
  return span.end - span.start;
}

/** Any chunk number (what validation of a range allows at most). */
export const ANY_CHUNK: ChunkBounds = { low: 0, high: Number.MAX_SAFE_INTEGER - 1 };

/**
 * The chunks a peer's messages (Join, Have, Position) may name: a file's
 * bounds; for a live stream any chunk number, since its bounds move between
 * this check and the store call, which clips to them.
 */
export function messageBounds(meta: StreamMeta): ChunkBounds {
  return meta.kind === "file" ? { low: meta.low, high: meta.high } : ANY_CHUNK;
}

/**
 * The chunks a fetcher may be given now, of the stream's current bounds: a
 * file's up to its hashed frontier (the fetcher could not verify the
 * others); all of a live stream's (each chunk comes with its attestation).
 */
export function plannableBounds(kind: StreamMeta["kind"], bounds: ChunkBounds, hashedChunks: number): ChunkBounds {
  return kind === "file" ? { low: bounds.low, high: Math.min(bounds.high, hashedChunks - 1) } : bounds;
}
