import { Metadata, status, type ChannelOptions, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  TrackerClient,
  type Hello,
  type PeerMessage,
  type SignedHashPiece,
  type TrackerMessage,
  type Welcome,
} from "@distribustream/pdtp";
import { channelCredentials, type ClientTls } from "@distribustream/runtime/tls";
import { speaksTlsAt, tlsProblem, worthTlsProbe, type TlsProblem } from "./tlsProblem.js";

/** Channel options every link uses: keepalive, so that a tracker gone silent (not just closed) is noticed. */
export const KEEPALIVE_OPTIONS = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
} as const;

/** How a Session call (or the attempt to open one) ended. */
export interface SessionEnd {
  code: status;
  details: string;
  /** The tracker had welcomed it. */
  welcomed: boolean;
  /** Set when the connection failed at the TLS layer: retrying cannot fix it. */
  tls?: TlsProblem;
}

export interface OpenSession {
  /** "host:port" of the tracker's PDTP port. */
  target: string;
  /** Over TLS, trusting this CA or the system's roots; plaintext without. */
  tls?: ClientTls | undefined;
  hello: Hello;
  channelOptions?: ChannelOptions | undefined;
  /** Numbers the attempts of a link; see TrackerSession.generation. */
  generation: number;
  /** Called at the Welcome, before any later message reaches onMessage. */
  onWelcome(session: TrackerSession): void;
  /** The messages after the Welcome, in arrival order. */
  onMessage(msg: TrackerMessage, session: TrackerSession): void;
  /** Cancels the attempt while it waits for the Welcome. */
  signal?: AbortSignal | undefined;
}

/**
 * One Session call to the tracker on its own channel. `open` resolves once
 * the Welcome arrived; later messages go to `onMessage` in arrival order.
 */
export class TrackerSession {
  /** Settles with how the call ended (never rejects). */
  readonly ended: Promise<SessionEnd>;
  welcome!: Welcome;
  private finished = false;

  private constructor(
    private readonly client: TrackerClient,
    private readonly call: ClientDuplexStream<PeerMessage, TrackerMessage>,
    /** The attempt of the link that opened it: messages of an older session are told apart by it. */
    readonly generation: number,
  ) {
    this.ended = new Promise((resolve) => {
      call.on("status", (s: { code: status; details: string }) => {
        this.finished = true;
        resolve({ code: s.code, details: s.details, welcomed: this.welcome !== undefined });
      });
    });
    // Failures also arrive as 'status'; the listener keeps them from being thrown.
    call.on("error", (_err: ServiceError) => {});
  }

  /**
   * Connects, says Hello and waits for the Welcome. Rejects with the
   * SessionEnd when the call ends first (tracker unreachable, Hello refused,
   * an answer that is not a Welcome: INTERNAL), its `tls` set when the
   * connection failed at the TLS layer.
   */
  static open(o: OpenSession): Promise<TrackerSession> {
    const client = new TrackerClient(o.target, channelCredentials(o.tls), {
      ...KEEPALIVE_OPTIONS,
      ...o.channelOptions,
    });
    const call = client.session();
    const session = new TrackerSession(client, call, o.generation);
    const signal = o.signal;
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
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
          o.onWelcome(session);
          resolve(session);
          return;
        }
        if (msg.body?.$case === "keys") {
          // a ticket key rotation: serve tickets of the new key from now on
          session.welcome.ticketKeys = msg.body.value.ticketKeys;
          session.welcome.networkKeys = msg.body.value.networkKeys;
        }
        o.onMessage(msg, session);
      });
      void session.ended.then(async (s) => {
        if (welcomed) return;
        client.close();
        if (unexpected) return reject({ code: status.INTERNAL, details: unexpected, welcomed: false });
        if (s.code === status.UNAVAILABLE && !signal?.aborted) {
          const speaksTls = !o.tls && worthTlsProbe(s.details) && (await speaksTlsAt(o.target));
          const tls = tlsProblem(s.details, { tls: !!o.tls, speaksTls });
          if (tls) return reject({ ...s, tls });
        }
        reject(s);
      });
      call.write({ body: { $case: "hello", value: o.hello } });
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

  /** Writes to the tracker; nothing once the call ended. */
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
