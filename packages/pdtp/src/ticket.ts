import { randomBytes } from "node:crypto";
import { SignedTicket, TicketBody, type ChunkRange, type PublicKey } from "./gen/pdtp/v1/common.js";
import { verifySignature, type Signer } from "./keys.js";

/** Why a ticket was refused; every value maps to HTTP 403 on the data plane. */
export type TicketFault = "malformed" | "bad-signature" | "expired" | "wrong-server" | "wrong-stream" | "wrong-range";

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
}

export function issueTicket(grant: TicketGrant, signer: Signer): SignedTicket {
  const body = Buffer.from(TicketBody.encode({ ...grant, nonce: randomBytes(8) }).finish());
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

export interface TicketExpectation {
  /** The serving peer's own id. */
  serverId: string;
  streamId: string;
  /** The range requested; it must lie inside the ticket's range. */
  range: ChunkRange;
  nowMs: number;
}

/** Checks signature, expiry, server, stream and range; returns the body or throws TicketError. */
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
  return body;
}
