import { randomBytes } from "node:crypto";
import { SignedTicket, TicketBody, type ChunkRange, type PublicKey } from "./gen/pdtp/v1/common.js";
import { verifySignature, verifyWithKey, type Signer } from "./keys.js";

/** Why a ticket was refused; every value maps to HTTP 403 on the data plane. */
export type TicketFault =
  "malformed" | "bad-signature" | "expired" | "wrong-server" | "wrong-stream" | "wrong-range" | "wrong-fetcher";

export class TicketError extends Error {
  override name = "TicketError";
  constructor(
    readonly fault: TicketFault,
    message: string,
  ) {
    super(message);
  }
}

export interface TicketGrant {
  streamId: string;
  range: ChunkRange;
  fetcherId: string;
  serverId: string;
  expiresMs: number;
  /** The fetcher's session key; only the holder of its private half can use the ticket. */
  fetcherKey?: Uint8Array;
}

export function issueTicket(grant: TicketGrant, signer: Signer): SignedTicket {
  const body = Buffer.from(
    TicketBody.encode({ ...grant, fetcherKey: Buffer.from(grant.fetcherKey ?? []), nonce: randomBytes(8) }).finish(),
  );
  return { body, signature: signer.sign(body), keyId: signer.keyId };
}

/** Ticket as carried in the x-pdtp-ticket header: base64url of the encoded SignedTicket. */
export function encodeTicket(ticket: SignedTicket): string {
  return Buffer.from(SignedTicket.encode(ticket).finish()).toString("base64url");
}

export function decodeTicket(header: string): SignedTicket {
  if (header.length === 0 || header.length > 2048 || !/^[A-Za-z0-9_-]+$/.test(header)) {
    throw new TicketError("malformed", "ticket header is not base64url");
  }
  try {
    return SignedTicket.decode(Buffer.from(header, "base64url"));
  } catch {
    throw new TicketError("malformed", "ticket does not decode");
  }
}

/** Header carrying the fetcher's proof (base64url of a 64-byte Ed25519 signature). */
export const PROOF_HEADER = "x-pdtp-proof";

const PROOF_TAG = Buffer.from("pdtp-v1-fetch\0");

/** What a fetcher signs for one request: a domain tag, the ticket's signature and the requested range. */
function proofMessage(ticket: SignedTicket, range: ChunkRange): Buffer {
  const span = Buffer.alloc(16);
  span.writeBigUInt64BE(BigInt(range.first), 0);
  span.writeBigUInt64BE(BigInt(range.last), 8);
  return Buffer.concat([PROOF_TAG, ticket.signature, span]);
}

/**
 * The fetcher's proof for requesting `range` with `ticket`: its session key's
 * signature, so that a ticket copied by anyone else is refused. Bound to the
 * ticket (and so to its expiry) and to the range.
 */
export function fetchProof(ticket: SignedTicket, range: ChunkRange, sessionKey: Signer): string {
  return sessionKey.sign(proofMessage(ticket, range)).toString("base64url");
}

export interface TicketExpectation {
  /** The serving peer's own id. */
  serverId: string;
  streamId: string;
  /** The range requested; it must lie inside the ticket's range. */
  range: ChunkRange;
  nowMs: number;
  /** The request's PROOF_HEADER, if any; required when the ticket names a fetcher key. */
  proof?: string;
}

/** Checks signature, expiry, server, stream, range and the fetcher's proof; returns the body or throws TicketError. */
export function checkTicket(ticket: SignedTicket, keys: readonly PublicKey[], want: TicketExpectation): TicketBody {
  if (!verifySignature(keys, ticket.keyId, ticket.body, ticket.signature)) {
    throw new TicketError("bad-signature", "ticket signature does not verify");
  }
  let body: TicketBody;
  try {
    body = TicketBody.decode(ticket.body);
  } catch {
    throw new TicketError("malformed", "ticket body does not decode");
  }
  if (body.expiresMs <= want.nowMs) throw new TicketError("expired", "ticket expired");
  if (body.serverId !== want.serverId) throw new TicketError("wrong-server", "ticket is for another server");
  if (body.streamId !== want.streamId) throw new TicketError("wrong-stream", "ticket is for another stream");
  const r = body.range;
  if (!r || want.range.first < r.first || want.range.last > r.last) {
    throw new TicketError("wrong-range", "requested range is outside the ticket");
  }
  if (body.fetcherKey.length > 0) {
    const proof = want.proof;
    if (!proof) throw new TicketError("wrong-fetcher", "request carries no fetcher proof");
    const sig = proof.length === 86 && /^[A-Za-z0-9_-]+$/.test(proof) ? Buffer.from(proof, "base64url") : undefined;
    if (!sig || !verifyWithKey(body.fetcherKey, proofMessage(ticket, want.range), sig)) {
      throw new TicketError("wrong-fetcher", "ticket is for another fetcher");
    }
  }
  return body;
}
