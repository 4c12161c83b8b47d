import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumService,
  PeerRole,
  type PublicKey,
  SignedHashPiece,
  SignedManifest,
  signManifest,
  signPieces,
  Signer,
  TrackerClient,
  WantMode,
  type PeerMessage,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { checkHealth, createLogger, Registry } from "@distribustream/runtime";
import { openSwarmStore, type SwarmStore } from "@distribustream/swarm-store";
import {
  redisForTests,
  restartableRedisForTests,
  type RestartableRedis,
  type TestRedis,
} from "@distribustream/swarm-store/testing";
import { startTracker, type RunningTracker } from "./index.js";

/** Session key of the test peers (Hello.peer_key); their tickets name it. */
const TEST_PEER_KEY = Signer.generate().publicKey.ed25519;

const PEER_TTL_MS = 600;
const LEASE_MS = 600;

async function gauge(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m as { values?: { value: number }[] } | undefined)?.values?.[0]?.value ?? 0;
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Replica {
  store: SwarmStore;
  registry: Registry;
  tracker: RunningTracker;
}

describe("tracker replicas on one Redis: the cleanup lease", () => {
  let redis: TestRedis;
  const prefix = `lease-${randomUUID().slice(0, 8)}`;
  const replicas: Replica[] = [];
  let admin: SwarmStore;

  async function replica(): Promise<Replica> {
    const store = await openSwarmStore(redis.url, { prefix });
    const registry = new Registry();
    const tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: "127.0.0.1:1", // not needed here: nothing is published
      store,
      ticketSigner: Signer.generate(),
      chunkSize: 1024,
      log: createLogger("tracker-replica-test", { level: "silent" }),
      registry,
      peerTtlMs: PEER_TTL_MS,
      cleanupLeaseMs: LEASE_MS,
    });
    const r = { store, registry, tracker };
    replicas.push(r);
    return r;
  }

  /** A peer that nobody touches: it must expire, whichever replica sweeps. */
  async function deadPeer(streamId: string): Promise<void> {
    await admin.createStream({
      streamId,
      name: `n/${streamId}`,
      size: 4096,
      chunkSize: 1024,
      version: 1,
      kind: "file",
      createdMs: 0,
    });
    const { joined } = await admin.joinPeer(
      streamId,
      { peerId: "dead", host: "10.0.0.9", port: 9, role: "viewer", mode: "in_order", position: 0, have: [] },
      Date.now(),
    );
    assert.ok(joined);
  }

  const leaders = async () => {
    const v: number[] = [];
    for (const r of replicas) v.push(await gauge(r.registry, "pdtp_tracker_cleanup_leader"));
    return v;
  };

  before(async () => {
    redis = await redisForTests();
    admin = await openSwarmStore(redis.url, { prefix });
  });

  after(async () => {
    for (const r of replicas) {
      await r.tracker.drain();
      await r.store.close().catch(() => undefined);
    }
    await admin.close();
    await redis.stop();
  });

  it("exactly one replica sweeps; when it dies another takes the lease within its lifetime and peers still expire", async () => {
    await replica();
    await replica();
    await until("a cleanup leader", 2000, async () => (await leaders()).includes(1));
    // several renewal periods: never two leaders, never none
    for (let i = 0; i < 8; i++) {
      const v = await leaders();
      assert.equal(
        v.reduce((a, b) => a + b, 0),
        1,
        `exactly one leader, got ${JSON.stringify(v)}`,
      );
      await new Promise((r) => setTimeout(r, LEASE_MS / 4));
    }
    const first = (await leaders()).indexOf(1);
    const other = 1 - first;

    await deadPeer("s1");
    await until("the leader expires the dead peer", PEER_TTL_MS * 4, async () => !(await admin.getPeer("s1", "dead")));

    // the leader "crashes": its connection to Redis goes away without releasing the lease
    await replicas[first]!.store.close();
    const tookMs = await until(
      "the other replica takes the lease",
      LEASE_MS * 3,
      async () => (await leaders())[other] === 1,
    );
    assert.ok(tookMs <= LEASE_MS + LEASE_MS / 3 + 300, `took over in ${tookMs} ms`);
    assert.equal((await leaders())[first], 0, "the crashed replica no longer counts itself leader");

    await deadPeer("s2");
    await until("the new leader expires dead peers", PEER_TTL_MS * 4, async () => !(await admin.getPeer("s2", "dead")));
  });

  it("a draining leader hands the lease over at once", async () => {
    const newcomer = await replica();
    await new Promise((r) => setTimeout(r, LEASE_MS / 2));
    const v = await leaders();
    const leader = v.indexOf(1);
    assert.notEqual(leader, replicas.indexOf(newcomer), "the lease stays with its holder");
    await replicas[leader]!.tracker.drain();
    assert.equal(await gauge(replicas[leader]!.registry, "pdtp_tracker_cleanup_leader"), 0);
    const tookMs = await until(
      "the newcomer takes the released lease",
      LEASE_MS * 3,
      async () => (await gauge(newcomer.registry, "pdtp_tracker_cleanup_leader")) === 1,
    );
    assert.ok(tookMs < LEASE_MS, `released lease taken in ${tookMs} ms, not after its lifetime`);
  });
});

describe("tracker when Redis goes away and comes back empty", () => {
  let redis: RestartableRedis;
  let store: SwarmStore;
  let tracker: RunningTracker;
  let target: string;
  const registry = new Registry();
  // the checksum service only needs to hand out its network key (a Hello waits for it)
  const checksum = new grpc.Server();
  const network = Signer.generate();

  before(async () => {
    checksum.addService(ChecksumService, {
      getNetworkKey: (_call: unknown, cb: grpc.sendUnaryData<PublicKey>) => cb(null, network.publicKey),
      computeManifest: (_call: unknown, cb: grpc.sendUnaryData<never>) =>
        cb({ code: grpc.status.UNIMPLEMENTED, details: "not in this test" }),
    });
    const checksumPort = await new Promise<number>((resolve, reject) =>
      checksum.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    redis = await restartableRedisForTests();
    store = await openSwarmStore(redis.url, { prefix: "outage" });
    tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksumPort}`,
      store,
      ticketSigner: Signer.generate(),
      chunkSize: 1024,
      log: createLogger("tracker-outage-test", { level: "silent" }),
      registry,
      peerTtlMs: 1500, // touches every 500 ms
      cleanupLeaseMs: 600,
    });
    target = `127.0.0.1:${tracker.port}`;
  });

  after(async () => {
    await tracker.drain();
    await store.close();
    await redis.stop();
    checksum.forceShutdown();
  });

  /** A ready stream written straight into the store (as a replica that finished a publish would). */
  async function readyStream(name: string): Promise<string> {
    const streamId = createHash("sha256").update(name).digest("hex");
    await store.createStream({
      streamId,
      name,
      size: 4096,
      chunkSize: 1024,
      version: 1,
      kind: "file",
      createdMs: 1,
    });
    const key = Signer.generate();
    const signed = signManifest(
      { streamId, name, size: 4096, chunkSize: 1024, createdMs: 1, version: 1, pieceChunks: 1024 },
      key,
    );
    const [piece] = signPieces(signed, Buffer.alloc(4 * 32), key);
    await store.putHashPiece(streamId, 0, SignedHashPiece.encode(piece!).finish(), 4);
    await store.markReady(streamId, SignedManifest.encode(signed).finish(), Date.now());
    return streamId;
  }

  it("health goes NOT_SERVING while Redis is down and SERVING when it is back; sessions whose state was lost re-join", async () => {
    const streamId = await readyStream("movies/outage.mp4");
    const client = new TrackerClient(target, grpc.credentials.createInsecure());
    const call = client.session();
    const inbox: TrackerMessage[] = [];
    call.on("data", (m: TrackerMessage) => inbox.push(m));
    const ended = new Promise<grpc.StatusObject>((resolve) => {
      call.on("error", (e: grpc.ServiceError) => resolve(e));
      call.on("status", (st: grpc.StatusObject) => resolve(st));
    });
    const send = (body: PeerMessage["body"]) => call.write({ body });
    send({
      $case: "hello",
      value: {
        role: PeerRole.PEER_ROLE_VIEWER,
        dataPort: 9901,
        agent: "t/1",
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: TEST_PEER_KEY,
      },
    });
    send({
      $case: "join",
      value: {
        name: "movies/outage.mp4",
        mode: WantMode.WANT_MODE_IN_ORDER,
        have: [{ first: 0, last: 1 }],
        position: 2,
      },
    });
    await until("Joined", 5000, async () => inbox.some((m) => m.body?.$case === "joined"));
    assert.equal(await checkHealth(target), "SERVING");

    const pid = redis.pid();
    assert.ok(pid, "redis-server runs");
    await redis.kill(); // SIGTERM by PID
    await until("health NOT_SERVING", 4000, async () => (await checkHealth(target)) === "NOT_SERVING");
    let endedEarly = false;
    void ended.then(() => (endedEarly = true));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(endedEarly, false, "the session stays open while Redis is down");

    await redis.restart(); // same port, empty
    await until("health SERVING again", 10_000, async () => (await checkHealth(target)) === "SERVING");
    const status = await Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
    assert.equal(status?.code, grpc.status.UNAVAILABLE, "the session whose swarm state was lost is told to reconnect");
    assert.match(status?.details ?? "", /reconnect and join again/);
    assert.equal(await store.getPeer(streamId, "x"), undefined);
    client.close();
  });
});
