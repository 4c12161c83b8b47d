import { ServerInterceptingCall, type ServerInterceptingCallInterface, type ServerInterceptor } from "@grpc/grpc-js";

/**
 * Drops the answers written to a call whose status grpc-js is already sending.
 *
 * grpc-js (1.14.7) ends a call by itself when a peer's message is over the
 * size limit. Once the response headers are out (a session's Welcome), it
 * ends the HTTP/2 stream and sends the status in trailers when the stream
 * asks for them. An answer the session writes in between (a Join's
 * descriptor, a directive: the session learns of the end only a tick after
 * the trailers) is a write after end: the Node stream errors, never asks for
 * the trailers, and the peer waits for a status forever, its HTTP/2 stream
 * left open. Such an answer is moot, so it is dropped here.
 *
 * Whether the status is on its way is read from the base call's own flags
 * (`wantTrailers`, `cancelled`): grpc-js has no public signal for it. The
 * tracker's tests fail if that reading stops working.
 */
export const dropAnswersAfterStatus: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    sendMessage: (message, next) => {
      if (!statusSent(call)) next(message);
    },
  });

function statusSent(call: ServerInterceptingCallInterface): boolean {
  const base = call as unknown as { wantTrailers?: unknown; cancelled?: unknown };
  return base.wantTrailers === true || base.cancelled === true;
}
