import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import type { Logger } from "pino";

/**
 * An error whose message is safe to show the caller, with the gRPC status to
 * send. A lone UTF-16 surrogate in the message (a peer's string quoted and
 * cut inside a character) becomes U+FFFD: grpc-js percent-encodes the status
 * message with encodeURI, which throws on one, inside the server.
 */
export class PublicError extends Error {
  override name = "PublicError";
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message.replace(/\p{Surrogate}/gu, "\uFFFD"));
  }
}

export const invalidArgument = (msg: string) => new PublicError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new PublicError(status.NOT_FOUND, msg);
export const failedPrecondition = (msg: string) => new PublicError(status.FAILED_PRECONDITION, msg);
export const resourceExhausted = (msg: string) => new PublicError(status.RESOURCE_EXHAUSTED, msg);
export const unavailable = (msg: string) => new PublicError(status.UNAVAILABLE, msg);

/**
 * The one mapping from a thrown value to what a gRPC caller sees: a PublicError
 * keeps its code and message; anything else is logged in full and reported as
 * INTERNAL with no detail.
 */
export function toServiceError(err: unknown, log: Logger): Partial<ServiceError> {
  if (err instanceof PublicError) return { code: err.code, details: err.message, metadata: new Metadata() };
  log.error({ err }, "internal error");
  return { code: status.INTERNAL, details: "internal error", metadata: new Metadata() };
}
