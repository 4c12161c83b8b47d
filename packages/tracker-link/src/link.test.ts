import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  PeerRole,
  TrackerService,
  type Hello,
  type PeerMessage,
  type TrackerMessage,
  type TrackerServer,
} from "@distribustream/pdtp";
import { TrackerLink, type LinkPolicy, type Retry, type SessionEnd, type TrackerSession } from "./index.js";

const hello: Hello = {
  role: PeerRole.PEER_ROLE_VIEWER,
  dataPort: 1234,
  agent: "link-test",
  credential: "",
  advertiseHost: "",
  advertisePort: 0,
  internalHost: "",
  internalPort: 0,
  peerKey: Buffer.alloc(0),
};

/** A real gRPC tracker that welcomes every session and keeps what it was sent. */
class Tracker {
  readonly received: PeerMessage[] = [];
  readonly calls: grpc.ServerDuplexStream<PeerMessage, TrackerMessage>[] = [];
  private server: grpc.Server | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    public port = 0,
    private readonly answer: (m: PeerMessage) => TrackerMessage | undefined = (m) =>
      m.body?.$case === "hello"
        ? { body: { $case: "welcome", value: { peerId: "p", observedHost: "", ticketKeys: [], networkKeys: [] } } }
        : undefined,
  ) {}

  async start(): Promise<this> {
    const server = new grpc.Server();
    const impl: TrackerServer = {
      session: (call) => {
        this.calls.push(call);
        call.on("data", (m: PeerMessage) => {
          this.received.push(m);
          const a = this.answer(m);
          if (a) call.write(a);
          for (const w of this.waiters.splice(0)) w();
        });
        call.on("end", () => call.end());
        call.on("error", () => {});
        for (const w of this.waiters.splice(0)) w();
      },
      describeStream: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
      listStreams: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
      getHashPieces: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    };
    server.addService(TrackerService, impl);
    this.port = await new Promise((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    this.server = server;
    return this;
  }

  count(kind: string): number {
    return this.received.filter((m) => m.body?.$case === kind).length;
  }

  async until(pred: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Ends every session as a draining tracker does: UNAVAILABLE. */
  drain(): void {
    for (const c of this.calls.splice(0)) c.emit("error", { code: grpc.status.UNAVAILABLE, details: "draining" });
  }

  stop(): void {
    this.server?.forceShutdown();
  }

  /** Shuts down as the tracker drains: sessions end with UNAVAILABLE, GOAWAY, the port closes. */
  async shutdown(): Promise<void> {
    const server = this.server!;
    const done = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    this.drain();
    await done;
  }
}

const fast = { baseMs: 20, maxMs: 100, jitter: "full" } as const;

/** Retries every end but a TLS failure; gives up after `attempts` (Infinity by default). */
function policy(attempts = Infinity): LinkPolicy {
  return {
    connect: { attempts, backoff: fast },
    reconnect: { attempts, backoff: fast },
    retryable: (end) =>
      end.tls
        ? { retry: false, error: new Error(`tls: ${end.tls.kind}`) }
        : { retry: true, reason: `${grpc.status[end.code]}: ${end.details}` },
    exhausted: (failures, last) => new Error(`unreachable after ${failures} attempts (${last.reason})`),
  };
}

/** A link that resyncs with a "have" of its resync count, and records its retries. */
function link(target: string, p: LinkPolicy, extra: { tls?: object } = {}) {
  const retries: Retry[] = [];
  const resyncs: TrackerSession[] = [];
  const ends: SessionEnd[] = [];
  const messages: TrackerMessage[] = [];
  const l = new TrackerLink({
    target,
    ...extra,
    hello: () => hello,
    policy: p,
    resync: (s) => {
      resyncs.push(s);
      s.send({
        body: { $case: "have", value: { streamId: "s", ranges: [{ first: resyncs.length, last: resyncs.length }] } },
      });
    },
    onMessage: (m) => messages.push(m),
    onSessionEnd: (_s, e) => ends.push(e),
    onRetry: (r) => retries.push(r),
  });
  return { link: l, retries, resyncs, ends, messages };
}

describe("tracker link", () => {
  const cleanup: (() => void)[] = [];
  after(() => cleanup.forEach((f) => f()));

  test("connects, says Hello, resyncs on the Welcome and passes later messages on", async () => {
    const t = await new Tracker().start();
    cleanup.push(() => t.stop());
    const { link: l, resyncs, messages } = link(`127.0.0.1:${t.port}`, policy());
    await t.until(() => t.count("have") === 1, "the resync");
    assert.equal(t.received[0]!.body?.$case, "hello", "Hello first");
    assert.deepEqual(t.received[0]!.body?.value, hello);
    assert.equal(resyncs.length, 1);
    assert.equal(l.session, resyncs[0]);
    assert.equal(l.session!.welcome.peerId, "p");
    t.calls[0]!.write({ body: { $case: "notice", value: { message: "hi" } } });
    await t.until(() => messages.length > 0, "the notice");
    assert.equal(messages[0]!.body?.$case, "notice");
    l.send({ body: { $case: "leave", value: { streamId: "s" } } });
    await t.until(() => t.count("leave") === 1, "the leave");
    await l.close();
    await l.done;
    assert.equal(l.session, undefined);
  });

  test("reconnects after the tracker restarts, and resyncs the new session", async () => {
    const t = await new Tracker().start();
    const { link: l, resyncs, ends, retries } = link(`127.0.0.1:${t.port}`, policy());
    await t.until(() => resyncs.length === 1, "the first session");
    t.stop();
    await new Promise((r) => setTimeout(r, 300)); // a few attempts find nothing
    const again = await new Tracker(t.port).start();
    cleanup.push(() => again.stop());
    await again.until(() => again.count("have") === 1, "the resync after the restart");
    assert.equal(again.received[0]!.body?.$case, "hello");
    assert.deepEqual(again.received[1]!.body?.value, { streamId: "s", ranges: [{ first: 2, last: 2 }] });
    assert.equal(resyncs.length, 2);
    assert.equal(ends.length, 1, "the lost session ended once");
    assert.equal(ends[0]!.welcomed, true);
    assert.ok(retries.length >= 2, "attempts while the tracker was down were retried");
    assert.notEqual(resyncs[0]!.generation, resyncs[1]!.generation);
    await l.close();
  });

  test("a draining tracker's UNAVAILABLE ends the session: the link reconnects", async () => {
    const t = await new Tracker().start();
    cleanup.push(() => t.stop());
    const { link: l, resyncs, ends } = link(`127.0.0.1:${t.port}`, policy());
    await t.until(() => resyncs.length === 1, "the first session");
    t.drain();
    await t.until(() => t.count("have") === 2, "the resync after the drain");
    assert.equal(ends[0]!.code, grpc.status.UNAVAILABLE);
    assert.equal(ends[0]!.details, "draining");
    // a clean end (status OK) is reconnected too
    t.calls.splice(0).forEach((c) => c.end());
    await t.until(() => t.count("have") === 3, "the resync after a clean end");
    assert.equal(ends[1]!.code, grpc.status.OK);
    // a tracker that drains and goes away (GOAWAY), then one on the same port: the link finds it
    await t.shutdown();
    const next = await new Tracker(t.port).start();
    cleanup.push(() => next.stop());
    await next.until(() => next.count("have") === 1, "the resync with the next tracker");
    assert.equal(ends[2]!.code, grpc.status.UNAVAILABLE);
    assert.equal(resyncs.length, 4);
    await l.close();
  });

  test("waits between attempts within the backoff's bounds, and jittered", async () => {
    const t = await new Tracker().start();
    const target = `127.0.0.1:${t.port}`;
    t.stop(); // nothing listens there now
    const backoff = { baseMs: 10, maxMs: 40, jitter: "spread" } as const;
    const p = { ...policy(8), connect: { attempts: 8, backoff } };
    const { link: l, retries } = link(target, p);
    await assert.rejects(l.done, /unreachable after 8 attempts \(UNAVAILABLE/);
    assert.deepEqual(
      retries.map((r) => r.failures),
      [1, 2, 3, 4, 5, 6, 7],
    );
    for (const r of retries) {
      const d = Math.min(40, 10 * 2 ** (r.failures - 1));
      assert.ok(r.delayMs >= d / 2 && r.delayMs < (3 * d) / 2, `${r.delayMs} within [${d / 2}, ${(3 * d) / 2})`);
    }
    assert.ok(new Set(retries.map((r) => r.delayMs)).size > 1, "jittered");
  });

  test("gives up after N failed attempts with the policy's error; a lost session first waits a step", async () => {
    const t = await new Tracker().start();
    const {
      link: l,
      retries,
      resyncs,
    } = link(`127.0.0.1:${t.port}`, {
      ...policy(3),
      reconnect: { attempts: 3, backoff: { baseMs: 5, maxMs: 5, jitter: "none" } },
    });
    await t.until(() => resyncs.length === 1, "the session");
    t.stop();
    await assert.rejects(l.done, /unreachable after 3 attempts/);
    // the lost session (not a failed attempt) and two failed attempts were retried, each after a wait
    assert.deepEqual(
      retries.map((r) => [r.failures, r.delayMs]),
      [
        [0, 5],
        [1, 5],
        [2, 5],
      ],
    );
  });

  test("an attempt fails until the tracker took the resync in", async () => {
    // the tracker welcomes, then ends every session before answering what the resync sent
    const t = await new Tracker(0, (m) => {
      if (m.body?.$case === "hello")
        return {
          body: { $case: "welcome", value: { peerId: "p", observedHost: "", ticketKeys: [], networkKeys: [] } },
        };
      return undefined;
    }).start();
    cleanup.push(() => t.stop());
    const l = new TrackerLink({
      target: `127.0.0.1:${t.port}`,
      hello: () => hello,
      policy: policy(2),
      resync: (s) =>
        new Promise<void>((resolve) => {
          s.send({ body: { $case: "leave", value: { streamId: "s" } } });
          void resolve; // the answer never comes
        }),
      onMessage: () => {},
    });
    await t.until(() => t.count("leave") === 1, "the resync");
    t.drain();
    await t.until(() => t.count("leave") === 2, "the second resync");
    t.drain();
    await assert.rejects(l.done, /unreachable after 2 attempts \(UNAVAILABLE: draining\)/);
  });

  test("a resync that throws ends the link with its error", async () => {
    const t = await new Tracker().start();
    cleanup.push(() => t.stop());
    const l = new TrackerLink({
      target: `127.0.0.1:${t.port}`,
      hello: () => hello,
      policy: policy(),
      resync: () => {
        throw new Error("wrong network");
      },
      onMessage: () => {},
    });
    await assert.rejects(l.done, /wrong network/);
    assert.equal(l.session, undefined);
  });

  test("a TLS failure is told apart and, refused by the policy, not retried", async () => {
    const t = await new Tracker().start();
    cleanup.push(() => t.stop());
    // TLS to a plaintext tracker
    const { link: l, retries } = link(`localhost:${t.port}`, policy(), { tls: {} });
    await assert.rejects(l.done, /tls: plaintext-tracker/);
    assert.equal(retries.length, 0);
    assert.equal(t.count("hello"), 0);
  });

  test("a quiet verdict ends the link without an error; close ends a link that waits", async () => {
    const t = await new Tracker().start();
    const target = `127.0.0.1:${t.port}`;
    t.stop();
    const quiet = new TrackerLink({
      target,
      hello: () => hello,
      policy: { ...policy(), retryable: () => ({ retry: false }) },
      resync: () => {},
      onMessage: () => {},
    });
    await quiet.done;
    const { link: waiting, retries } = link(target, {
      ...policy(),
      connect: { attempts: Infinity, backoff: { baseMs: 60_000, maxMs: 60_000, jitter: "none" } },
    });
    while (retries.length === 0) await new Promise((r) => setTimeout(r, 10));
    await waiting.close();
    await waiting.done;
  });
});
