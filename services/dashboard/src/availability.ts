import type { AvailabilitySegment } from "@distribustream/swarm-store";
import type { AvailabilityStrip } from "./api.js";

/** Most buckets an availability strip has: about a canvas's width, a few KiB of JSON whatever the chunk count. */
export const MAX_BUCKETS = 1000;

/**
 * Buckets the availability segments of [low, high] (consecutive, covering
 * the range, as SwarmStore.availability returns them) into at most
 * `maxBuckets` buckets of equal chunk counts, each keeping the lowest count
 * of its chunks: the scarce spots stay visible at any size. O(segments +
 * buckets).
 */
export function bucketAvailability(
  low: number,
  high: number,
  segments: readonly AvailabilitySegment[],
  maxBuckets = MAX_BUCKETS,
): AvailabilityStrip {
  const chunks = high - low + 1;
  if (chunks <= 0) return { low, high, bucketChunks: 1, minHolders: [] };
  const bucketChunks = Math.ceil(chunks / maxBuckets);
  const buckets = Math.ceil(chunks / bucketChunks);
  const minHolders = new Array<number>(buckets).fill(Number.POSITIVE_INFINITY);
  for (const seg of segments) {
    const first = Math.max(seg.first, low);
    const last = Math.min(seg.last, high);
    if (first > last) continue;
    const b0 = Math.floor((first - low) / bucketChunks);
    const b1 = Math.floor((last - low) / bucketChunks);
    for (let b = b0; b <= b1; b++) if (seg.count < minHolders[b]!) minHolders[b] = seg.count;
  }
  // a chunk no segment covers has no copy
  return { low, high, bucketChunks, minHolders: minHolders.map((v) => (Number.isFinite(v) ? v : 0)) };
}
