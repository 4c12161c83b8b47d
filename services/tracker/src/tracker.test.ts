import { createHash } from "node:crypto";
import http2 from "node:http2";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  checkTicket,
  fetchProof,
  openManifest,
  PeerMessage,
  PeerRole,
  PublishStatus,
  Signer,
  TrackerClient,
  TrackerMessage,
  TransferOutcome,
  WantMode,
  type Directive,
  type GetHashPiecesResponse,
} from "@distribustream/pdtp";
import { Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import {
  doubleChunkHash,
  ProtocolFixture,
  startChecksumDouble,
  startProtocolTracker,
  TestPeer,
} from "./testing/index.js";
import type { RunningTracker } from "./index.js";

/** Session key of the test peers (Hello.peer_key); their tickets name it. */
const TEST_PEER = Signer.generate();
const TEST_PEER_KEY = TEST_PEER.publicKey.ed25519;

const CHUNK = 1024;

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m as { values?: { value: number; labels: Record<string, string | number> }[] } | undefined)?.values?.find(
    (x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val),
  );
  return v?.value ?? 0;
}

/** The report of a directive delivered whole. */
const okReport = (d: Directive) => ({
  transferId: d.transferId,
  outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
  bytes: (d.range!.last - d.range!.first + 1) * CHUNK,
  durationMs: 5,
  detail: "",
  httpStatus: 0,
  verified: [d.range!],
});

describe("tracker over real gRPC", () => {
  const network = Signer.generate();
  const trackerKey = Signer.generate();
  const registry = new Registry();
  let checksum: Awaited<ReturnType<typeof startChecksumDouble>>;
  let tracker: RunningTracker;
  let client: TrackerClient;
  let target: string;
  const open: TestPeer[] = [];
  const peer = () => {
    const p = new TestPeer(client, TEST_PEER);
    open.push(p);
    return p;
  };

  before(async () => {
    checksum = await startChecksumDouble(network);
    tracker = await startProtocolTracker(checksum.port, CHUNK, {
      ticketSigner: trackerKey,
      registry,
      maxMessageBytes: 64 * 1024,
    });
    target = `127.0.0.1:${tracker.port}`;
    client = new TrackerClient(target, grpc.credentials.createInsecure());
  });

  after(async () => {
    for (const p of open) p.call.cancel();
    await tracker.drain();
    client.close();
    checksum.close();
  });

  let seeder: TestPeer;
  let seederId = "";
  let streamId = "";

  it("a seeder publishes: ACCEPTED, then READY with a manifest signed by the network key", async () => {
    seeder = peer();
    const welcome = await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    seederId = welcome.peerId;
    assert.equal(welcome.observedHost, "127.0.0.1");
    assert.deepEqual(welcome.ticketKeys, [trackerKey.publicKey]);
    assert.equal(welcome.networkKeys[0]?.keyId, network.keyId);
    seeder.send({ $case: "publish", value: { name: "movies/big.bin", size: 40 * CHUNK + 7, version: 3 } });
    const accepted = await seeder.next("publishResult");
    assert.equal(accepted.status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    streamId = accepted.streamId;
    const ready = await seeder.next("publishResult");
    assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
    assert.equal(ready.streamId, streamId);
    const req = checksum.requests.at(-1)!;
    assert.equal(req.sourceUrl, "http://127.0.0.1:9100");
    assert.equal(req.chunkSize, CHUNK);
    checkTicket(req.ticket!, [trackerKey.publicKey], {
      serverId: seederId,
      streamId,
      range: { first: 0, last: 40 },
      nowMs: Date.now(),
    });
    assert.equal(await metric(registry, "pdtp_tracker_streams"), 1);
  });

  it("an empty file is published too, and a failing manifest is REJECTED", async () => {
    seeder.send({ $case: "publish", value: { name: "empty.txt", size: 0, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    seeder.send({ $case: "publish", value: { name: "reject/x", size: 10, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    const rejected = await seeder.next("publishResult");
    assert.equal(rejected.status, PublishStatus.PUBLISH_STATUS_REJECTED);
    assert.match(rejected.detail, /source answered 404/);
  });

  it("lists and describes ready streams", async () => {
    const list = await new Promise<{ streams: { name: string; seeders: number }[] }>((resolve, reject) =>
      client.listStreams({}, (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.deepEqual(
      list.streams.map((s) => `${s.name}:${s.seeders}`),
      ["empty.txt:1", "movies/big.bin:1"],
    );
    const d = await new Promise<{ chunkCount: number; streamId: string }>((resolve, reject) =>
      client.describeStream({ name: "movies/big.bin", streamId: "" }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.equal(d.chunkCount, 41);
    assert.equal(d.streamId, streamId);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.describeStream({ name: "nope", streamId: "" }, (e) => resolve(e!)),
    );
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'no stream named "nope"');
  });

  let viewer: TestPeer;
  let viewerId = "";

  it("a viewer joins and gets the manifest and directives naming the seeder with a valid ticket", async () => {
    viewer = peer();
    const welcome = await viewer.hello(PeerRole.PEER_ROLE_VIEWER, 9200);
    viewerId = welcome.peerId;
    viewer.send({
      $case: "join",
      value: { name: "movies/big.bin", mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 },
    });
    const joined = await viewer.next("joined");
    assert.equal(joined.descriptor?.streamId, streamId);
    assert.equal(joined.descriptor?.seeders, 1);
    const manifest = openManifest(joined.manifest!, welcome.networkKeys);
    assert.equal(manifest.chunkCount, 41);
    // the descriptor names the manifest a viewer verifies and the key that signed it (dsclient info shows them)
    assert.equal(joined.descriptor?.manifestSha256, createHash("sha256").update(joined.manifest!.body).digest("hex"));
    assert.equal(joined.descriptor?.networkKeyId, network.keyId);
    const { directives } = await viewer.next("directives");
    assert.ok(directives.length >= 1 && directives.length <= 4);
    const d = directives[0]!;
    assert.equal(d.streamId, streamId);
    assert.equal(d.range?.first, 0, "in-order: the first chunk comes first");
    assert.deepEqual(d.source, { peerId: seederId, host: "127.0.0.1", port: 9100, seeder: true });
    const body = checkTicket(d.ticket!, welcome.ticketKeys, {
      serverId: seederId,
      streamId,
      range: d.range!,
      nowMs: Date.now(),
      proof: fetchProof(d.ticket!, d.range!, TEST_PEER),
    });
    assert.equal(body.fetcherId, viewerId);
    assert.deepEqual(
      Buffer.from(body.fetcherKey),
      Buffer.from(TEST_PEER_KEY),
      "the ticket names the viewer's session key",
    );
    assert.ok((await metric(registry, "pdtp_tracker_transfers_started_total")) >= 1);
    // report them all done: the viewer now holds those chunks, without a separate Have
    viewer.send({
      $case: "reports",
      // bytes: whole chunks, which the tracker caps at the file's 41 * CHUNK + 7
      value: { reports: directives.map(okReport) },
    });
    // the first batch covers the whole file (super-seeding spreads it over the seeder's slots)
    const covered = directives.reduce((n, x) => n + x.range!.last - x.range!.first + 1, 0);
    assert.equal(covered, 41);
    for (let i = 0; i < 50 && (await metric(registry, "pdtp_tracker_transfers_done_total")) < directives.length; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await metric(registry, "pdtp_tracker_transfers_done_total"), directives.length);
    assert.equal(
      await metric(registry, "pdtp_tracker_delivered_bytes_total", { stream: "movies/big.bin", source: "seeder" }),
      40 * CHUNK + 7, // bytes are capped at the directive's span
    );
    assert.equal(await metric(registry, "pdtp_tracker_sessions", { role: "viewer" }), 1);
  });

  async function expectStatus(p: TestPeer, code: grpc.status, details?: RegExp | string) {
    const st = await p.ended;
    assert.equal(st.code, code, `got ${grpc.status[st.code]}: ${st.details}`);
    if (typeof details === "string") assert.equal(st.details, details);
    else if (details) assert.match(st.details, details);
  }

  it("a malformed message ends only that session with INVALID_ARGUMENT", async () => {
    const raw = new grpc.Client(target, grpc.credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(
      "/pdtp.v1.Tracker/Session",
      (b: Buffer) => b,
      (b: Buffer) => TrackerMessage.decode(b),
    );
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    call.on("data", () => {});
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01])); // field 1, absurd length
    const err = await ended;
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /malformed message/);
    raw.close();
    // the viewer's session keeps working
    viewer.send({ $case: "position", value: { streamId, nextChunk: 5 } });
    viewer.send({ $case: "have", value: { streamId, ranges: [{ first: 39, last: 40 }] } });
    const d = await new Promise<{ peers: number }>((resolve, reject) =>
      client.describeStream({ name: "", streamId }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.equal(d.peers, 1);
  });

  it("an oversized message ends the session with RESOURCE_EXHAUSTED", async () => {
    const p = peer();
    p.send({
      $case: "hello",
      value: {
        role: PeerRole.PEER_ROLE_VIEWER,
        dataPort: 1,
        agent: "x".repeat(70 * 1024),
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: TEST_PEER_KEY,
      },
    });
    await expectStatus(p, grpc.status.RESOURCE_EXHAUSTED);
  });

  it("an oversized message while the tracker is answering a session still ends it with RESOURCE_EXHAUSTED", async () => {
    // grpc-js ends such a call itself; a Join's answers written meanwhile used to leave it with no status at all
    const sessions = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const p = peer();
        await p.hello(PeerRole.PEER_ROLE_VIEWER, 0); // the answers' headers are sent
        p.send({
          $case: "join",
          value: { name: "movies/big.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
        });
        p.send({
          $case: "join",
          value: { name: "x".repeat(70 * 1024), mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
        });
        p.call.end();
        return p;
      }),
    );
    const noStatus = Symbol("no status");
    for (const p of sessions) {
      const st = await Promise.race([p.ended, new Promise((r) => setTimeout(() => r(noStatus), 10_000).unref())]);
      assert.notEqual(st, noStatus, "a session got no status within 10 s");
      const s = st as grpc.StatusObject;
      assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED, `got ${grpc.status[s.code]}: ${s.details}`);
    }
  });

  it("a refusal quoting a peer's string cut inside a character is still sent, and the tracker keeps serving", async () => {
    // "x" then emoji: the first 64 UTF-16 units of the id end with half an emoji (a lone surrogate), which
    // grpc-js's encodeURI of the status threw on, inside the server: the tracker process died
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.describeStream({ name: "", streamId: `x${"🎥".repeat(40)}` }, (e) => resolve(e!)),
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /^"x(🎥){31}\uFFFD" is not a stream id$/u);
    const p = peer();
    await p.hello(PeerRole.PEER_ROLE_VIEWER, 0);
    p.send({ $case: "leave", value: { streamId: `x${"🎥".repeat(40)}` } });
    await expectStatus(p, grpc.status.INVALID_ARGUMENT, /\uFFFD" is not a stream id$/u);
    const d = await new Promise<{ streamId: string }>((resolve, reject) =>
      client.describeStream({ name: "movies/big.bin", streamId: "" }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    assert.equal(d.streamId, streamId);
  });

  it("a message before Hello ends the session with INVALID_ARGUMENT", async () => {
    const p = peer();
    p.send({ $case: "join", value: { name: "movies/big.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await expectStatus(p, grpc.status.INVALID_ARGUMENT, /first message must be Hello/);
  });

  it("semantically invalid messages end the session with INVALID_ARGUMENT", async () => {
    const cases: [PeerMessage["body"][], RegExp][] = [
      [
        [
          {
            $case: "hello",
            value: {
              role: PeerRole.PEER_ROLE_UNSPECIFIED,
              dataPort: 1,
              agent: "",
              credential: "",
              advertiseHost: "",
              advertisePort: 0,
              internalHost: "",
              internalPort: 0,
              peerKey: TEST_PEER_KEY,
            },
          },
        ],
        /role/,
      ],
      [
        [
          {
            $case: "hello",
            value: {
              role: PeerRole.PEER_ROLE_VIEWER,
              dataPort: 70000,
              agent: "",
              credential: "",
              advertiseHost: "",
              advertisePort: 0,
              internalHost: "",
              internalPort: 0,
              peerKey: TEST_PEER_KEY,
            },
          },
        ],
        /data_port/,
      ],
      [[undefined], /no known body/],
      [[{ $case: "publish", value: { name: "x", size: 1, version: 1 } }], /first message/],
    ];
    for (const [msgs, re] of cases) {
      const p = peer();
      for (const m of msgs) p.send(m);
      await expectStatus(p, grpc.status.INVALID_ARGUMENT, re);
    }
    const v = peer();
    await v.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    v.send({ $case: "publish", value: { name: "x", size: 1, version: 1 } });
    await expectStatus(v, grpc.status.INVALID_ARGUMENT, "only a seeder may publish");
    const w = peer();
    await w.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    w.send({
      $case: "join",
      value: { name: "movies/big.bin", mode: WantMode.WANT_MODE_BULK, have: [{ first: 3, last: 41 }], position: 0 },
    });
    await expectStatus(w, grpc.status.INVALID_ARGUMENT, /beyond the stream's 41 chunks/);
    const h = peer();
    await h.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    h.send({ $case: "have", value: { streamId, ranges: [{ first: 1, last: 1 }] } });
    await expectStatus(h, grpc.status.INVALID_ARGUMENT, /has not joined/);
  });

  it("a Join of an unknown name ends the session with NOT_FOUND", async () => {
    const p = peer();
    await p.hello(PeerRole.PEER_ROLE_VIEWER, 9400);
    p.send({ $case: "join", value: { name: "no/such.mp4", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await expectStatus(p, grpc.status.NOT_FOUND, 'no stream named "no/such.mp4"');
  });

  it("a report of another peer's transfer changes nothing", async () => {
    seeder.send({ $case: "publish", value: { name: "steal/test.bin", size: 8 * CHUNK, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    const join = { name: "steal/test.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 };
    const fetcher = peer();
    await fetcher.hello(PeerRole.PEER_ROLE_VIEWER, 9700);
    fetcher.send({ $case: "join", value: join });
    await fetcher.next("joined");
    const d = (await fetcher.next("directives")).directives[0]!;
    const thief = peer();
    await thief.hello(PeerRole.PEER_ROLE_VIEWER, 9701);
    thief.send({ $case: "join", value: join });
    await thief.next("joined");
    const badBefore = await metric(registry, "pdtp_tracker_bad_chunks_total");
    const doneBefore = await metric(registry, "pdtp_tracker_transfers_done_total");
    const report = (outcome: TransferOutcome) => ({
      $case: "reports" as const,
      value: {
        reports: [
          {
            transferId: d.transferId,
            outcome,
            bytes: 1,
            durationMs: 1,
            detail: "",
            httpStatus: 0,
            verified: [d.range!],
          },
        ],
      },
    });
    thief.send(report(TransferOutcome.TRANSFER_OUTCOME_BAD_DATA));
    thief.send(report(TransferOutcome.TRANSFER_OUTCOME_OK));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await metric(registry, "pdtp_tracker_bad_chunks_total"), badBefore, "no bad report counted");
    assert.equal(await metric(registry, "pdtp_tracker_transfers_done_total"), doneBefore, "nothing done");
    // the fetcher's own report still settles it
    fetcher.send(report(TransferOutcome.TRANSFER_OUTCOME_OK));
    for (let i = 0; i < 100 && (await metric(registry, "pdtp_tracker_transfers_done_total")) === doneBefore; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await metric(registry, "pdtp_tracker_transfers_done_total"), doneBefore + 1);
  });

  it("three BAD_DATA reports ban a source; it is never used again", async () => {
    // a stream of its own: the seeder, a viewer that holds everything and serves, and a fetcher
    seeder.send({ $case: "publish", value: { name: "ban/test.bin", size: 40 * CHUNK, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    const holder = peer();
    const holderId = (await holder.hello(PeerRole.PEER_ROLE_VIEWER, 9500)).peerId;
    holder.send({
      $case: "join",
      value: { name: "ban/test.bin", mode: WantMode.WANT_MODE_BULK, have: [{ first: 0, last: 39 }], position: 0 },
    });
    await holder.next("joined");
    const fetcher = peer();
    await fetcher.hello(PeerRole.PEER_ROLE_VIEWER, 9600);
    fetcher.send({
      $case: "join",
      value: { name: "ban/test.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
    });
    await fetcher.next("joined");
    const badBefore = await metric(registry, "pdtp_tracker_bad_chunks_total");
    let bad = 0;
    let pending: Directive[] = (await fetcher.next("directives")).directives;
    while (bad < 3) {
      const fromHolder = pending.filter((d) => d.source?.peerId === holderId);
      assert.ok(fromHolder.length > 0, "a peer holding the chunks is preferred over the seeder");
      const d = fromHolder[0]!;
      fetcher.send({
        $case: "reports",
        value: {
          reports: [
            {
              transferId: d.transferId,
              outcome: TransferOutcome.TRANSFER_OUTCOME_BAD_DATA,
              bytes: 0,
              durationMs: 1,
              detail: "hash mismatch",
              httpStatus: 0,
              verified: [],
            },
          ],
        },
      });
      bad++;
      pending = pending.filter((x) => x !== d);
      if (bad < 3 && pending.filter((x) => x.source?.peerId === holderId).length === 0) {
        pending.push(...(await fetcher.next("directives")).directives);
      }
    }
    for (let i = 0; i < 100 && (await metric(registry, "pdtp_tracker_bad_chunks_total")) - badBefore < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await metric(registry, "pdtp_tracker_bad_chunks_total")) - badBefore, 3);
    // complete what is left; from now on only the seeder serves this fetcher
    const done = (ds: Directive[]) =>
      fetcher.send({
        $case: "reports",
        value: {
          reports: ds.map((x) => ({
            transferId: x.transferId,
            outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
            bytes: 1,
            durationMs: 1,
            detail: "",
            httpStatus: 0,
            verified: [x.range!],
          })),
        },
      });
    done(pending);
    let held = pending.reduce((n, x) => n + x.range!.last - x.range!.first + 1, 0);
    let fromSeeder = 0;
    while (held < 40) {
      const { directives } = await fetcher.next("directives");
      for (const x of directives) assert.notEqual(x.source?.peerId, holderId, "a banned source is never chosen");
      assert.ok(directives.every((x) => x.source?.peerId === seederId));
      fromSeeder += directives.length;
      held += directives.reduce((n, x) => n + x.range!.last - x.range!.first + 1, 0);
      done(directives);
    }
    assert.ok(fromSeeder > 0, "the chunks the banned peer sent badly come from the seeder");
  });

  it("a peer leaving cancels the transfers it was serving", async () => {
    const holder = peer();
    const holderId = (await holder.hello(PeerRole.PEER_ROLE_VIEWER, 9700)).peerId;
    seeder.send({ $case: "publish", value: { name: "leave/test.bin", size: 40 * CHUNK, version: 1 } });
    await seeder.next("publishResult");
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    holder.send({
      $case: "join",
      value: { name: "leave/test.bin", mode: WantMode.WANT_MODE_BULK, have: [{ first: 0, last: 39 }], position: 0 },
    });
    await holder.next("joined");
    const fetcher = peer();
    await fetcher.hello(PeerRole.PEER_ROLE_VIEWER, 9800);
    fetcher.send({
      $case: "join",
      value: { name: "leave/test.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
    });
    await fetcher.next("joined");
    const { directives } = await fetcher.next("directives");
    const mine = directives.filter((d) => d.source?.peerId === holderId).map((d) => d.transferId);
    assert.ok(mine.length > 0);
    holder.close();
    await holder.ended;
    const cancel = await fetcher.next("cancel");
    assert.deepEqual([...cancel.transferIds].sort(), [...mine].sort());
  });

  /** Publishes `name` from the shared seeder and waits for READY; resolves the stream id. */
  async function publishReady(name: string, size = 40 * CHUNK, version = 1): Promise<string> {
    seeder.send({ $case: "publish", value: { name, size, version } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    const ready = await seeder.next("publishResult");
    assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
    return ready.streamId;
  }

  async function joinAs(name: string, port: number, have: { first: number; last: number }[] = []) {
    const p = peer();
    const id = (await p.hello(PeerRole.PEER_ROLE_VIEWER, port)).peerId;
    p.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_BULK, have, position: 0 } });
    await p.next("joined");
    return { p, id };
  }

  function report(p: TestPeer, ds: readonly Directive[], outcome: TransferOutcome, httpStatus = 0) {
    p.send({
      $case: "reports",
      value: {
        reports: ds.map((x) => ({
          transferId: x.transferId,
          outcome,
          bytes: outcome === TransferOutcome.TRANSFER_OUTCOME_OK ? 1 : 0,
          durationMs: 1,
          detail: outcome === TransferOutcome.TRANSFER_OUTCOME_OK ? "" : "connect ECONNREFUSED",
          httpStatus,
          verified: outcome === TransferOutcome.TRANSFER_OUTCOME_OK ? [x.range!] : [],
        })),
      },
    });
  }

  async function describe(streamId: string) {
    return new Promise<{ peers: number; seeders: number }>((resolve, reject) =>
      client.describeStream({ name: "", streamId }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  }

  // 416 proves a false claim (bad data); a 403 may be a stale ticket (a strike, like unreachable).
  for (const [what, outcome, httpStatus, reason] of [
    ["unreachable", TransferOutcome.TRANSFER_OUTCOME_FAILED, 0, "unreachable"],
    ["refusing with 416", TransferOutcome.TRANSFER_OUTCOME_REFUSED, 416, "bad_data"],
    ["refusing with 403", TransferOutcome.TRANSFER_OUTCOME_REFUSED, 403, "unreachable"],
  ] as const) {
    it(`a viewer claiming every chunk but ${what} stops holding the seeder back after 3 failures`, async () => {
      const name = `dead/${what.replace(/ /g, "-")}.bin`;
      await publishReady(name);
      // claims all 40 chunks; its data port is never answered
      const liar = await joinAs(name, 1, [{ first: 0, last: 39 }]);
      const bannedBefore = await metric(registry, "pdtp_tracker_sources_banned_total", { reason });
      const fetcher = await joinAs(name, 9650);
      let pending = (await fetcher.p.next("directives")).directives;
      assert.ok(
        pending.every((d) => d.source?.peerId === liar.id),
        "while its claims stand, the peer is preferred and the seeder held back",
      );
      let failures = 0;
      const fromSeeder: Directive[] = [];
      while (fromSeeder.length === 0) {
        const toLiar = pending.filter((d) => d.source?.peerId === liar.id);
        fromSeeder.push(...pending.filter((d) => d.source?.peerId === seederId));
        assert.ok(failures < 3 || toLiar.length === 0, "no directive names the peer after 3 failures");
        if (toLiar.length > 0) {
          report(fetcher.p, toLiar, outcome, httpStatus);
          failures += toLiar.length;
        }
        if (fromSeeder.length === 0) pending = (await fetcher.p.next("directives", 2000)).directives;
      }
      assert.ok(failures >= 3);
      assert.equal((await metric(registry, "pdtp_tracker_sources_banned_total", { reason })) - bannedBefore, 1);
      // the rest of the file comes from the seeder, without waiting
      let held = 0;
      let batch = fromSeeder;
      for (;;) {
        for (const d of batch) assert.equal(d.source?.peerId, seederId);
        held += batch.reduce((n, x) => n + x.range!.last - x.range!.first + 1, 0);
        report(fetcher.p, batch, TransferOutcome.TRANSFER_OUTCOME_OK);
        if (held >= 40) break;
        batch = (await fetcher.p.next("directives", 2000)).directives;
      }
      assert.equal(held, 40);
      liar.p.close();
      fetcher.p.close();
    });
  }

  it("a message's reports change a source's trust in the order they came: a refusal, then an OK, still bans", async () => {
    await publishReady("dead/in-order.bin", 400 * CHUNK);
    const liar = await joinAs("dead/in-order.bin", 1, [{ first: 0, last: 399 }]);
    const bannedBefore = await metric(registry, "pdtp_tracker_sources_banned_total", { reason: "unreachable" });
    const fetcher = await joinAs("dead/in-order.bin", 9651);
    const send = (reports: [Directive, TransferOutcome, number][]) =>
      fetcher.p.send({
        $case: "reports",
        value: {
          reports: reports.map(([d, outcome, httpStatus]) => {
            const ok = outcome === TransferOutcome.TRANSFER_OUTCOME_OK;
            // an OK of its first chunk only: the rest stays wanted
            const verified = ok ? [{ first: d.range!.first, last: d.range!.first }] : [];
            return {
              transferId: d.transferId,
              outcome,
              bytes: ok ? CHUNK : 0,
              durationMs: 1000,
              detail: "",
              httpStatus,
              verified,
            };
          }),
        },
      });
    const toLiar: Directive[] = [];
    const take = async (n: number) => {
      while (toLiar.length < n) {
        toLiar.push(
          ...(await fetcher.p.next("directives", 2000)).directives.filter((d) => d.source?.peerId === liar.id),
        );
      }
    };
    // one served (the fetcher's rate known, it gets all its slots), then two failures: a strike short of a ban
    await take(1);
    send([[toLiar.shift()!, TransferOutcome.TRANSFER_OUTCOME_OK, 0]]);
    await take(4);
    send(toLiar.splice(0, 2).map((d) => [d, TransferOutcome.TRANSFER_OUTCOME_FAILED, 0]));
    // one message: the third strike (a 403), then a transfer the same source served
    const [refused, served] = toLiar;
    send([
      [refused!, TransferOutcome.TRANSFER_OUTCOME_REFUSED, 403],
      [served!, TransferOutcome.TRANSFER_OUTCOME_OK, 0],
    ]);
    const deadline = Date.now() + 5000;
    while ((await metric(registry, "pdtp_tracker_sources_banned_total", { reason: "unreachable" })) === bannedBefore) {
      assert.ok(Date.now() < deadline, "the refusal's strike bans the source before the OK after it is counted");
      await new Promise((r) => setTimeout(r, 20));
    }
    liar.p.close();
    fetcher.p.close();
  });

  it("a second Join of the same stream in one session ends it with INVALID_ARGUMENT", async () => {
    const { p } = await joinAs("movies/big.bin", 9660);
    p.send({ $case: "join", value: { name: "movies/big.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await expectStatus(p, grpc.status.INVALID_ARGUMENT, /already joined "movies\/big.bin".*once per session/);
  });

  it("a seeder republishing a changed file leaves the old version's swarm; its transfers are cancelled", async () => {
    const oldId = await publishReady("change/test.bin", 40 * CHUNK, 1);
    const fetcher = await joinAs("change/test.bin", 9670);
    const { directives } = await fetcher.p.next("directives");
    assert.ok(directives.length > 0 && directives.every((d) => d.source?.peerId === seederId));
    assert.equal((await describe(oldId)).seeders, 1);
    // the same version again changes nothing: no transfer is cancelled
    seeder.send({ $case: "publish", value: { name: "change/test.bin", size: 40 * CHUNK, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    await assert.rejects(fetcher.p.next("cancel", 200), /no cancel/);
    const newId = await publishReady("change/test.bin", 41 * CHUNK, 2);
    assert.notEqual(newId, oldId);
    const cancel = await fetcher.p.next("cancel");
    assert.deepEqual([...cancel.transferIds].sort(), directives.map((d) => d.transferId).sort());
    assert.equal((await describe(oldId)).seeders, 0, "the old version has no seeder left");
    assert.equal((await describe(newId)).seeders, 1);
    fetcher.p.close();
  });

  it("a file unpublished while its manifest is computed is not seeded when it becomes ready", async () => {
    seeder.send({ $case: "publish", value: { name: "gone/test.bin", size: 40 * CHUNK, version: 1 } });
    const accepted = await seeder.next("publishResult");
    assert.equal(accepted.status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    seeder.send({ $case: "unpublish", value: { name: "gone/test.bin" } });
    // ready once the manifest is in, but without this seeder
    let d = { peers: 0, seeders: -1 };
    for (let i = 0; i < 100; i++) {
      d = await describe(accepted.streamId).catch(() => d);
      if (d.seeders >= 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await describe(accepted.streamId)).seeders, 0);
    await assert.rejects(seeder.next("publishResult", 200), /no publishResult/);
  });

  it("viewers are sent a seeder's advertised address; the checksum service reads its internal one", async () => {
    const s = peer();
    const welcome = await s.hello(PeerRole.PEER_ROLE_SEEDER, 9400, {
      advertiseHost: "seed.example.net",
      advertisePort: 30080,
      internalHost: "seeder.internal",
      internalPort: 8000,
    });
    s.send({ $case: "publish", value: { name: "addressed.bin", size: 3 * CHUNK, version: 1 } });
    assert.equal((await s.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await s.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    assert.equal(checksum.requests.at(-1)!.sourceUrl, "http://seeder.internal:8000");
    const v = peer();
    await v.hello(PeerRole.PEER_ROLE_VIEWER, 9401);
    v.send({ $case: "join", value: { name: "addressed.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await v.next("joined");
    const { directives } = await v.next("directives");
    assert.deepEqual(directives[0]!.source, {
      peerId: welcome.peerId,
      host: "seed.example.net",
      port: 30080,
      seeder: true,
    });

    // a host alone keeps the data port; the internal address defaults to the connection's address
    const t = peer();
    await t.hello(PeerRole.PEER_ROLE_SEEDER, 9402, { advertiseHost: "2001:db8::7" });
    t.send({ $case: "publish", value: { name: "addressed2.bin", size: CHUNK, version: 1 } });
    assert.equal((await t.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await t.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    assert.equal(checksum.requests.at(-1)!.sourceUrl, "http://127.0.0.1:9402");
    const w = peer();
    await w.hello(PeerRole.PEER_ROLE_VIEWER, 9403);
    w.send({ $case: "join", value: { name: "addressed2.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await w.next("joined");
    const d = (await w.next("directives")).directives[0]!;
    assert.equal(`${d.source!.host} ${d.source!.port}`, "2001:db8::7 9402");
  });

  it("a bad advertised or internal address ends that session with INVALID_ARGUMENT naming the field", async () => {
    const cases: [PeerRole, Parameters<TestPeer["hello"]>[2], string][] = [
      [PeerRole.PEER_ROLE_SEEDER, { advertisePort: 70000 }, "Hello.advertise_port 70000 is not a TCP port"],
      [PeerRole.PEER_ROLE_SEEDER, { internalPort: 65536 }, "Hello.internal_port 65536 is not a TCP port"],
      [
        PeerRole.PEER_ROLE_SEEDER,
        { internalHost: "not a host" },
        'Hello.internal_host "not a host" is not a host name or IP',
      ],
      [
        PeerRole.PEER_ROLE_SEEDER,
        { advertiseHost: "http://x/" },
        'Hello.advertise_host "http://x/" is not a host name or IP',
      ],
      [PeerRole.PEER_ROLE_SEEDER, { internalHost: "[::1]" }, 'Hello.internal_host "[::1]" is not a host name or IP'],
      [PeerRole.PEER_ROLE_VIEWER, { internalHost: "10.0.0.1" }, "Hello.internal_host is for seeders only"],
      [PeerRole.PEER_ROLE_VIEWER, { advertisePort: 8000 }, "Hello.advertise_port is for seeders only"],
    ];
    for (const [role, address, details] of cases) {
      const p = peer();
      void p.hello(role, 9500, address).catch(() => undefined);
      await expectStatus(p, grpc.status.INVALID_ARGUMENT, details);
    }
    // the tracker goes on serving
    const ok = peer();
    assert.ok((await ok.hello(PeerRole.PEER_ROLE_SEEDER, 9501, { internalHost: "::1", internalPort: 1 })).peerId);
  });

  it("drain ends open sessions with UNAVAILABLE", async () => {
    const p = peer();
    await p.hello(PeerRole.PEER_ROLE_VIEWER, 9900);
    await tracker.drain();
    await expectStatus(p, grpc.status.UNAVAILABLE, "tracker shutting down");
  });
});

describe("tracker: a stream joinable while it is hashed, piece by piece", () => {
  const store = new MemorySwarmStore();
  const fixture = new ProtocolFixture(CHUNK, { peerKey: TEST_PEER, overrides: { store, pieceChunks: 4 } });
  const peer = () => fixture.peer();
  const hashPieces = (streamId: string, firstPiece: number, count: number) =>
    new Promise<GetHashPiecesResponse>((resolve, reject) =>
      fixture.client.getHashPieces({ streamId, firstPiece, count }, (e, r) => (e ? reject(e) : resolve(r))),
    );

  /** A seeder publishing NAME (12 chunks: 3 pieces of 4); resolves once it is READY. */
  async function publish(name: string) {
    const seeder = peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    seeder.send({ $case: "publish", value: { name, size: 12 * CHUNK, version: 1 } });
    const accepted = await seeder.next("publishResult");
    assert.equal(accepted.status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    const ready = await seeder.next("publishResult");
    assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
    return { seeder, streamId: ready.streamId };
  }

  /** A bulk viewer joined to NAME; resolves with its verified manifest header. */
  async function viewer(name: string) {
    const v = peer();
    const welcome = await v.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    v.send({ $case: "join", value: { name, mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    const joined = await v.next("joined");
    return { v, welcome, manifest: openManifest(joined.manifest!, welcome.networkKeys) };
  }

  const reportAll = (v: TestPeer, directives: Directive[]) =>
    v.send({
      $case: "reports",
      value: { reports: directives.map(okReport) },
    });

  it("READY with the first piece; transfers stop at the hashed frontier and go on as pieces arrive", async () => {
    const { streamId } = await publish("hold/film.bin");
    // READY came while the checksum service holds pieces 1 and 2 back: only piece 0 is stored
    assert.equal((await store.getStream(streamId))?.hashedChunks, 4);
    const { v, welcome, manifest } = await viewer("hold/film.bin");
    assert.equal(manifest.pieceCount, 3);
    assert.ok(manifest.signed.body.length < 100, "Joined carries a small header, not the hashes");
    const early = await hashPieces(streamId, 0, 3);
    assert.equal(early.pieces.length, 1, "pieces not hashed yet are not given");
    const p0 = manifest.openPiece(early.pieces[0]!, welcome.networkKeys, 0);
    assert.ok(p0.matches(3, doubleChunkHash("hold/film.bin", 3)));
    const first = await v.next("directives");
    const before = first.directives.map((d) => d.range!);
    assert.ok(
      before.every((r) => r.last <= 3),
      `only chunks with stored hashes are directed: ${JSON.stringify(before)}`,
    );
    reportAll(v, first.directives);
    fixture.checksum.release("hold/film.bin");
    const later: Directive[] = [];
    while (!later.some((d) => d.range!.last === 11)) {
      const { directives } = await v.next("directives");
      later.push(...directives);
      reportAll(v, directives);
    }
    assert.ok(later.every((d) => d.range!.first >= 4));
    const all = await hashPieces(streamId, 0, 64);
    assert.equal(all.pieces.length, 3);
    all.pieces.forEach((p, i) => manifest.openPiece(p, welcome.networkKeys, i));
    assert.equal((await store.getStream(streamId))?.hashedChunks, 12);
  });

  it("a hashing failure midway ends its viewers with FAILED_PRECONDITION and the reason", async () => {
    const { streamId } = await publish("fail-midway/film.bin");
    const { v } = await viewer("fail-midway/film.bin");
    reportAll(v, (await v.next("directives")).directives);
    fixture.checksum.release("fail-midway/film.bin");
    const st = await v.ended;
    assert.equal(st.code, grpc.status.FAILED_PRECONDITION, st.details);
    assert.equal(st.details, '"fail-midway/film.bin" cannot be downloaded: manifest not computed: source went away');
    const meta = await store.getStream(streamId);
    assert.equal(meta?.status, "failed");
    const err = await hashPieces(streamId, 0, 1).then(
      () => assert.fail("pieces of a failed stream"),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    const late = peer();
    await late.hello(PeerRole.PEER_ROLE_VIEWER, 9301);
    late.send({
      $case: "join",
      value: { name: "fail-midway/film.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
    });
    assert.equal((await late.ended).code, grpc.status.NOT_FOUND, "its name no longer leads to it");
  });

  it("GetHashPieces refuses bad arguments and unknown streams", async () => {
    const code = (streamId: string, first: number, count: number) =>
      hashPieces(streamId, first, count).then(
        () => grpc.status.OK,
        (e: grpc.ServiceError) => e.code,
      );
    assert.equal(await code("not an id", 0, 1), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code("AAAAAAAAAAAAAAAAAAAAAA", 0, 0), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code("AAAAAAAAAAAAAAAAAAAAAA", 0, 65), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code("AAAAAAAAAAAAAAAAAAAAAA", 0, 1), grpc.status.NOT_FOUND);
  });
});

describe("tracker: connections with no call are closed", () => {
  const IDLE_MS = 300;
  let checksum: Awaited<ReturnType<typeof startChecksumDouble>>;
  let tracker: RunningTracker;

  before(async () => {
    checksum = await startChecksumDouble(Signer.generate());
    tracker = await startProtocolTracker(checksum.port, CHUNK, { connectionIdleMs: IDLE_MS });
  });

  after(async () => {
    await tracker.drain();
    checksum.close();
  });

  it("a connection that opens no call, or whose calls ended, gets a GOAWAY and is closed", async () => {
    // a client that keeps its connection after its sessions ended held the tracker's HTTP/2 state for good
    const conn = http2.connect(`http://127.0.0.1:${tracker.port}`);
    conn.on("error", () => {}); // a reset fails the assertion below, not the whole file
    const closed = new Promise<string>((resolve) => {
      conn.once("goaway", () => resolve("goaway"));
      conn.once("close", () => resolve("close"));
    });
    const st = await Promise.race([closed, new Promise((r) => setTimeout(() => r("still open"), 5_000).unref())]);
    conn.destroy();
    assert.equal(st, "goaway");
  });

  it("a connection whose session stays open past the idle time is kept, and the session still answered", async () => {
    const client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
    try {
      const p = new TestPeer(client, TEST_PEER);
      await new Promise((r) => setTimeout(r, IDLE_MS * 4));
      const welcome = await p.hello(PeerRole.PEER_ROLE_VIEWER, 0);
      assert.ok(welcome.peerId);
      await new Promise((r) => setTimeout(r, IDLE_MS * 4));
      p.send({ $case: "join", value: { name: "nothing/here", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
      assert.equal((await p.ended).code, grpc.status.NOT_FOUND);
      // its call ended: once idle for long enough the tracker closes the connection (the
      // channel leaves READY), and a new call simply reconnects
      assert.equal(client.getChannel().getConnectivityState(false), grpc.connectivityState.READY);
      await new Promise((r) => setTimeout(r, IDLE_MS * 4));
      assert.equal(client.getChannel().getConnectivityState(false), grpc.connectivityState.IDLE);
      const again = new TestPeer(client, TEST_PEER);
      assert.ok((await again.hello(PeerRole.PEER_ROLE_VIEWER, 0)).peerId);
      again.call.cancel();
    } finally {
      client.close();
    }
  });
});

describe("tracker: a Have plans its sender only when it has a download slot free", () => {
  const registry = new Registry();
  const fixture = new ProtocolFixture(CHUNK, { peerKey: TEST_PEER, overrides: { registry } });
  /** Plans this replica made (pdtp_tracker_plan_seconds_count). */
  const plans = async () => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === "pdtp_tracker_plan_seconds");
    const values = (m as { values?: { value: number; metricName?: string }[] } | undefined)?.values ?? [];
    return values.find((v) => v.metricName === "pdtp_tracker_plan_seconds_count")?.value ?? 0;
  };

  it("a viewer telling chunks of its transfers with every slot busy is not planned; its report plans it", async () => {
    const seeder = fixture.peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    // 20 MiB of 1 KiB chunks: more than the ranges a viewer is given at once
    seeder.send({ $case: "publish", value: { name: "have/big.bin", size: 20 * 1024 * CHUNK, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    const ready = await seeder.next("publishResult");
    assert.equal(ready.status, PublishStatus.PUBLISH_STATUS_READY, ready.detail);
    const v = fixture.peer();
    await v.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    v.send({ $case: "join", value: { name: "have/big.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } });
    await v.next("joined");
    // a new viewer gets one transfer until it has a measured rate: its report gives it one
    const [opening] = (await v.next("directives")).directives;
    v.send({ $case: "reports", value: { reports: [okReport(opening!)] } });
    const inFlight: Directive[] = [];
    while (inFlight.length < 4) inFlight.push(...(await v.next("directives")).directives);
    assert.equal(inFlight.length, 4, "every download slot busy");
    const before = await plans();
    // the first chunks of a range came (dsclient tells a seeder's chunks before the range ends)
    const first = inFlight[0]!;
    v.send({
      $case: "have",
      value: { streamId: ready.streamId, ranges: [{ first: first.range!.first, last: first.range!.first + 1 }] },
    });
    await new Promise((r) => setTimeout(r, 600)); // over two schedule ticks
    assert.equal(await plans(), before, "no plan: it has no slot to fill");
    v.send({ $case: "reports", value: { reports: [okReport(first)] } });
    const next = await v.next("directives");
    assert.equal(next.directives.length, 1, "the freed slot is filled");
    assert.ok((await plans()) > before);
  });
});
