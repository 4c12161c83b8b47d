import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { PeerRole, PublishStatus, Signer, TrackerClient, WantMode } from "@distribustream/pdtp";
import { Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { startTracker, type RunningTracker } from "./index.js";
import { captureLog, startChecksumDouble, TestPeer, type LogLine } from "./testing/index.js";

/** What a Redis client says when its server is down: internals that must stay in the tracker's logs. */
const REDIS_DOWN = "connect ECONNREFUSED 10.0.0.3:6379";
const FIXED = /^internal error \(error id ([0-9a-f]{12})\)$/;

/** A memory store whose chosen operations fail the way a Redis store does when Redis is unreachable. */
class FailingStore extends MemorySwarmStore {
  readonly failing = new Set<"streamIdByName" | "putHashPiece">();

  override async streamIdByName(name: string): Promise<string | undefined> {
    if (this.failing.has("streamIdByName")) throw new Error(REDIS_DOWN);
    return super.streamIdByName(name);
  }

  override async putHashPiece(streamId: string, index: number, piece: Uint8Array, hashed: number): Promise<boolean> {
    if (this.failing.has("putHashPiece")) throw new Error(REDIS_DOWN);
    return super.putHashPiece(streamId, index, piece, hashed);
  }
}

/** The one log line that names this error id; it carries the detail the peer did not get. */
function lineOf(lines: LogLine[], errorId: string): LogLine {
  const found = lines.filter((l) => l.errorId === errorId);
  assert.equal(found.length, 1, `one log line with error id ${errorId}, got ${found.length}`);
  return found[0]!;
}

function detailOf(line: LogLine): string {
  const err = line.err as Error | undefined;
  return err ? `${err.message} ${String((err as Partial<grpc.ServiceError>).details ?? "")}` : "";
}

describe("errors to peers: internal failures give a fixed message and an error id, the detail stays in the log", () => {
  const network = Signer.generate();
  const store = new FailingStore();
  const { log, lines } = captureLog();
  let checksum: Awaited<ReturnType<typeof startChecksumDouble>>;
  let tracker: RunningTracker;
  let client: TrackerClient;
  const open: TestPeer[] = [];
  const peer = () => {
    const p = new TestPeer(client);
    open.push(p);
    return p;
  };

  before(async () => {
    checksum = await startChecksumDouble(network);
    tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksum.port}`,
      store,
      ticketSigner: Signer.generate(),
      chunkSize: 1024,
      log,
      registry: new Registry(),
    });
    client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    for (const p of open) p.call.cancel();
    await tracker.drain();
    client.close();
    checksum.close();
  });

  it("a unary call whose store read fails: INTERNAL, the fixed message and an id; Redis's text only in the log", async () => {
    store.failing.add("streamIdByName");
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.describeStream({ name: "films/a.bin", streamId: "" }, (e) => resolve(e!)),
    );
    store.failing.clear();
    assert.equal(err.code, grpc.status.INTERNAL, err.details);
    const id = FIXED.exec(err.details)?.[1];
    assert.ok(id, `fixed message with an id, got "${err.details}"`);
    assert.doesNotMatch(err.details, /ECONNREFUSED|10\.0\.0\.3/);
    const line = lineOf(lines, id);
    assert.equal(line.level, "error");
    assert.match(detailOf(line), /ECONNREFUSED 10\.0\.0\.3:6379/);
  });

  it("a session message whose store call fails ends the session the same way", async () => {
    const viewer = peer();
    await viewer.hello(PeerRole.PEER_ROLE_VIEWER, 0);
    store.failing.add("streamIdByName");
    viewer.send({
      $case: "join",
      value: { name: "films/a.bin", mode: WantMode.WANT_MODE_BULK, position: 0, have: [] },
    });
    const end = await viewer.ended;
    store.failing.clear();
    assert.equal(end.code, grpc.status.INTERNAL, end.details);
    const id = FIXED.exec(end.details)?.[1];
    assert.ok(id, `fixed message with an id, got "${end.details}"`);
    assert.doesNotMatch(end.details, /ECONNREFUSED|10\.0\.0\.3/);
    assert.match(detailOf(lineOf(lines, id)), /ECONNREFUSED 10\.0\.0\.3:6379/);
  });

  it("a publish whose hash pieces cannot be stored is REJECTED with the fixed message and an id", async () => {
    const seeder = peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    store.failing.add("putHashPiece");
    const r = await seeder.publish({ name: "films/b.bin", size: 4096, version: 1 });
    store.failing.clear();
    assert.equal(r.status, PublishStatus.PUBLISH_STATUS_REJECTED);
    const id = /^manifest not computed: internal error \(error id ([0-9a-f]{12})\)$/.exec(r.detail)?.[1];
    assert.ok(id, `fixed message with an id, got "${r.detail}"`);
    assert.match(detailOf(lineOf(lines, id)), /ECONNREFUSED 10\.0\.0\.3:6379/);
  });

  it("a publish while the checksum service is unreachable: the connection's text stays in the log", async () => {
    const seeder = peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100); // the network key is known by now
    checksum.close();
    const r = await seeder.publish({ name: "films/c.bin", size: 4096, version: 1 });
    assert.equal(r.status, PublishStatus.PUBLISH_STATUS_REJECTED);
    const id = /^manifest not computed: internal error \(error id ([0-9a-f]{12})\)$/.exec(r.detail)?.[1];
    assert.ok(id, `fixed message with an id, got "${r.detail}"`);
    assert.equal((lineOf(lines, id).err as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
  });
});
