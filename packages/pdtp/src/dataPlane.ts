import { createHash } from "node:crypto";
import type { ChunkRange } from "./gen/pdtp/v1/common.js";

/**
 * The peer data plane: plain HTTP/1.1 with keep-alive.
 *   GET /pdtp/v1/streams/{streamId}/chunks/{first}-{last}
 *   x-pdtp-ticket: base64url(SignedTicket)
 *   x-pdtp-proof: base64url(fetcher's signature; see fetchProof in ticket.ts)
 * Answers 200 with the bytes of the chunks in order, 403 for a missing or bad
 * ticket, 404 for an unknown stream, 416 for a range the peer does not hold.
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

export type ParsedChunksPath = { ok: true; streamId: string; range: ChunkRange } | { ok: false; error: string };

/** Parses a data-plane request path; never throws. */
export function parseChunksPath(path: string): ParsedChunksPath {
  const q = path.indexOf("?");
  const p = q >= 0 ? path.slice(0, q) : path;
  if (!p.startsWith(CHUNKS_PREFIX)) return { ok: false, error: "unknown path" };
  const parts = p.slice(CHUNKS_PREFIX.length).split("/");
  if (parts.length !== 3 || parts[1] !== "chunks") return { ok: false, error: "unknown path" };
  const [streamId, , span] = parts as [string, string, string];
  if (!isStreamId(streamId)) return { ok: false, error: "bad stream id" };
  const m = /^(\d{1,15})-(\d{1,15})$/.exec(span);
  if (!m) return { ok: false, error: "bad chunk range" };
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first > last) return { ok: false, error: "bad chunk range" };
  return { ok: true, streamId, range: { first, last } };
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
