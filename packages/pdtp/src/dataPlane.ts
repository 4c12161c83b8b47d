import { createHash } from "node:crypto";
import { SignedLiveAttestation, type ChunkRange } from "./gen/pdtp/v1/common.js";

/**
 * The peer data plane: plain HTTP/1.1 with keep-alive.
 *   GET /pdtp/v1/streams/{streamId}/chunks/{first}-{last}
 *   GET /pdtp/v1/streams/{streamId}/live/{first}-{last}
 *   x-pdtp-ticket: base64url(SignedTicket)
 *   x-pdtp-proof: base64url(fetcher's signature; see fetchProof in ticket.ts)
 * Answers 200 with the chunks in order, 403 for a missing or bad ticket, 404
 * for an unknown stream (and /live/ for a stream that is not live), 416 for a
 * range the peer does not hold. Tickets name stream and range alike on both.
 *
 * /chunks/ sends the chunks' bytes back to back. /live/ sends one frame per
 * chunk, so that each live chunk travels with the checksum service's
 * signature over it:
 *   u16 big-endian n | n bytes: SignedLiveAttestation | the chunk's bytes
 * where 1 <= n <= MAX_ATTESTATION_BYTES and the chunk's length is the one its
 * attestation gives. A chunk numbered beyond 2^53 - 1 cannot be named.
 */
export const TICKET_HEADER = "x-pdtp-ticket";
export const CHUNKS_PREFIX = "/pdtp/v1/streams/";

const STREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;

export function isStreamId(s: string): boolean {
  return STREAM_ID.test(s);
}

export function chunksPath(streamId: string, range: ChunkRange): string {
  return `${CHUNKS_PREFIX}${streamId}/chunks/${range.first}-${range.last}`;
}

/** Path of a range of live chunks, each framed with its attestation. */
export function liveChunksPath(streamId: string, range: ChunkRange): string {
  return `${CHUNKS_PREFIX}${streamId}/live/${range.first}-${range.last}`;
}

/** Longest encoded SignedLiveAttestation a live frame may carry. */
export const MAX_ATTESTATION_BYTES = 512;
/** Bytes of a live frame's length prefix. */
export const LIVE_FRAME_PREFIX_BYTES = 2;

/**
 * The start of a live chunk's frame: the length prefix and the encoded
 * attestation. Made once per chunk and kept beside its bytes; a /live/ answer
 * is these heads and the chunks' bytes, interleaved. Throws RangeError for an
 * attestation over MAX_ATTESTATION_BYTES (or empty) that no peer would take.
 */
export function liveFrameHead(signed: SignedLiveAttestation): Buffer {
  const encoded = SignedLiveAttestation.encode(signed).finish();
  if (encoded.length < 1 || encoded.length > MAX_ATTESTATION_BYTES) {
    throw new RangeError(`attestation of ${encoded.length} bytes, expected 1 to ${MAX_ATTESTATION_BYTES}`);
  }
  const head = Buffer.allocUnsafe(LIVE_FRAME_PREFIX_BYTES + encoded.length);
  head.writeUInt16BE(encoded.length, 0);
  head.set(encoded, LIVE_FRAME_PREFIX_BYTES);
  return head;
}

export type ParsedChunksPath =
  { ok: true; kind: "chunks" | "live"; streamId: string; range: ChunkRange } | { ok: false; error: string };

/** Parses a data-plane request path (/chunks/ or /live/); never throws. */
export function parseChunksPath(path: string): ParsedChunksPath {
  const q = path.indexOf("?");
  const p = q >= 0 ? path.slice(0, q) : path;
  if (!p.startsWith(CHUNKS_PREFIX)) return { ok: false, error: "unknown path" };
  const parts = p.slice(CHUNKS_PREFIX.length).split("/");
  if (parts.length !== 3 || (parts[1] !== "chunks" && parts[1] !== "live")) return { ok: false, error: "unknown path" };
  const [streamId, kind, span] = parts as [string, "chunks" | "live", string];
  if (!isStreamId(streamId)) return { ok: false, error: "bad stream id" };
  // 16 digits reach 2^53 - 1; what is beyond cannot be held exactly in a number.
  const m = /^(\d{1,16})-(\d{1,16})$/.exec(span);
  if (!m) return { ok: false, error: "bad chunk range" };
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first > last) {
    return { ok: false, error: "bad chunk range" };
  }
  return { ok: true, kind, streamId, range: { first, last } };
}

/**
 * Stream id of one version of a published file: base64url of the first 16
 * bytes of SHA-256 over name, size and version. Seeder and tracker derive it
 * independently, so a restarted seeder with an unchanged file rejoins the
 * same swarm and peers keep what they hold.
 */
export function streamIdFor(name: string, size: number, version: number): string {
  return createHash("sha256").update(`${name}\0${size}\0${version}`).digest().subarray(0, 16).toString("base64url");
}
