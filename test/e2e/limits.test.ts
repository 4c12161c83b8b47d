import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { ChecksumClient, TrackerClient, WantMode, type ListStreamsResponse } from "@distribustream/pdtp";
import { DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js";
import { openSession, type TestSession } from "../support/tracker.js";

/** ListStreams on `target`; resolves with the answer or the error status. */
function listStreams(target: string): Promise<ListStreamsResponse | ServiceError> {
  const client = new TrackerClient(target, credentials.createInsecure());
  return new Promise<ListStreamsResponse | ServiceError>((resolve) =>
    client.listStreams({}, (err, res) => resolve(err ?? res)),
  ).finally(() => client.close());
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/**
 * Per-address limits of the tracker's public port, with real processes:
 * clients "from" 127.0.0.2 and 127.0.0.3 reach the tracker through TCP
 * proxies whose connections to it come from those addresses. 127.0.0.2
 * goes over the session limit and, separately, the message rate, and gets
 * RESOURCE_EXHAUSTED naming the limit, while 127.0.0.3 downloads; the
 * refusals are counted in pdtp_tracker_limited_total and logged once per
 * limit, not once per refusal. An oversized message is refused too, and
 * the tracker keeps serving.
 */
describe("per-IP limits on the tracker", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let tracker: Proc;
  let from2: TcpProxy;
  let from3: TcpProxy;
  let t2 = "";
  let t3 = "";
  let metricsUrl = "";
  let checksumTarget = "";

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-limits-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(2 * 1024 * 1024 + 11));
    sys = new Services(dir);
    const [pdtp, checksum, data, m1, m2, m3] = (await freePorts(6)) as [number, number, number, number, number, number];
    metricsUrl = `http://127.0.0.1:${m2}/metrics`;
    checksumTarget = `127.0.0.1:${checksum}`;
    await sys.checksum(checksum, m1);
    // 5 messages/s with a burst of 50 (10 s worth)
    tracker = await sys.tracker({
      port: pdtp,
      checksum,
      metricsPort: m2,
      extra: ["--max-sessions-per-ip", "3", "--max-messages-per-ip", "5"],
    });
    await sys.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: data, metricsPort: m3 });
    from2 = await startTcpProxy([{ host: "127.0.0.1", port: pdtp }], { localAddress: "127.0.0.2" });
    from3 = await startTcpProxy([{ host: "127.0.0.1", port: pdtp }], { localAddress: "127.0.0.3" });
    t2 = `127.0.0.1:${from2.port}`;
    t3 = `127.0.0.1:${from3.port}`;
  });

  after(async () => {
    await from2?.close();
    await from3?.close();
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a 4th session from 127.0.0.2 gets RESOURCE_EXHAUSTED while 127.0.0.3 downloads", async () => {
    const held = [openSession(t2), openSession(t2), openSession(t2)];
    try {
      const welcomes = await Promise.all(held.map((s) => s.next("welcome")));
      for (const w of welcomes) {
        assert.equal(w.body?.$case === "welcome" && w.body.value.observedHost, "127.0.0.2", "the proxy's address");
      }
      const over = openSession(t2);
      const end = await over.ended;
      over.close();
      assert.equal(end.code, status.RESOURCE_EXHAUSTED, end.details);
      assert.equal(end.details, "too many sessions from 127.0.0.2 (limit 3)");

      const c = startNode(DSCLIENT, [`pdtp://${t3}/film.bin`, "-o", "film.out", "-q"], { cwd: dir });
      assert.equal(await c.exited, 0, c.stderr());
      assert.equal(await sha256File(join(dir, "film.out")), await sha256File(join(dir, "media/film.bin")));

      // a session that ends frees its place
      held.shift()!.close();
      await until("the tracker counts 2 viewer sessions", async () => {
        return (await metric(metricsUrl, "pdtp_tracker_sessions", { role: "viewer" })) === 2;
      });
      const again = openSession(t2);
      held.push(again);
      await again.next("welcome");
    } finally {
      for (const s of held) s.close();
    }
    assert.equal(await metric(metricsUrl, "pdtp_tracker_limited_total", { limit: "sessions" }), 1);
    assert.equal(tracker.stdout().match(/refused: too many sessions from 127\.0\.0\.2 \(limit 3\)/g)?.length, 1);
  });

  test("over the message rate, 127.0.0.2's session and unary calls get RESOURCE_EXHAUSTED; 127.0.0.3 is served", async () => {
    await until("the held sessions are gone", async () => {
      return (await metric(metricsUrl, "pdtp_tracker_sessions", { role: "viewer" })) === 0;
    });
    const before = await metric(metricsUrl, "pdtp_tracker_limited_total", { limit: "messages" });
    let s: TestSession | undefined;
    try {
      s = openSession(t2);
      await s.next("welcome");
      s.send({
        body: { $case: "join", value: { name: "film.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } },
      });
      const joined = await s.next("joined");
      const streamId = joined.body?.$case === "joined" ? joined.body.value.descriptor!.streamId : "";
      for (let i = 0; i < 200; i++) s.send({ body: { $case: "position", value: { streamId, nextChunk: 0 } } });
      const end = await s.ended;
      assert.equal(end.code, status.RESOURCE_EXHAUSTED, end.details);
      assert.equal(end.details, "too many messages from 127.0.0.2 (limit 5/s, burst 50)");
    } finally {
      s?.close();
    }
    // its bucket is empty: its unary calls are refused (a token may have come back meanwhile)
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => listStreams(t2)));
    const refused = answers.filter((a) => "code" in a);
    assert.ok(refused.length >= 4, `${refused.length} of 5 calls refused`);
    for (const e of refused) {
      assert.equal((e as ServiceError).code, status.RESOURCE_EXHAUSTED);
      assert.equal((e as ServiceError).details, "too many messages from 127.0.0.2 (limit 5/s, burst 50)");
    }
    // another address is served
    const other = await listStreams(t3);
    assert.ok(!("code" in other), `127.0.0.3 answered: ${(other as ServiceError).details}`);
    assert.deepEqual(
      other.streams.map((d) => d.name),
      ["film.bin"],
    );
    assert.equal(
      await metric(metricsUrl, "pdtp_tracker_limited_total", { limit: "messages" }),
      before + 1 + refused.length,
      "the session's refusal and each unary one",
    );
    assert.equal(
      tracker.stdout().match(/refused: too many messages from 127\.0\.0\.2/g)?.length,
      1,
      "one warn line for the flood, not one per refusal",
    );
  });

  test("an oversized message gets RESOURCE_EXHAUSTED and the tracker serves the next session", async () => {
    const big = openSession(t3, { agent: "x".repeat(100 * 1024) });
    const end = await big.ended;
    big.close();
    assert.equal(end.code, status.RESOURCE_EXHAUSTED, end.details);
    assert.match(end.details, /larger than max/);
    const next = openSession(t3);
    try {
      await next.next("welcome");
    } finally {
      next.close();
    }
  });

  test("the checksum service refuses an oversized request with RESOURCE_EXHAUSTED and keeps answering", async () => {
    const client = new ChecksumClient(checksumTarget, credentials.createInsecure());
    try {
      const err = await new Promise<ServiceError | null>((resolve) => {
        const call = client.computeManifest({
          streamId: "x",
          name: "n".repeat(100 * 1024),
          size: 1,
          chunkSize: 1024,
          version: 1,
          sourceUrl: "http://127.0.0.1:1",
          ticket: undefined,
          pieceChunks: 0,
        });
        call.on("data", () => {});
        call.on("error", (e: ServiceError) => resolve(e));
        call.on("end", () => resolve(null));
      });
      assert.equal(err?.code, status.RESOURCE_EXHAUSTED, err?.details);
      const key = await new Promise<unknown>((resolve, reject) =>
        client.getNetworkKey({}, (e, k) => (e ? reject(e) : resolve(k))),
      );
      assert.ok(key);
    } finally {
      client.close();
    }
  });
});
