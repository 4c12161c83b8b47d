import * as grpc from "@grpc/grpc-js";
import {
  PublishStatus,
  Signer,
  type Hello,
  type PeerMessage,
  type PeerRole,
  type Publish,
  type TrackerClient,
  type TrackerMessage,
} from "@distribustream/pdtp";

type Body = NonNullable<TrackerMessage["body"]>;

/**
 * One peer session seen from the peer's side, for the tracker's tests: sends
 * message bodies, waits for messages of a kind (skipping others), keeps what
 * it has not taken in `inbox`.
 */
export class TestPeer {
  readonly call: grpc.ClientDuplexStream<PeerMessage, TrackerMessage>;
  readonly inbox: Body[] = [];
  readonly ended: Promise<grpc.StatusObject>;
  private wake: (() => void) | undefined;

  /** `key`: the session key its Hello gives (tickets name it); a new one by default. */
  constructor(
    client: TrackerClient,
    readonly key: Signer = Signer.generate(),
  ) {
    this.call = client.session();
    this.call.on("data", (m: TrackerMessage) => {
      if (m.body) this.inbox.push(m.body);
      this.wake?.();
    });
    this.ended = new Promise((resolve) => {
      this.call.on("error", (e: grpc.ServiceError) => resolve(e));
      this.call.on("status", (s: grpc.StatusObject) => resolve(s));
    });
  }

  send(body: PeerMessage["body"]): void {
    this.call.write({ body });
  }

  /** The next message of the given kind. */
  async next<K extends Body["$case"]>(kind: K, timeoutMs = 5_000): Promise<Extract<Body, { $case: K }>["value"]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((b) => b.$case === kind);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!.value as never;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind} within ${timeoutMs} ms (got ${this.inbox.map((b) => b.$case)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** `address`: a seeder's advertised and internal data addresses (default: none). */
  async hello(
    role: PeerRole,
    dataPort: number,
    address: Partial<Pick<Hello, "advertiseHost" | "advertisePort" | "internalHost" | "internalPort">> = {},
  ) {
    this.send({
      $case: "hello",
      value: {
        role,
        dataPort,
        agent: "test/1",
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        ...address,
        peerKey: this.key.publicKey.ed25519,
      },
    });
    return this.next("welcome");
  }

  /** Publishes and resolves with the READY (or REJECTED) result. */
  async publish(p: Publish) {
    this.send({ $case: "publish", value: p });
    for (;;) {
      const r = await this.next("publishResult");
      if (r.status !== PublishStatus.PUBLISH_STATUS_ACCEPTED) return r;
    }
  }

  close(): void {
    this.call.end();
  }
}
