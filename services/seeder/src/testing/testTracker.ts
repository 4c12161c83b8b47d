import * as grpc from "@grpc/grpc-js";
import {
  DEFAULT_CHUNK_SIZE,
  LiveAttestationBody,
  PublishStatus,
  streamIdFor,
  TrackerService,
  type Hello,
  type LiveChunks,
  type LiveWindow,
  type PeerMessage,
  type Publish,
  type SignedLiveAttestation,
  type Signer,
  type TrackerMessage,
  type TrackerServer,
} from "@distribustream/pdtp";

type Call = grpc.ServerDuplexStream<PeerMessage, TrackerMessage>;

export interface TestTrackerOptions {
  /**
   * How it takes a live Publish: "ready" (default) answers READY at once
   * with the stream's window (started once `attestLive` sent an
   * attestation: the seeder continues after that edge); "refuse" ends the
   * session with INVALID_ARGUMENT as a tracker without live support does.
   */
  live?: "ready" | "refuse";
}

/**
 * A minimal real Tracker: records Hello, Publish, Unpublish and LiveChunks,
 * answers Welcome and ACCEPTED then READY (REJECTED for names starting
 * "reject"); a live Publish READY at once (see TestTrackerOptions.live),
 * and attestations are sent back with `attestLive`.
 */
export class TestTracker {
  hellos: Hello[] = [];
  publishes: Publish[] = [];
  unpublishes: string[] = [];
  /** LiveChunks messages, in arrival order. */
  liveChunks: LiveChunks[] = [];
  sessions: Call[] = [];
  peerIds: string[] = [];
  port = 0;
  private readonly server = new grpc.Server();
  private changed: (() => void)[] = [];
  /** Per live stream id: the session broadcasting it and its edge as attested here. */
  private readonly live = new Map<string, { call: Call; edge?: number; edgeTimestampMs?: number }>();

  /** `ticketKey`: the key its Welcome names; `chunkSize`: the chunk size its READY results give. */
  constructor(
    private readonly ticketKey: Signer,
    private readonly chunkSize = DEFAULT_CHUNK_SIZE,
    private readonly opts: TestTrackerOptions = {},
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
    } else if (b?.$case === "publish" && b.value.live) {
      this.publishLive(call, b.value);
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
    } else if (b?.$case === "liveChunks") {
      this.liveChunks.push(b.value);
    }
    this.notify();
  }

  private notify(): void {
    for (const f of this.changed.splice(0)) f();
  }

  private publishLive(call: Call, p: Publish): void {
    this.publishes.push(p);
    if (this.opts.live === "refuse") {
      // as services/tracker does before it takes live broadcasts
      call.emit("error", {
        code: grpc.status.INVALID_ARGUMENT,
        details: `Publish of "${p.name.slice(0, 64)}": this tracker does not take live broadcasts`,
      });
      return;
    }
    const streamId = this.liveStreamId(p.name);
    const known = this.live.get(streamId);
    this.live.set(streamId, { ...known, call });
    const lp = p.live!;
    const started = known?.edge !== undefined;
    const live: LiveWindow = {
      low: started ? Math.max(0, known.edge! - lp.windowChunks + 1) : 0,
      edge: known?.edge ?? 0,
      started,
      edgeTimestampMs: known?.edgeTimestampMs ?? 0,
      chunkMs: lp.maxChunkMs,
      windowChunks: lp.windowChunks,
      bitrate: lp.bitrate,
      ended: false,
      randomAccess: [],
    };
    call.write({
      body: {
        $case: "publishResult",
        value: { name: p.name, streamId, status: PublishStatus.PUBLISH_STATUS_READY, detail: "", chunkSize: 0, live },
      },
    });
  }

  /** The stream id it gives the live broadcast `name`. */
  liveStreamId(name: string): string {
    return streamIdFor(name, 0, 0);
  }

  /** Sends attestations to the session broadcasting `streamId` (LiveAttested); they move its edge here. */
  attestLive(streamId: string, attestations: SignedLiveAttestation[]): void {
    const l = this.live.get(streamId);
    if (!l) throw new Error(`${streamId} is not broadcast here`);
    for (const a of attestations) {
      const body = LiveAttestationBody.decode(a.body);
      if (l.edge === undefined || body.seq > l.edge) {
        l.edge = body.seq;
        l.edgeTimestampMs = body.timestampMs;
      }
    }
    l.call.write({ body: { $case: "liveAttested", value: { streamId, attestations } } });
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
