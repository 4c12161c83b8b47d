import * as grpc from "@grpc/grpc-js";
import {
  DEFAULT_CHUNK_SIZE,
  PublishStatus,
  streamIdFor,
  TrackerService,
  type Hello,
  type PeerMessage,
  type Publish,
  type Signer,
  type TrackerMessage,
  type TrackerServer,
} from "@distribustream/pdtp";

/**
 * A minimal real Tracker: records Hello, Publish and Unpublish, answers
 * Welcome and ACCEPTED then READY (REJECTED for names starting "reject").
 */
export class TestTracker {
  hellos: Hello[] = [];
  publishes: Publish[] = [];
  unpublishes: string[] = [];
  sessions: grpc.ServerDuplexStream<PeerMessage, TrackerMessage>[] = [];
  peerIds: string[] = [];
  port = 0;
  private readonly server = new grpc.Server();
  private changed: (() => void)[] = [];

  /** `ticketKey`: the key its Welcome names; `chunkSize`: the chunk size its READY results give. */
  constructor(
    private readonly ticketKey: Signer,
    private readonly chunkSize = DEFAULT_CHUNK_SIZE,
  ) {}

  async start(): Promise<void> {
    const impl: TrackerServer = {
      session: (call) => {
        this.sessions.push(call);
        call.on("data", (m: PeerMessage) => this.onMessage(call, m));
        call.on("end", () => call.end());
        call.on("error", () => {});
      },
      describeStream: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
      listStreams: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
      getHashPieces: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    };
    this.server.addService(TrackerService, impl);
    this.port = await new Promise((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
  }

  private onMessage(call: grpc.ServerDuplexStream<PeerMessage, TrackerMessage>, m: PeerMessage): void {
    const b = m.body;
    if (b?.$case === "hello") {
      this.hellos.push(b.value);
      const peerId = `seeder-${this.hellos.length}`;
      this.peerIds.push(peerId);
      call.write({
        body: {
          $case: "welcome",
          value: { peerId, observedHost: "127.0.0.1", ticketKeys: [this.ticketKey.publicKey], networkKeys: [] },
        },
      });
    } else if (b?.$case === "publish") {
      const p = b.value;
      this.publishes.push(p);
      const streamId = streamIdFor(p.name, p.size, p.version);
      const result = (status: PublishStatus, detail = "") =>
        call.write({
          body: {
            $case: "publishResult",
            value: { name: p.name, streamId, status, detail, chunkSize: this.chunkSize },
          },
        });
      result(PublishStatus.PUBLISH_STATUS_ACCEPTED);
      setTimeout(() => {
        if (p.name.startsWith("reject"))
          result(PublishStatus.PUBLISH_STATUS_REJECTED, "manifest not computed: test says no");
        else result(PublishStatus.PUBLISH_STATUS_READY);
      }, 20);
    } else if (b?.$case === "unpublish") {
      this.unpublishes.push(b.value.name);
    }
    for (const f of this.changed.splice(0)) f();
  }

  /** Resolves once `pred` holds (checked after every message), or fails after 5 s. */
  async until(pred: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        this.changed.push(r);
        setTimeout(r, 100);
      });
    }
  }

  kickAll(): void {
    for (const s of this.sessions) s.emit("error", { code: grpc.status.UNAVAILABLE, details: "tracker going away" });
    this.sessions = [];
  }

  stop(): void {
    this.server.forceShutdown();
  }
}
