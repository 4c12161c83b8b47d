import { createHash } from "node:crypto";
import {
  LiveAttestationBody,
  LiveDescriptorBody,
  type PublicKey,
  type SignedLiveAttestation,
  type SignedLiveDescriptor,
} from "./gen/pdtp/v1/common.js";
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "./chunks.js";
import { verifySignature, type Signer } from "./keys.js";

/**
 * Highest sequence number a live stream may reach: 2^53 - 2. The protocol's
 * numbers are 64-bit and never wrap; this implementation keeps them in
 * JavaScript numbers, exact up to 2^53 - 1, and the number after the last
 * chunk must be exact too (a viewer's position past it, a seeder's next
 * sequence number). At 100 chunks a second that is 2.8 million years of
 * media. A source that reaches it ends its broadcast with a clear message.
 */
export const MAX_LIVE_SEQ = Number.MAX_SAFE_INTEGER - 1;
/** Longest a chunk policy may wait before cutting a chunk. */
export const MAX_CHUNK_MS = 10_000;
/** Most chunks a live window may keep. */
export const MAX_WINDOW_CHUNKS = 1 << 20;

/** Why a live chunk (or its attestation) was refused; each reason is counted in metrics. */
export type LiveRejection =
  | "bad-signature" // the attestation does not verify with the stream's attestation key
  | "other-stream" // an attestation of another stream
  | "outside-window" // a sequence number below the window or beyond the edge ahead of the swarm
  | "stale" // a timestamp older than the window allows, or ahead of the clock
  | "replayed" // an older chunk than the one asked for, or one already accepted
  | "reordered" // a later chunk than the one asked for, or timestamps out of sequence order
  | "bad-data"; // bytes whose length or SHA-256 differ from the attestation

export const LIVE_REJECTIONS: readonly LiveRejection[] = [
  "bad-signature",
  "other-stream",
  "outside-window",
  "stale",
  "replayed",
  "reordered",
  "bad-data",
];

export class LiveDescriptorError extends Error {
  override name = "LiveDescriptorError";
}

/** A live chunk refused, with the reason counted in metrics. */
export class LiveChunkError extends Error {
  override name = "LiveChunkError";
  constructor(
    readonly reason: LiveRejection,
    message: string,
  ) {
    super(message);
  }
}

/** Signs a live descriptor with the network key. */
export function signLiveDescriptor(body: LiveDescriptorBody, signer: Signer): SignedLiveDescriptor {
  const bytes = Buffer.from(LiveDescriptorBody.encode(body).finish());
  return { body: bytes, signature: signer.sign(bytes), keyId: signer.keyId };
}

/** Signs one live chunk's attestation with the attestation key. */
export function signLiveAttestation(body: LiveAttestationBody, signer: Signer): SignedLiveAttestation {
  const bytes = Buffer.from(LiveAttestationBody.encode(body).finish());
  return { body: bytes, signature: signer.sign(bytes), keyId: signer.keyId };
}

/** SHA-256 of a chunk, as an attestation names it. */
export function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

/**
 * Verifies and decodes a signed live descriptor; throws LiveDescriptorError
 * saying what is wrong (signature, numbers out of bounds).
 */
export function openLiveDescriptor(signed: SignedLiveDescriptor, trusted: readonly PublicKey[]): LiveDescriptorBody {
  if (!verifySignature(trusted, signed.keyId, signed.body, signed.signature)) {
    throw new LiveDescriptorError(
      trusted.some((k) => k.keyId === signed.keyId)
        ? "live descriptor signature does not verify"
        : `live descriptor signed by unknown key ${signed.keyId || "(none)"}`,
    );
  }
  let body: LiveDescriptorBody;
  try {
    body = LiveDescriptorBody.decode(signed.body);
  } catch (err) {
    throw new LiveDescriptorError(`live descriptor does not decode: ${(err as Error).message}`);
  }
  if (body.maxChunkBytes < MIN_CHUNK_SIZE || body.maxChunkBytes > MAX_CHUNK_SIZE) {
    throw new LiveDescriptorError(`live descriptor chunk size ${body.maxChunkBytes} out of bounds`);
  }
  if (body.maxChunkMs < 1 || body.maxChunkMs > MAX_CHUNK_MS) {
    throw new LiveDescriptorError(`live descriptor chunk time ${body.maxChunkMs} ms out of bounds`);
  }
  if (body.windowChunks < 2 || body.windowChunks > MAX_WINDOW_CHUNKS) {
    throw new LiveDescriptorError(`live descriptor window of ${body.windowChunks} chunks out of bounds`);
  }
  if (!Number.isSafeInteger(body.firstSeq) || body.firstSeq < 0 || body.firstSeq > MAX_LIVE_SEQ) {
    throw new LiveDescriptorError(`live descriptor first sequence number ${body.firstSeq} out of bounds`);
  }
  if (!body.attestationKeyId) throw new LiveDescriptorError("live descriptor names no attestation key");
  return body;
}

/** A verified attestation: what the bytes of chunk `seq` must be. */
export interface LiveAttestation {
  readonly seq: number;
  readonly timestampMs: number;
  readonly length: number;
  readonly sha256: Buffer;
  /** The chunk begins at an MPEG-TS random access point: an output can start with it. */
  readonly randomAccess: boolean;
  /** The signed form, served on to other peers with the chunk. */
  readonly signed: SignedLiveAttestation;
}

export interface LiveVerifierOptions {
  /** Keys the attestation may be signed with (the one the descriptor names must be among them). */
  trusted: readonly PublicKey[];
  /**
   * How old a chunk's timestamp may be when it arrives, in ms: older is
   * "stale". Default: the window's length in time at the descriptor's chunk
   * policy, plus a minute of slack for a stalled viewer catching up.
   */
  maxAgeMs?: number;
  /** How far ahead of this clock a timestamp may be (clock skew between hosts); default 30 s. */
  maxSkewMs?: number;
  /** The clock; Date.now by default. */
  now?: () => number;
}

const DEFAULT_SKEW_MS = 30_000;
const STALE_SLACK_MS = 60_000;

/**
 * What one peer knows of one live stream's chunks: the window it accepts and
 * the chunks it accepted. It rejects, with a reason each, a bad signature, an
 * attestation of another stream, a sequence number outside the window, a
 * stale timestamp, and a replayed or reordered chunk; and bytes that differ
 * from their attestation. Memory: one small record per accepted chunk in the
 * window (call `advance` as the window moves).
 */
export class LiveVerifier {
  private readonly key: PublicKey;
  private readonly maxAgeMs: number;
  private readonly maxSkewMs: number;
  private readonly now: () => number;
  /** Lowest sequence number still accepted: everything below was played, skipped or dropped. */
  private lowSeq: number;
  /** Highest sequence number the swarm announced (the live edge as this peer knows it). */
  private edgeSeq: number;
  /** Timestamps of accepted chunks by sequence number, inside [lowSeq, edgeSeq]. */
  private readonly accepted = new Map<number, number>();

  constructor(
    readonly descriptor: LiveDescriptorBody,
    opts: LiveVerifierOptions,
  ) {
    const key = opts.trusted.find((k) => k.keyId === descriptor.attestationKeyId);
    if (!key) throw new LiveDescriptorError(`attestation key ${descriptor.attestationKeyId} is not a trusted key`);
    this.key = key;
    this.maxAgeMs = opts.maxAgeMs ?? descriptor.windowChunks * descriptor.maxChunkMs + STALE_SLACK_MS;
    this.maxSkewMs = opts.maxSkewMs ?? DEFAULT_SKEW_MS;
    this.now = opts.now ?? Date.now;
    this.lowSeq = descriptor.firstSeq;
    this.edgeSeq = descriptor.firstSeq;
  }

  /** The window this peer accepts: [low, edge]. */
  get window(): { low: number; edge: number } {
    return { low: this.lowSeq, edge: this.edgeSeq };
  }

  /**
   * Moves the window: `edge` is the newest sequence number the tracker
   * announced, `low` the lowest this peer still wants (its play position, or
   * the swarm's low bound). Neither goes back.
   */
  advance(edge: number, low?: number): void {
    if (edge > this.edgeSeq) this.edgeSeq = Math.min(edge, MAX_LIVE_SEQ);
    const floor = Math.max(low ?? this.lowSeq, this.edgeSeq - this.descriptor.windowChunks + 1);
    if (floor <= this.lowSeq) return;
    this.lowSeq = Math.min(floor, this.edgeSeq);
    for (const seq of this.accepted.keys()) if (seq < this.lowSeq) this.accepted.delete(seq);
  }

  /**
   * Verifies the attestation that came for chunk `expected`; throws
   * LiveChunkError with the reason. Does not record it: `accept` does, once
   * the bytes match.
   */
  open(signed: SignedLiveAttestation, expected: number): LiveAttestation {
    if (signed.keyId !== this.key.keyId || !verifySignature([this.key], signed.keyId, signed.body, signed.signature)) {
      throw new LiveChunkError("bad-signature", `attestation of chunk ${expected} does not verify`);
    }
    let body: LiveAttestationBody;
    try {
      body = LiveAttestationBody.decode(signed.body);
    } catch (err) {
      // Signed by the attestation key, so its numbers are the only thing that can be wrong:
      // a sequence number or timestamp beyond 2^53 - 1.
      throw new LiveChunkError("outside-window", `attestation of chunk ${expected}: ${(err as Error).message}`);
    }
    if (body.streamId !== this.descriptor.streamId) {
      throw new LiveChunkError(
        "other-stream",
        `attestation of chunk ${expected} belongs to stream ${body.streamId.slice(0, 64)}, not ${this.descriptor.streamId}`,
      );
    }
    const seq = body.seq;
    if (!Number.isSafeInteger(seq) || seq < this.descriptor.firstSeq || seq > MAX_LIVE_SEQ) {
      throw new LiveChunkError("outside-window", `attestation of chunk ${expected} names chunk ${seq}`);
    }
    if (seq < expected) throw new LiveChunkError("replayed", `chunk ${seq} came in place of chunk ${expected}`);
    if (seq > expected) throw new LiveChunkError("reordered", `chunk ${seq} came in place of chunk ${expected}`);
    if (seq < this.lowSeq) {
      throw new LiveChunkError("outside-window", `chunk ${seq} is below the window [${this.lowSeq}, ${this.edgeSeq}]`);
    }
    if (seq > this.edgeSeq + this.descriptor.windowChunks) {
      throw new LiveChunkError("outside-window", `chunk ${seq} is beyond the live edge ${this.edgeSeq}`);
    }
    if (this.accepted.has(seq)) throw new LiveChunkError("replayed", `chunk ${seq} was already accepted`);
    const now = this.now();
    if (body.timestampMs < now - this.maxAgeMs) {
      throw new LiveChunkError("stale", `chunk ${seq} is ${now - body.timestampMs} ms old`);
    }
    if (body.timestampMs > now + this.maxSkewMs) {
      throw new LiveChunkError("stale", `chunk ${seq} is dated ${body.timestampMs - now} ms ahead of this clock`);
    }
    this.checkOrder(seq, body.timestampMs);
    if (body.length > this.descriptor.maxChunkBytes || body.sha256.length !== 32) {
      throw new LiveChunkError("bad-data", `attestation of chunk ${seq} gives length ${body.length}`);
    }
    return {
      seq,
      timestampMs: body.timestampMs,
      length: body.length,
      sha256: Buffer.from(body.sha256),
      randomAccess: body.randomAccess,
      signed,
    };
  }

  /**
   * Records chunk `att.seq` as accepted when `data` is what its attestation
   * says; throws LiveChunkError("bad-data") otherwise. `digest`: the bytes'
   * SHA-256 when the caller already hashed them (hash once).
   */
  accept(att: LiveAttestation, data: Uint8Array, digest: Uint8Array = sha256(data)): void {
    if (data.length !== att.length) {
      throw new LiveChunkError("bad-data", `chunk ${att.seq} has ${data.length} bytes, its attestation ${att.length}`);
    }
    if (!att.sha256.equals(digest))
      throw new LiveChunkError("bad-data", `chunk ${att.seq} does not match its attestation`);
    this.checkOrder(att.seq, att.timestampMs);
    if (att.seq < this.lowSeq) return; // the window moved on while it was in flight: nothing to keep
    this.accepted.set(att.seq, att.timestampMs);
    if (att.seq > this.edgeSeq) this.edgeSeq = att.seq;
  }

  /** Whether chunk `seq` was accepted and is still in the window. */
  has(seq: number): boolean {
    return this.accepted.has(seq);
  }

  /** Timestamps must not go back as sequence numbers grow: a chunk dated out of order was moved. */
  private checkOrder(seq: number, ts: number): void {
    const before = this.accepted.get(seq - 1);
    const after = this.accepted.get(seq + 1);
    if ((before !== undefined && ts < before) || (after !== undefined && ts > after)) {
      throw new LiveChunkError("reordered", `chunk ${seq} is dated out of sequence order`);
    }
  }
}
