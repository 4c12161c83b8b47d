import { RandomAccessScanner, type RandomAccessPoint } from "@distribustream/pdtp";

/**
 * Cuts a live input into chunks as it arrives: a chunk ends when it holds
 * `maxChunkBytes`, or when `maxChunkMs` have passed since its first byte,
 * whichever comes first. The size bound keeps chunks small enough to spread
 * fast; the time bound keeps a low bitrate from waiting long for a full chunk
 * (at 64 kbit/s a 64 KiB chunk would take 8 s to fill).
 */
export interface ChunkPolicy {
  maxChunkBytes: number;
  maxChunkMs: number;
}

/**
 * Defaults: 64 KiB or 200 ms. At 2 Mbit/s a chunk fills in about 260 ms, so
 * the time bound cuts first and a chunk is ~50 KB, 5 a second: small enough
 * that a chunk's wait at the source stays well inside the 1.5 s delay budget,
 * large enough that control traffic (one directive and one report per range
 * of chunks) stays small. At 20 Mbit/s the size bound cuts, ~40 chunks/s.
 */
export const DEFAULT_CHUNK_POLICY: ChunkPolicy = { maxChunkBytes: 64 * 1024, maxChunkMs: 200 };

export interface CutChunk {
  /** The chunk's bytes (may be a view into the input's buffer, which is never reused). */
  data: Buffer;
  /** When the chunk's first byte arrived (ms since the epoch): its source time. */
  timestampMs: number;
}

/**
 * Yields the chunks of `input` in order; the bytes of all chunks concatenated
 * are exactly the input's. Ends when the input ends (after a last, shorter
 * chunk); rejects when it fails. Reads the input only as fast as the
 * consumer takes chunks (backpressure), except that a pending chunk is cut on
 * time whether or not more input comes.
 *
 * An MPEG-TS input is also cut at each random access point (RandomAccessScanner:
 * the PAT before a video keyframe), so that such a chunk begins with it and a
 * viewer can start there, and the size and time cuts keep its 188-byte packets
 * whole and a PAT with the packets that may make it a random access point (a
 * time cut waits for them; a size cut does not). Any other input is cut as it
 * comes.
 */
export async function* cutChunks(
  input: AsyncIterable<Uint8Array>,
  policy: ChunkPolicy,
  now: () => number = Date.now,
): AsyncGenerator<CutChunk> {
  const it = input[Symbol.asyncIterator]();
  const scanner = new RandomAccessScanner();
  /** Random access points found and not yet cut at, in order. */
  const points: RandomAccessPoint[] = [];
  let parts: Buffer[] = [];
  let bytes = 0;
  /** Input offset of the first byte not yet in a chunk. */
  let start = 0;
  let firstAt = 0;
  /** A time cut found no place to cut: wait for more input. */
  let waitForInput = false;
  let pending: Promise<IteratorResult<Uint8Array>> | undefined;
  const cut = (n: number): CutChunk => {
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
    // A view, not a copy: input buffers are never reused by their stream.
    const chunk = { data: all.subarray(0, n), timestampMs: firstAt };
    const rest = all.subarray(n);
    parts = rest.length > 0 ? [rest] : [];
    bytes = rest.length;
    start += n;
    firstAt = rest.length > 0 ? now() : 0;
    return chunk;
  };
  /** The cuts due now: at the random access points within reach, then at the size bound. */
  function* due(): Generator<CutChunk> {
    for (;;) {
      while (points.length > 0 && points[0]!.offset <= start) points.shift();
      const point = points[0];
      if (point && point.offset - start <= policy.maxChunkBytes) yield cut(point.offset - start);
      else if (bytes >= policy.maxChunkBytes) {
        const to = start + policy.maxChunkBytes;
        yield cut((scanner.cutAt(start, to, true) ?? to) - start);
      } else return;
    }
  }
  try {
    for (;;) {
      yield* due();
      pending ??= it.next();
      let r: IteratorResult<Uint8Array> | "time";
      if (bytes === 0 || waitForInput) r = await pending;
      else {
        const left = firstAt + policy.maxChunkMs - now();
        let timer: NodeJS.Timeout | undefined;
        r = await Promise.race([
          pending,
          new Promise<"time">((resolve) => (timer = setTimeout(resolve, Math.max(0, left), "time"))),
        ]);
        clearTimeout(timer);
      }
      if (r === "time") {
        const to = scanner.cutAt(start, start + bytes);
        if (to === undefined) waitForInput = true;
        else yield cut(to - start);
        continue;
      }
      pending = undefined;
      waitForInput = false;
      if (r.done) break;
      if (r.value.length === 0) continue;
      if (bytes === 0) firstAt = now();
      parts.push(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length));
      bytes += r.value.length;
      points.push(...scanner.push(r.value));
    }
    scanner.end();
    yield* due();
    if (bytes > 0) yield cut(bytes);
  } finally {
    // A consumer that stops early (return/throw) ends the input too.
    if (pending !== undefined) pending.catch(() => undefined);
    await it.return?.();
  }
}
