import * as grpc from "@grpc/grpc-js";
import {
  issueTicket,
  MAX_LIVE_SEQ,
  type ChecksumClient,
  type LiveChunkClaim,
  type SignedLiveAttestation,
  type Signer,
} from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";

/** Most claims one AttestLiveChunks call carries (the checksum service's limit). */
export const ATTEST_BATCH = 256;
/** Claims waiting beyond this are refused: the checksum service cannot keep up with the source. */
export const MAX_WAITING_CLAIMS = 1024;
/** Longest an attestation call may take: live chunks older than this are of no use. */
const ATTEST_TIMEOUT_MS = 10_000;
const TICKET_TTL_MS = 60_000;

export interface LiveIngestOptions {
  streamId: string;
  checksum: ChecksumClient;
  /** The key that signs tickets now (keys rotate). */
  ticketSigner: () => Signer;
  /** The stream's chunk policy bound. */
  maxChunkBytes: number;
  /** The seeder's data-plane base URL and its peer id (the checksum service's tickets name it). */
  source: { url: string; peerId: string };
  /** Sequence number the next claim must have (the stream's edge + 1). */
  nextSeq: number;
  /** Source time of the edge chunk: claims must not go back in time. */
  edgeTimestampMs: number;
  /** Attested chunks, in sequence order; the next call waits for this to settle. */
  onAttested: (attestations: SignedLiveAttestation[], claims: LiveChunkClaim[]) => Promise<void>;
  /** A batch that could not be attested: its chunks are lost to viewers (they skip them). */
  onLost: (claims: LiveChunkClaim[], reason: string) => void;
  log: Logger;
}

/**
 * The path of a live stream's chunks from its seeder's claims to signed
 * attestations: one AttestLiveChunks call in flight per stream (so sequence
 * numbers and timestamps stay in order), with every claim that arrived
 * meanwhile in the next call, so batches grow with the load instead of the
 * calls. A claim is checked here first against what came before it.
 */
export class LiveIngest {
  private waiting: LiveChunkClaim[] = [];
  private running = false;
  private closed = false;
  private finishing = false;
  private idle: (() => void) | undefined;
  private nextSeq: number;
  private lastTs: number;

  constructor(private readonly o: LiveIngestOptions) {
    this.nextSeq = o.nextSeq;
    this.lastTs = o.edgeTimestampMs;
  }

  /** Sequence number the next claim must have. */
  get expected(): number {
    return this.nextSeq;
  }

  /**
   * Queues the seeder's claims; resolves a problem (and queues nothing) when
   * they do not follow what came before: not the next sequence number, dated
   * before the previous chunk, too long, or too many waiting.
   */
  claim(chunks: readonly LiveChunkClaim[]): string | undefined {
    if (this.closed || this.finishing) return "the stream is no longer live";
    if (chunks.length === 0) return undefined;
    if (this.waiting.length + chunks.length > MAX_WAITING_CLAIMS) {
      return `${this.waiting.length} chunks are still waiting to be attested`;
    }
    let seq = this.nextSeq;
    let ts = this.lastTs;
    for (const c of chunks) {
      if (c.seq !== seq) return `chunk ${c.seq} claimed where chunk ${seq} was expected`;
      if (!Number.isSafeInteger(c.seq) || c.seq > MAX_LIVE_SEQ) {
        return `sequence number ${c.seq} is beyond the last one, 2^53 - 2`;
      }
      if (!(c.length > 0 && c.length <= this.o.maxChunkBytes)) {
        return `chunk ${c.seq} claims ${c.length} bytes, outside [1, ${this.o.maxChunkBytes}]`;
      }
      if (c.timestampMs < ts) return `chunk ${c.seq} is dated before chunk ${c.seq - 1}`;
      seq++;
      ts = c.timestampMs;
    }
    this.nextSeq = seq;
    this.lastTs = ts;
    this.waiting.push(...chunks);
    this.pump();
    return undefined;
  }

  /** Stops: claims waiting are dropped, the call in flight finishes. */
  close(): void {
    this.closed = true;
    this.waiting = [];
    this.settle();
  }

  /**
   * Takes no more claims and resolves once those queued are attested (or
   * lost) and their onAttested settled: the broadcast ended.
   */
  finish(): Promise<void> {
    this.finishing = true;
    if (!this.running && (this.closed || this.waiting.length === 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.idle;
      this.idle = () => {
        before?.();
        resolve();
      };
    });
  }

  private settle(): void {
    if (this.running || (!this.closed && this.waiting.length > 0)) return;
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
  }

  private pump(): void {
    if (this.running || this.closed || this.waiting.length === 0) return this.settle();
    this.running = true;
    const batch = this.waiting.splice(0, ATTEST_BATCH);
    this.attest(batch)
      .then(
        (atts) => this.o.onAttested(atts, batch),
        (err: unknown) => {
          const reason = reasonOf(err);
          this.o.log.warn(
            { streamId: this.o.streamId, first: batch[0]!.seq, chunks: batch.length, reason },
            "live chunks not attested",
          );
          this.o.onLost(batch, reason);
        },
      )
      .catch((err: unknown) => this.o.log.error({ err, streamId: this.o.streamId }, "storing live attestations failed"))
      .finally(() => {
        this.running = false;
        this.pump();
      });
  }

  private attest(batch: LiveChunkClaim[]): Promise<SignedLiveAttestation[]> {
    const first = batch[0]!.seq;
    const last = batch[batch.length - 1]!.seq;
    const ticket = issueTicket(
      {
        streamId: this.o.streamId,
        range: { first, last },
        fetcherId: "checksum",
        serverId: this.o.source.peerId,
        expiresMs: Date.now() + TICKET_TTL_MS,
      },
      this.o.ticketSigner(),
    );
    return new Promise((resolve, reject) =>
      this.o.checksum.attestLiveChunks(
        {
          streamId: this.o.streamId,
          sourceUrl: this.o.source.url,
          ticket,
          chunks: batch,
          maxChunkBytes: this.o.maxChunkBytes,
        },
        new grpc.Metadata(),
        { deadline: Date.now() + ATTEST_TIMEOUT_MS },
        (err, res) => {
          if (err) return reject(err);
          if (!res || res.attestations.length !== batch.length) {
            return reject(
              new Error(`the checksum service attested ${res?.attestations.length ?? 0} of ${batch.length} chunks`),
            );
          }
          resolve(res.attestations);
        },
      ),
    );
  }
}

/** A reason safe to log and to count: the checksum service's own answer, or the call's failure. */
function reasonOf(err: unknown): string {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number") return `${grpc.status[e.code] ?? e.code}: ${e.details ?? ""}`;
  return (err as Error).message;
}
