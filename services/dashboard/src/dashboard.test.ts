import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore, type ReplicaStats } from "@distribustream/swarm-store";
import type { StatsSnapshot, StreamDetail } from "./api.js";
import { startDashboard, type RunningDashboard } from "./index.js";

const log = createLogger("dashboard-test", { level: "silent" });
const TOKEN = "a-long-enough-test-token";

const summary = (over: Partial<ReplicaStats> = {}): ReplicaStats => ({
  replicaId: "r1",
  address: "127.0.0.1:6086",
  startedMs: Date.now() - 5000,
  sentMs: Date.now(),
  intervalMs: 1000,
  viewers: 1,
  seeders: 1,
  directivesPerSecond: 3,
  storeLatencyMs: 0.2,
  storeUp: true,
  cleanupLeader: true,
  checksumReachable: true,
  unreachablePeers: 0,
  streams: [],
  totals: [{ name: "a.bin", peerBytes: 3000, seederBytes: 1000, completed: 2 }],
  seederSessions: [],
  notices: [],
  noticesDropped: 0,
  ...over,
});

/** Reads an SSE response until `count` events arrived; resolves their names and data. */
async function events(url: string, count: number, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const reader = res.body!.getReader();
  const got: { event: string; data: unknown; atMs: number }[] = [];
  let text = "";
  while (got.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) got.push({ event, data: JSON.parse(data), atMs: Date.now() });
    }
  }
  await reader.cancel();
  return got;
}

describe("dashboard server", () => {
  const store = new MemorySwarmStore();
  let open: RunningDashboard;
  let locked: RunningDashboard;
  let streamId = "";

  before(async () => {
    const meta = await store.createStream({
      streamId: "file1",
      name: "a.bin",
      kind: "file",
      size: 100 * 1024,
      chunkSize: 1024,
      version: 1,
      createdMs: 1,
    });
    streamId = meta.streamId;
    await store.markReady(streamId, new Uint8Array([1]), Date.now());
    await store.joinPeer(
      streamId,
      {
        peerId: "v1",
        host: "10.0.0.1",
        port: 8000,
        role: "viewer",
        mode: "in_order",
        position: 0,
        have: [{ first: 0, last: 49 }],
      },
      Date.now(),
    );
    open = await startDashboard({ host: "127.0.0.1", port: 0, store, registry: new Registry(), log });
    locked = await startDashboard({
      host: "127.0.0.1",
      port: 0,
      store,
      registry: new Registry(),
      log,
      access: { token: TOKEN, basic: { user: "ops", password: "secret pass" } },
    });
    await store.publishFleetEvent({ type: "replica-stats", stats: summary() });
    await new Promise((r) => setTimeout(r, 1300));
  });

  after(async () => {
    await open.close();
    await locked.close();
    await store.close();
  });

  it("serves the stream list and the fleet from the store and the replicas' summaries", async () => {
    const s = (await (await fetch(`${open.url}api/stats.json`)).json()) as StatsSnapshot;
    assert.equal(s.streams.length, 1);
    const row = s.streams[0]!;
    assert.deepEqual(
      [row.name, row.kind, row.size, row.chunks, row.viewers, row.seeders, row.completed, row.offloadPercent],
      ["a.bin", "file", 100 * 1024, 100, 1, 0, 2, 75],
    );
    assert.deepEqual(
      s.fleet.replicas.map((r) => [r.replicaId, r.alive, r.directivesPerSecond]),
      [["r1", true, 3]],
    );
    assert.equal(s.fleet.store.kind, "memory");
    assert.equal(s.fleet.checksum.configured, false);
    const d = (await (await fetch(`${open.url}api/streams/${streamId}.json?peers=5`)).json()) as StreamDetail;
    assert.equal(d.stream.name, "a.bin");
    assert.deepEqual(d.availability.minHolders.slice(48, 52), [1, 1, 0, 0], "chunks 0-49 held by the one viewer");
  });

  it("pushes one update a second to every listener, from the same snapshot", async () => {
    const [a, b] = await Promise.all([events(`${open.url}api/events`, 3), events(`${open.url}api/events`, 3)]);
    for (const got of [a!, b!]) {
      assert.deepEqual(
        got.map((e) => e.event),
        ["stats", "stats", "stats"],
      );
      const gap = got[2]!.atMs - got[1]!.atMs;
      assert.ok(gap >= 900, `updates ${gap} ms apart: at most one a second`);
    }
    assert.deepEqual(a![2]!.data, b![2]!.data, "every browser gets the same update");
    const detail = await events(`${open.url}api/events?stream=${streamId}`, 2);
    assert.deepEqual(
      detail.map((e) => e.event),
      ["stream", "stream"],
    );
    assert.equal((detail[0]!.data as StreamDetail).stream.streamId, streamId);
  });

  it("answers bad input with a clear 4xx and keeps serving", async () => {
    const cases: [string, number, RegExp][] = [
      [`api/streams/nosuchstream.json`, 404, /no stream with id nosuchstream/],
      [`api/streams/${"x".repeat(300)}.json`, 400, /is not a stream id/],
      [`api/streams/${streamId}`, 400, /is not a stream id/],
      [`api/streams/${streamId}.json?peers=99999999999`, 400, /peers must be an integer from 1 to 200/],
      [`api/streams/${streamId}.json?peers=-1`, 400, /peers must be an integer/],
      [`api/streams/${streamId}.json?peers=1&peers=2`, 400, /peers must be an integer/],
      [`api/stats.json?streams=0`, 400, /streams must be an integer from 1 to 200/],
      [`api/stats.json?limit=5`, 400, /unknown query parameter "limit"/],
      [`api/events?stream=nope`, 404, /no stream with id nope/],
      [`api/events?stream=%E0%A4%A`, 400, /./],
      [`api/events?stream=a/b`, 400, /is not a stream id/],
      [`nothing/here`, 404, /no such page/],
    ];
    for (const [path, status, message] of cases) {
      const res = await fetch(`${open.url}${path}`);
      assert.equal(res.status, status, path);
      assert.match(((await res.json()) as { error: string }).error, message, path);
    }
    assert.equal((await fetch(`${open.url}api/stats.json`, { method: "POST" })).status, 405);
    assert.equal((await fetch(`${open.url}api/stats.json?streams=1`)).status, 200, "still serving");
  });

  it("with access control, every route but /healthz answers 401 without the token, SSE and stats included", async () => {
    const routes = [
      "",
      "stream?id=file1",
      "fleet",
      "api/stats.json",
      `api/streams/${streamId}.json`,
      "api/events",
      `api/events?stream=${streamId}`,
      "metrics",
      "assets/streams.js",
      "assets/style.css",
      "assets/vendor/uPlot.iife.min.js",
      "nothing/here",
    ];
    for (const r of routes) {
      const tries: Record<string, string>[] = [
        {},
        { authorization: "Bearer wrong-token-of-some-length" },
        { cookie: "ds_dashboard_token=nope" },
      ];
      for (const headers of tries) {
        const res = await fetch(`${locked.url}${r}`, { headers, redirect: "manual" });
        assert.equal(res.status, 401, `${r} ${JSON.stringify(headers)}`);
        const body = await res.text();
        assert.doesNotMatch(body, /a\.bin|replica|file1/, "no data in the refusal");
      }
    }
    assert.equal((await fetch(`${locked.url}healthz`)).status, 200);
    const bearer = { authorization: `Bearer ${TOKEN}` };
    assert.equal((await fetch(`${locked.url}api/stats.json`, { headers: bearer })).status, 200);
    const basic = { authorization: `Basic ${Buffer.from("ops:secret pass").toString("base64")}` };
    assert.equal((await fetch(`${locked.url}api/stats.json`, { headers: basic })).status, 200);
    const wrong = { authorization: `Basic ${Buffer.from("ops:nope").toString("base64")}` };
    const refused = await fetch(`${locked.url}api/stats.json`, { headers: wrong });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get("www-authenticate") ?? "", /^Basic realm=/);
    assert.equal((await events(`${locked.url}api/events`, 1, bearer)).length, 1);
  });

  it("a page opened with ?token= sets the token cookie and drops the token from the address", async () => {
    const res = await fetch(`${locked.url}fleet?token=${TOKEN}`, { redirect: "manual" });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/fleet");
    const cookie = res.headers.get("set-cookie") ?? "";
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    const page = await fetch(`${locked.url}fleet`, { headers: { cookie: cookie.split(";")[0]! } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    assert.doesNotMatch(page.headers.get("content-security-policy") ?? "", /unsafe-inline/);
  });

  it("refuses to serve a non-loopback address without access control", async () => {
    await assert.rejects(
      startDashboard({ host: "0.0.0.0", port: 0, store, registry: new Registry(), log }),
      /would serve 0\.0\.0\.0 to anyone/,
    );
  });
});
