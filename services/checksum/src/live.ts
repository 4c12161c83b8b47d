import * as grpc from "@grpc/grpc-js";
import { fetchChunks, FetchError, type DataPlaneAgent } from "@distribustream/data-plane";
import {
  LiveDescriptorError,
  MalformedMessage,
  MAX_CHUNK_SIZE,
  MAX_LIVE_SEQ,
  openLiveDescriptor,
  sha256,
  signLiveAttestation,
  signLiveDescriptor,
  startsAtRandomAccess,
  streamNameProblem,
  type AttestLiveChunksRequest,
  type LiveChunkClaim,
  type LiveDescriptorBody,
  type SignedLiveAttestation,
  type SignedLiveDescriptor,
  type SignedTicket,
  type Signer,
} from "@distribustream/pdtp";
import { failedPrecondition, invalidArgument, PublicError, unavailable } from "@distribustream/runtime";
import { parseSourceUrl } from "./request.js";

/** Most chunks one AttestLiveChunks call may claim. */
export const MAX_ATTEST_CHUNKS = 256;
/** A claimed timestamp may be this far ahead of this service's clock (skew between hosts). */
export const MAX_CLAIM_AHEAD_MS = 5_000;
/** A chunk claimed longer ago than this is refused: live data that old is of no use to a viewer. */
export const MAX_CLAIM_AGE_MS = 60_000;

/** Signs a live descriptor; its attestation key is this service's key. INVALID_ARGUMENT for bad fields. */
export function signDescriptor(req: LiveDescriptorBody | MalformedMessage, signer: Signer): SignedLiveDescriptor {
  if (req instanceof MalformedMessage) throw invalidArgument(`malformed live descriptor: ${req.reason}`);
  const problem = streamNameProblem(req.name);
  if (problem) throw invalidArgument(`name: ${problem}`);
  if (!req.streamId || req.streamId.length > 256) throw invalidArgument("stream_id is missing or too long");
  const signed = signLiveDescriptor({ ...req, attestationKeyId: signer.keyId }, signer);
  try {
    openLiveDescriptor(signed, [signer.publicKey]);
  } catch (err) {
    if (err instanceof LiveDescriptorError) throw invalidArgument(err.message);
    throw err;
  }
  return signed;
}

/** An AttestLiveChunks request that passed validation. */
export interface AttestJob {
  streamId: string;
  source: { host: string; port: number; url: string };
  ticket: SignedTicket;
  chunks: LiveChunkClaim[];
}

/** Validates a request against this service's clock; throws INVALID_ARGUMENT naming what is wrong. */
export function validateAttest(req: AttestLiveChunksRequest | MalformedMessage, nowMs: number): AttestJob {
  if (req instanceof MalformedMessage) throw invalidArgument(`malformed AttestLiveChunks request: ${req.reason}`);
  if (!req.streamId || req.streamId.length > 256) throw invalidArgument("stream_id is missing or too long");
  if (!req.ticket || req.ticket.body.length === 0) throw invalidArgument("ticket is missing");
  const n = req.chunks.length;
  if (n === 0 || n > MAX_ATTEST_CHUNKS)
    throw invalidArgument(`${n} chunks claimed, expected 1 to ${MAX_ATTEST_CHUNKS}`);
  const max = req.maxChunkBytes;
  if (!(max > 0 && max <= MAX_CHUNK_SIZE))
    throw invalidArgument(`max_chunk_bytes ${max} is outside [1, ${MAX_CHUNK_SIZE}]`);
  let prev: LiveChunkClaim | undefined;
  for (const c of req.chunks) {
    if (!Number.isSafeInteger(c.seq) || c.seq > MAX_LIVE_SEQ)
      throw invalidArgument(`sequence number ${c.seq} is invalid`);
    if (prev && c.seq !== prev.seq + 1) throw invalidArgument(`chunk ${c.seq} does not follow chunk ${prev.seq}`);
    if (!(c.length > 0 && c.length <= max)) {
      throw invalidArgument(`chunk ${c.seq} claims ${c.length} bytes, outside [1, ${max}]`);
    }
    if (c.timestampMs > nowMs + MAX_CLAIM_AHEAD_MS) {
      throw invalidArgument(`chunk ${c.seq} is dated ${c.timestampMs - nowMs} ms ahead of this service's clock`);
    }
    if (c.timestampMs < nowMs - MAX_CLAIM_AGE_MS) {
      throw invalidArgument(`chunk ${c.seq} is dated ${nowMs - c.timestampMs} ms ago, too old to attest`);
    }
    if (prev && c.timestampMs < prev.timestampMs)
      throw invalidArgument(`chunk ${c.seq} is dated before chunk ${prev.seq}`);
    prev = c;
  }
  return { streamId: req.streamId, source: parseSourceUrl(req.sourceUrl), ticket: req.ticket, chunks: req.chunks };
}

export interface AttestOptions {
  signer: Signer;
  agent: DataPlaneAgent;
  signal: AbortSignal;
  timeoutMs?: number | undefined;
  /** Called with the bytes of each chunk hashed (metrics). */
  onBytes?: (n: number) => void;
  /** A chunk claimed to begin at a random access point whose bytes do not: attested without it. */
  onFalseRandomAccess?: (seq: number) => void;
}

/**
 * Reads the claimed chunks from the seeder's data plane (the body is split
 * by the claimed lengths: a seeder that serves other lengths fails the
 * call), hashes each once as it arrives and signs its attestation. A chunk
 * claimed to begin at a random access point is attested so only when its own
 * bytes show it; otherwise it is attested without the flag (its bytes are
 * still the seeder's stream, only no place for a viewer to start).
 */
export async function attestChunks(job: AttestJob, opts: AttestOptions): Promise<SignedLiveAttestation[]> {
  const out: SignedLiveAttestation[] = [];
  const first = job.chunks[0]!.seq;
  try {
    await fetchChunks({
      host: job.source.host,
      port: job.source.port,
      streamId: job.streamId,
      range: { first, last: first + job.chunks.length - 1 },
      ticket: job.ticket,
      layout: { lengths: job.chunks.map((c) => c.length) },
      signal: opts.signal,
      agent: opts.agent,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      onChunk: (seq, data) => {
        const claim = job.chunks[seq - first]!;
        opts.onBytes?.(data.length);
        const randomAccess = claim.randomAccess && startsAtRandomAccess(data);
        if (claim.randomAccess && !randomAccess) opts.onFalseRandomAccess?.(seq);
        out.push(
          signLiveAttestation(
            {
              streamId: job.streamId,
              seq,
              timestampMs: claim.timestampMs,
              length: data.length,
              sha256: sha256(data),
              randomAccess,
            },
            opts.signer,
          ),
        );
      },
    });
  } catch (err) {
    if (opts.signal.aborted) throw new PublicError(grpc.status.CANCELLED, "cancelled");
    if (err instanceof FetchError) {
      const why = `reading live chunks ${first}+${job.chunks.length} of ${job.streamId} from ${job.source.url} failed: ${err.message}`;
      if (err.status === 400) throw new PublicError(grpc.status.INTERNAL, why);
      throw err.kind === "refused" ? failedPrecondition(why) : unavailable(why);
    }
    throw err;
  }
  return out;
}
