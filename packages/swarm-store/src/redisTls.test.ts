import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { swarmStoreContract } from "./contract.js";
import { openSwarmStore } from "./open.js";
import type { SwarmStore } from "./store.js";
import { redisTlsForTests, type TestRedisTls } from "./testing/index.js";

/** A Redis over TLS only, with a password, its certificate signed by a throwaway CA. */
const server: TestRedisTls = await redisTlsForTests({ password: "secret" });
after(() => server.stop());
const run = `t-${randomUUID().slice(0, 8)}`;
let n = 0;

swarmStoreContract("redis over TLS with a password and --redis-ca", () =>
  openSwarmStore(server.url, { tlsCa: server.ca, prefix: `${run}-${++n}` }),
);

/** Calls `ping` until its rejection's message matches `re` (the client reports errors as it reconnects). */
async function pingFailure(store: SwarmStore, re: RegExp): Promise<string> {
  const deadline = Date.now() + 10_000;
  let last = "";
  for (;;) {
    try {
      await store.ping(1000);
      last = "ping answered";
    } catch (err) {
      last = (err as Error).message;
      if (re.test(last)) return last;
    }
    if (Date.now() > deadline) assert.fail(`ping never failed with ${re}; last: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("openSwarmStore over TLS", () => {
  it("a wrong password: ping rejects with WRONGPASS and the reported error names the URL without the password", async () => {
    const url = `rediss://:not-the-password@127.0.0.1:${server.nodes[0]!.port}`;
    const reported: Error[] = [];
    const store = await openSwarmStore(url, { tlsCa: server.ca, onConnectionError: (e) => reported.push(e) });
    try {
      const message = await pingFailure(store, /WRONGPASS|invalid password/);
      assert.doesNotMatch(message, /not-the-password/);
      assert.ok(reported.length >= 1, "the connection error was reported");
      assert.match(reported[0]!.message, /WRONGPASS/);
      assert.ok(
        reported[0]!.message.includes(`rediss://:***@127.0.0.1:${server.nodes[0]!.port}`),
        reported[0]!.message,
      );
      assert.ok(reported.every((e) => !e.message.includes("not-the-password")));
      // reconnection attempts fail the same way: reported once, not at every attempt
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(reported.filter((e) => /WRONGPASS/.test(e.message)).length, 1);
    } finally {
      await store.close();
    }
  });

  it("without the CA the server certificate is refused", async () => {
    const store = await openSwarmStore(server.url);
    try {
      // waits for "reconnecting" (between attempts): ioredis leaves a TLS handshake it
      // abandons on close without an error listener, and the failed one would throw
      await pingFailure(store, /reconnecting.*certificate/);
    } finally {
      await store.close();
    }
  });

  it("a CA for a URL without TLS, or without any URL, is refused naming the redacted URL", async () => {
    await assert.rejects(
      openSwarmStore("redis://:secret@127.0.0.1:1", { tlsCa: server.ca }),
      (err: Error) => /does not use TLS/.test(err.message) && err.message.includes("redis://:***@127.0.0.1:1"),
    );
    await assert.rejects(openSwarmStore(undefined, { tlsCa: server.ca }), /no Redis URL/);
  });
});

describe("openSwarmStore on a Redis Cluster over TLS", () => {
  let cluster: TestRedisTls;
  before(async () => {
    cluster = await redisTlsForTests({ password: "secret", cluster: true });
  });
  after(() => cluster.stop());

  it("with the CA: streams on every shard, and the nodes it discovers by IP are verified too", async () => {
    // one seed node: the other masters are discovered from CLUSTER SLOTS, as 127.0.0.1:PORT
    const seed = `rediss+cluster://:secret@127.0.0.1:${cluster.nodes[0]!.port}`;
    const store = await openSwarmStore(seed, { tlsCa: cluster.ca, prefix: run });
    try {
      const ids = Array.from({ length: 12 }, (_, i) => `s${i}`);
      for (const id of ids) {
        await store.createStream({
          streamId: id,
          name: `n/${id}`,
          size: 4096,
          chunkSize: 1024,
          version: 1,
          kind: "file",
          createdMs: 0,
        });
      }
      for (const id of ids) assert.equal((await store.getStream(id))?.name, `n/${id}`);
      await store.ping(5000);
    } finally {
      await store.close();
    }
  });

  it("a wrong password: ping rejects naming WRONGPASS, not only 'Failed to refresh slots cache'", async () => {
    const url = cluster.url.replace(":secret@", ":nope@");
    const store = await openSwarmStore(url, { tlsCa: cluster.ca });
    try {
      const message = await pingFailure(store, /WRONGPASS|invalid password/);
      assert.doesNotMatch(message, /nope/);
    } finally {
      await store.close();
    }
  });
});
