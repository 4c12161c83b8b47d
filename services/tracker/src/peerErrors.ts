import { randomBytes } from "node:crypto";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { PublicError, type Logger } from "@distribustream/runtime";

/**
 * What a peer is told when something fails. Two kinds of error: a
 * PublicError is meant for the caller and keeps its gRPC status and
 * message; anything else (a store, transport or file-system failure, a bug)
 * is logged in full under a new error id, and the peer sees only a fixed
 * message that names the id, so an operator can find the log line.
 */

/** A failure whose detail stays in the logs: its id, and the client-safe text to send instead. */
export interface InternalFailure {
  errorId: string;
  /** `<what> (error id <id>)`. */
  message: string;
}

/** A new error id and the fixed text that names it (the caller logs the detail with `errorId`). */
export function internalFailure(what = "internal error"): InternalFailure {
  const errorId = randomBytes(6).toString("hex");
  return { errorId, message: `${what} (error id ${errorId})` };
}

/**
 * The one mapping from a thrown value to the status a peer gets, for unary
 * calls and sessions alike: handlers just throw. An internal failure is
 * logged here ("internal error", with `err` and `errorId`) and reported as
 * INTERNAL with the fixed message.
 */
export function toPeerStatus(err: unknown, log: Logger): Partial<ServiceError> {
  if (err instanceof PublicError) return { code: err.code, details: err.message, metadata: new Metadata() };
  const failure = internalFailure();
  log.error({ err, errorId: failure.errorId }, "internal error");
  return { code: status.INTERNAL, details: failure.message, metadata: new Metadata() };
}
