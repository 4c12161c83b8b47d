import * as grpc from "@grpc/grpc-js";
import {
  confirmOrigin,
  fetchChunks,
  OriginError,
  readOrigin,
  type DataPlaneAgent,
  type OriginAgents,
} from "@distribustream/data-plane";
import { failedPrecondition, PublicError, unavailable } from "@distribustream/runtime";
import type { ManifestJob } from "./request.js";

export interface ChunkReadOptions {
  signal: AbortSignal;
  /** Keep-alive pool for seeders' data planes. */
  agent: DataPlaneAgent;
  /** Keep-alive agents for origins. */
  originAgents: OriginAgents;
  /** Longest wait for the source's next bytes. */
  timeoutMs?: number | undefined;
  /** Each whole chunk, in order; `data` may be reused once it returns. */
  onChunk: (index: number, data: Buffer) => Promise<void> | void;
}

/**
 * Reads every chunk of the job's stream in order from where its bytes are
 * authoritative: the HTTP(S) origin when the publish named one (never the
 * seeder's copy of it), else the seeder's data plane with the tracker's
 * ticket. Origin reads are conditional on the published validator, and the
 * origin is asked once more at the end, so that a change while hashing
 * fails the manifest (FAILED_PRECONDITION) instead of signing a mix.
 * Data-plane failures reject with FetchError, origin failures with a
 * PublicError.
 */
export async function readStreamChunks(job: ManifestJob, opts: ChunkReadOptions): Promise<void> {
  if (job.chunkCount === 0) return;
  if (!job.origin) {
    await fetchChunks({
      host: job.source.host,
      port: job.source.port,
      streamId: job.streamId,
      range: { first: 0, last: job.chunkCount - 1 },
      ticket: job.ticket,
      layout: { size: job.size, chunkSize: job.chunkSize },
      signal: opts.signal,
      agent: opts.agent,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      onChunk: opts.onChunk,
    });
    return;
  }
  const origin = job.origin;
  const request = {
    agents: opts.originAgents,
    signal: opts.signal,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  };
  try {
    const chunk = Buffer.allocUnsafe(Math.min(job.chunkSize, Math.max(1, job.size)));
    let fill = 0;
    let index = 0;
    for await (const piece of readOrigin(origin, 0, job.size, request) as AsyncIterable<Buffer>) {
      let at = 0;
      while (at < piece.length) {
        const n = piece.copy(chunk, fill, at);
        fill += n;
        at += n;
        if (fill === chunk.length) {
          await opts.onChunk(index++, chunk);
          fill = 0;
        }
      }
    }
    if (fill > 0) await opts.onChunk(index++, chunk.subarray(0, fill));
    await confirmOrigin(origin, request);
  } catch (err) {
    if (opts.signal.aborted) throw new PublicError(grpc.status.CANCELLED, "cancelled");
    if (!(err instanceof OriginError)) throw err;
    if (err.kind === "changed") {
      throw failedPrecondition(`origin ${origin.url} changed while ${job.name} was being hashed: ${err.message}`);
    }
    const why = `reading ${job.name} from origin ${origin.url} failed: ${err.message}`;
    throw err.kind === "failed" ? unavailable(why) : failedPrecondition(why);
  }
}
