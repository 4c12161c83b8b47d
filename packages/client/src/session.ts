import { connect as tlsConnect } from "node:tls";
import { Metadata, status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  TrackerClient,
  type Hello,
  type PeerMessage,
  type SignedHashPiece,
  type TrackerMessage,
  type Welcome,
} from "@distribustream/pdtp";
import { channelCredentials, type ClientTls } from "@distribustream/runtime/tls";
import { tlsFailure } from "./errors.js";

/** How long the probe of a failed plaintext connection waits for a TLS handshake. */
const TLS_PROBE_MS = 2_000;

/** Channel options: keepalive so a dead tracker is noticed, and room for big answers (GetHashPieces, about 2 MiB). */
export const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
} as const;

export interface SessionStatus {
  code: status;
  details: string;
}

/**
 * One Session call to the tracker on its own channel. `open` resolves once
 * the Welcome arrived; later messages go to `onMessage` in arrival order.
 */
export class TrackerSession {
  /** Settles with the status the call ended with (never rejects). */
  readonly ended: Promise<SessionStatus>;
  welcome!: Welcome;
  private finished = false;

  private constructor(
    private readonly client: TrackerClient,
    private readonly call: ClientDuplexStream<PeerMessage, TrackerMessage>,
  ) {
    this.ended = new Promise((resolve) => {
      call.on("status", (s: { code: status; details: string }) => {
        this.finished = true;
        resolve({ code: s.code, details: s.details });
      });
    });
    // Failures also arrive as 'status'; the listener keeps them from being thrown.
    call.on("error", (_err: ServiceError) => {});
  }

  /**
   * Connects (over TLS when `tls` is given), says Hello and waits for the
   * Welcome. Rejects with the SessionStatus when the call ends first (tracker
   * unreachable, Hello refused), or with a DownloadError (exit 8) when the
   * connection failed at the TLS layer, which retrying cannot fix (see
   * tlsFailure).
   */
  static open(
    target: string,
    hello: Hello,
    onMessage: (msg: TrackerMessage) => void,
    signal?: AbortSignal,
    tls?: ClientTls,
  ): Promise<TrackerSession> {
    const client = new TrackerClient(target, channelCredentials(tls), CHANNEL_OPTIONS);
    const call = client.session();
    const session = new TrackerSession(client, call);
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    void session.ended.then(() => signal?.removeEventListener("abort", onAbort));
    return new Promise((resolve, reject) => {
      let welcomed = false;
      let unexpected: string | undefined;
      call.on("data", (msg: TrackerMessage) => {
        if (!welcomed) {
          if (msg.body?.$case !== "welcome") {
            unexpected ??= `tracker answered Hello with ${msg.body?.$case ?? "an empty message"}, not a Welcome`;
            call.cancel();
            return;
          }
          welcomed = true;
          signal?.removeEventListener("abort", onAbort);
          session.welcome = msg.body.value;
          resolve(session);
          return;
        }
        if (msg.body?.$case === "keys") {
          // a ticket key rotation: serve tickets of the new key from now on
          session.welcome.ticketKeys = msg.body.value.ticketKeys;
          session.welcome.networkKeys = msg.body.value.networkKeys;
        }
        onMessage(msg);
      });
      void session.ended.then(async (s) => {
        if (welcomed) return;
        client.close();
        if (unexpected) return reject({ code: status.INTERNAL, details: unexpected });
        if (s.code === status.UNAVAILABLE && !signal?.aborted) {
          const speaksTls = !tls && !/\bE[A-Z]{3,}/.test(s.details) && (await speaksTlsAt(target));
          const failure = tlsFailure(s.details, { target, tls: !!tls, speaksTls });
          if (failure) return reject(failure);
        }
        reject(s);
      });
      call.write({ body: { $case: "hello", value: hello } });
    });
  }

  /**
   * Signed hash pieces of a stream from the tracker (GetHashPieces, a unary
   * call on the session's channel; any replica answers it). Rejects with the
   * ServiceError when the call fails.
   */
  hashPieces(streamId: string, firstPiece: number, count: number, timeoutMs = 15_000): Promise<SignedHashPiece[]> {
    return new Promise((resolve, reject) =>
      this.client.getHashPieces(
        { streamId, firstPiece, count },
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res.pieces)),
      ),
    );
  }

  send(msg: PeerMessage): void {
    if (this.finished) return;
    this.call.write(msg);
  }

  /** Half-closes and waits up to `graceMs` for the tracker to end the call, then cancels it. */
  async close(graceMs = 1000): Promise<void> {
    if (!this.finished) {
      this.call.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.ended,
        new Promise((r) => {
          timer = setTimeout(r, graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (!this.finished) this.call.cancel();
    }
    this.client.close();
  }

  /** Ends the call at once. */
  abort(): void {
    if (!this.finished) this.call.cancel();
    this.client.close();
  }
}

/**
 * Whether a TLS handshake succeeds at `target` ("host:port"), the server's
 * certificate unchecked: asked after a plaintext connection failed without
 * a socket error (the server closed it), to tell a pdtp:// URL given for a
 * TLS tracker from a tracker that is down.
 */
function speaksTlsAt(target: string): Promise<boolean> {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(target);
  if (!m) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: m[1], port: Number(m[2]), rejectUnauthorized: false, ALPNProtocols: ["h2"] });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), TLS_PROBE_MS);
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}
