import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { after, describe, it } from "node:test";
import { PeerProbe, tcpConnect, type ProbeResult } from "./peerProbe.js";

const opts = { timeoutMs: 500, ttlMs: 1_000, concurrency: 2, maxQueued: 1, maxCached: 3 };

describe("PeerProbe", () => {
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  it("tells a listening port from a closed one over real sockets", async () => {
    const server = createServer((c) => c.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const open = (server.address() as { port: number }).port;
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const probe = new PeerProbe(opts);
    assert.equal(await probe.reachable("127.0.0.1", open), true);
    assert.equal(await probe.reachable("127.0.0.1", closedPort), false);
    assert.equal(await tcpConnect("127.0.0.1", closedPort, 500), false);
  });

  it("probes an address:port once per TTL, concurrent asks sharing one probe, then again", async () => {
    let now = 0;
    const calls: string[] = [];
    const results: ProbeResult[] = [];
    const probe = new PeerProbe(
      opts,
      async (host, port) => {
        calls.push(`${host}:${port}`);
        return port === 1;
      },
      (r) => results.push(r),
      () => now,
    );
    const answers = await Promise.all([probe.reachable("10.0.0.1", 1), probe.reachable("10.0.0.1", 1)]);
    assert.deepEqual(answers, [true, true]);
    assert.equal(await probe.reachable("10.0.0.1", 2), false);
    now = 999;
    assert.equal(await probe.reachable("10.0.0.1", 1), true);
    assert.equal(await probe.reachable("10.0.0.1", 2), false, "a negative answer is cached too");
    assert.deepEqual(calls, ["10.0.0.1:1", "10.0.0.1:2"]);
    now = 1_000 + 999;
    assert.equal(await probe.reachable("10.0.0.1", 1), true);
    assert.deepEqual(calls, ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:1"], "probed again after the TTL");
    assert.deepEqual(results, ["reachable", "unreachable", "reachable"]);
  });

  it("runs at most `concurrency` probes, queues maxQueued more, and answers the rest unreachable unprobed", async () => {
    let running = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const results: ProbeResult[] = [];
    const probe = new PeerProbe(
      { ...opts, maxCached: 100 },
      async () => {
        running++;
        most = Math.max(most, running);
        await new Promise<void>((r) => release.push(r));
        running--;
        return true;
      },
      (r) => results.push(r),
    );
    const asks = [1, 2, 3, 4].map((port) => probe.reachable("10.0.0.2", port));
    await new Promise((r) => setImmediate(r));
    assert.equal(running, 2, "two probes at once");
    assert.equal(await asks[3], false, "the fourth neither runs nor waits");
    assert.deepEqual(results, ["busy"]);
    while (running > 0 || release.length > 0) {
      release.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await Promise.all(asks.slice(0, 3)), [true, true, true]);
    assert.equal(most, 2);
    assert.equal(probe.size, 3, "the busy answer is not cached");
  });

  it("remembers at most maxCached answers", async () => {
    const probe = new PeerProbe(opts, async () => true);
    for (let port = 1; port <= 10; port++) await probe.reachable("10.0.0.3", port);
    assert.equal(probe.size, 3);
  });
});
