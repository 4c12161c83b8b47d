import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumService,
  PeerRole,
  SignedHashPiece,
  SignedManifest,
  signManifest,
  signPieces,
  Signer,
  TrackerClient,
  WantMode,
  type ChunkRange,
  type Directive,
  type PeerMessage,
  type PublicKey,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { openSwarmStore, type StreamEvent, type SwarmStore } from "@distribustream/swarm-store";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { connect } from "node:net";
import { startTracker, type RunningTracker } from "./index.js";

/** Session key of the test peers (Hello.peer_key); their tickets name it. */
const TEST_PEER_KEY = Signer.generate().publicKey.ed25519;

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Sends one command to Redis over a plain socket (RESP) and resolves its first reply line. */
async function redisCommand(url: string, args: string[]): Promise<string> {
  const u = new URL(url);
  const sock = connect(Number(u.port || 6379), u.hostname);
  try {
    return await new Promise<string>((resolve, reject) => {
      sock.on("error", reject);
      const auth = u.password ? [["AUTH", ...(u.username ? [u.username] : []), decodeURIComponent(u.password)]] : [];
      const commands = [...auth, args];
      let buf = "";
      sock.on("data", (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split("\r\n").slice(0, -1);
        const failed = lines.find((l) => l.startsWith("-"));
        if (failed) reject(new Error(failed.slice(1)));
        else if (lines.length >= commands.length) resolve(lines[commands.length - 1]!);
      });
      for (const cmd of commands) {
        sock.write(`*${cmd.length}\r\n${cmd.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
      }
    });
  } finally {
    sock.destroy();
  }
}

/** A peer's session with one tracker, recording what the tracker sends. */
class Peer {
  readonly inbox: TrackerMessage[] = [];
  private readonly client: TrackerClient;
  private readonly call: grpc.ClientDuplexStream<PeerMessage, TrackerMessage>;

  constructor(target: string) {
    this.client = new TrackerClient(target, grpc.credentials.createInsecure());
    this.call = this.client.session();
    this.call.on("data", (m: TrackerMessage) => this.inbox.push(m));
    this.call.on("error", () => undefined);
  }

  send(body: PeerMessage["body"]): void {
    this.call.write({ body });
  }

  async joinAs(name: string, dataPort: number, have: ChunkRange[]): Promise<void> {
    this.send({
      $case: "hello",
      value: {
        role: PeerRole.PEER_ROLE_VIEWER,
        dataPort,
        agent: "t/1",
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: TEST_PEER_KEY,
      },
    });
    this.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, have, position: 0 } });
    await until("Joined", 5000, () => this.inbox.some((m) => m.body?.$case === "joined"));
  }

  directives(): Directive[] {
    return this.inbox.flatMap((m) => (m.body?.$case === "directives" ? m.body.value.directives : []));
  }

  peerId(): string {
    const w = this.inbox.find((m) => m.body?.$case === "welcome");
    return w?.body?.$case === "welcome" ? w.body.value.peerId : "";
  }

  cancelled(): number[] {
    return this.inbox.flatMap((m) => (m.body?.$case === "cancel" ? m.body.value.transferIds : []));
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

describe("tracker replicas on one Redis: events between them", () => {
  let redis: TestRedis;
  const prefix = `events-${randomUUID().slice(0, 8)}`;
  const stores: SwarmStore[] = [];
  const trackers: RunningTracker[] = [];
  const registries: Registry[] = [];
  const peers: Peer[] = [];
  const checksum = new grpc.Server();
  const network = Signer.generate();
  let admin: SwarmStore;
  let checksumPort = 0;

  async function replica(): Promise<string> {
    const store = await openSwarmStore(redis.url, { prefix });
    const registry = new Registry();
    const tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksumPort}`,
      store,
      ticketSigner: Signer.generate(),
      chunkSize: 1024,
      log: createLogger("tracker-events-test", { level: "silent" }),
      registry,
    });
    stores.push(store);
    trackers.push(tracker);
    registries.push(registry);
    return `127.0.0.1:${tracker.port}`;
  }

  /** A ready stream of 4 chunks written straight into the store (as a replica that finished a publish would). */
  async function readyStream(name: string): Promise<string> {
    const streamId = createHash("sha256").update(name).digest("hex");
    const meta = { streamId, name, size: 4096, chunkSize: 1024, version: 1, kind: "file" as const, createdMs: 1 };
    await admin.createStream(meta);
    const key = Signer.generate();
    const signed = signManifest({ ...meta, pieceChunks: 1024 }, key);
    const [piece] = signPieces(signed, Buffer.alloc(4 * 32), key);
    await admin.putHashPiece(streamId, 0, SignedHashPiece.encode(piece!).finish(), 4);
    await admin.markReady(streamId, SignedManifest.encode(signed).finish(), Date.now());
    return streamId;
  }

  /** A viewer holding everything on tracker A, and a fetcher on tracker B directed to it. */
  async function sourceAndFetcher(name: string, a: string, b: string) {
    const streamId = await readyStream(name);
    const source = new Peer(a);
    peers.push(source);
    await source.joinAs(name, 9902, [{ first: 0, last: 3 }]);
    const fetcher = new Peer(b);
    peers.push(fetcher);
    await fetcher.joinAs(name, 9903, []);
    await until("a directive to the source", 5000, () => fetcher.directives().length > 0);
    const directed = fetcher.directives().map((d) => d.transferId);
    assert.ok(
      fetcher.directives().every((d) => d.source?.port === 9902),
      "the fetcher is directed to the viewer on the other replica",
    );
    return { streamId, source, fetcher, directed };
  }

  before(async () => {
    checksum.addService(ChecksumService, {
      getNetworkKey: (_call: unknown, cb: grpc.sendUnaryData<PublicKey>) => cb(null, network.publicKey),
      computeManifest: (_call: unknown, cb: grpc.sendUnaryData<never>) =>
        cb({ code: grpc.status.UNIMPLEMENTED, details: "not in this test" }),
    });
    checksumPort = await new Promise<number>((resolve, reject) =>
      checksum.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    redis = await redisForTests();
    admin = await openSwarmStore(redis.url, { prefix });
  });

  after(async () => {
    for (const p of peers) p.close();
    for (const t of trackers) await t.drain();
    for (const s of stores) await s.close().catch(() => undefined);
    await admin.close();
    await redis.stop();
    checksum.forceShutdown();
  });

  it("a fetcher on replica B gets a Cancel within 1 s when its source, on replica A, leaves", async () => {
    const a = await replica();
    const b = await replica();
    const { source, fetcher, directed } = await sourceAndFetcher("movies/events.mp4", a, b);
    assert.deepEqual(fetcher.cancelled(), []);

    const left = Date.now();
    source.close();
    await until("the Cancel of the withdrawn transfers", 1000, () =>
      directed.every((id) => fetcher.cancelled().includes(id)),
    );
    const tookMs = Date.now() - left;
    assert.ok(tookMs <= 1000, `Cancel after ${tookMs} ms`);
    const metrics = await registries[0]!.getMetricsAsJSON();
    const published = metrics.find((m) => m.name === "pdtp_tracker_events_published_total") as
      { values: { value: number; labels: { type?: string } }[] } | undefined;
    assert.ok((published?.values.find((v) => v.labels.type === "cancel")?.value ?? 0) >= 1, "A published a cancel");
  });

  it("replicas tell the swarm's changes on its channel: joined, holdings (one event per tick), left", async () => {
    const a = trackers.length > 0 ? `127.0.0.1:${trackers[0]!.port}` : await replica();
    const b = trackers.length > 1 ? `127.0.0.1:${trackers[1]!.port}` : await replica();
    const streamId = await readyStream("movies/dashboard.mp4");
    const seen: StreamEvent[] = [];
    const sub = admin.subscribeEvents({ event: (_id, e) => seen.push(e), resync: () => undefined });
    await sub.watch(streamId);
    try {
      const holder = new Peer(a);
      peers.push(holder);
      await holder.joinAs("movies/dashboard.mp4", 9904, []);
      const watcher = new Peer(b);
      peers.push(watcher);
      await watcher.joinAs("movies/dashboard.mp4", 9905, []);
      await until("joined events of both", 2000, () => seen.filter((e) => e.type === "joined").length >= 2);
      assert.deepEqual(
        seen
          .filter((e) => e.type === "joined")
          .map((e) => (e.type === "joined" ? e.peerId : ""))
          .sort(),
        [holder.peerId(), watcher.peerId()].sort(),
      );

      // four Have messages at once: one holdings event for the tick, with every chunk
      for (let c = 0; c < 4; c++) holder.send({ $case: "have", value: { streamId, ranges: [{ first: c, last: c }] } });
      await until("a holdings event", 2000, () => seen.some((e) => e.type === "holdings"));
      await new Promise((r) => setTimeout(r, 600));
      const holdings = seen.filter((e) => e.type === "holdings");
      assert.ok(holdings.length <= 2, `${holdings.length} holdings events for 4 Have messages`);
      assert.equal(
        holdings.reduce((n, e) => n + (e.type === "holdings" ? e.chunks : 0), 0),
        4,
      );
      assert.ok(holdings.every((e) => e.type === "holdings" && e.peerIds.join() === holder.peerId()));

      holder.close();
      await until("a left event", 2000, () => seen.some((e) => e.type === "left"));
      assert.deepEqual(
        seen.find((e) => e.type === "left"),
        { type: "left", peerIds: [holder.peerId()] },
      );
    } finally {
      await sub.close();
    }
  });

  it("after its subscriber reconnects, a replica cancels the transfers the store no longer has", async () => {
    const a = trackers.length > 0 ? `127.0.0.1:${trackers[0]!.port}` : await replica();
    const b = trackers.length > 1 ? `127.0.0.1:${trackers[1]!.port}` : await replica();
    const { streamId, fetcher, directed } = await sourceAndFetcher("movies/resync.mp4", a, b);
    // a withdrawal whose event B never hears: taken from the store behind the trackers' backs
    const lost = directed[0]!;
    assert.ok(await admin.takeTransfer(streamId, lost));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!fetcher.cancelled().includes(lost), "no event, no Cancel yet");

    await redisCommand(redis.url, ["CLIENT", "KILL", "TYPE", "pubsub"]);
    await until("the Cancel after the resync", 5000, () => fetcher.cancelled().includes(lost));
    for (const id of directed.slice(1)) assert.ok(!fetcher.cancelled().includes(id), `transfer ${id} still in flight`);
  });
});
