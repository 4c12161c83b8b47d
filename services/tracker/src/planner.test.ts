import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Signer } from "@distribustream/pdtp";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { DEFAULT_PLANNER, Planner } from "./planner.js";
import { TicketKeys } from "./ticketKeys.js";

const KiB = 1024;
const CHUNK = 256 * KiB;

/** A ready stream of `chunks` chunks (`hashed` of them hashed) with one seeder, and an empty viewer "v". */
async function swarm(chunks: number, hashed = chunks) {
  const store = new MemorySwarmStore();
  const size = chunks * CHUNK;
  const meta = { streamId: "s", name: "s.bin", size, chunkSize: CHUNK, version: 1, kind: "file" as const };
  await store.createStream({ ...meta, createdMs: 0 });
  await store.putHashPiece("s", 0, new Uint8Array([1]), hashed);
  await store.markReady("s", new Uint8Array([1]), 0);
  const peer = { host: "10.0.0.1", port: 9000, mode: "bulk" as const, position: 0 };
  await store.joinPeer("s", { ...peer, peerId: "seed", role: "seeder", have: [{ first: 0, last: chunks - 1 }] }, 0);
  await store.joinPeer("s", { ...peer, peerId: "v", host: "10.0.0.2", role: "viewer", have: [] }, 0);
  return store;
}

describe("Planner: directives sized to the fetcher's receive rate", () => {
  it("slow start: one transfer until the fetcher's rate is measured, then all its slots", async () => {
    const store = await swarm(64);
    const planner = new Planner(store, TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    assert.equal((await planner.plan("s", "v", 1_000)).directives.length, 1);
    assert.equal((await planner.plan("s", "v", 1_000)).directives.length, 0, "its one slot is busy");
    const more = await planner.plan("s", "v", 1_000, 8 * 1024 * KiB);
    assert.equal(more.directives.length, DEFAULT_PLANNER.maxDownloads - 1);
  });

  it("without a measured rate: ranges up to 4 MiB, deadline at 128 KiB/s", async () => {
    const planner = new Planner(await swarm(64), TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    const [d] = (await planner.plan("s", "v", 1_000)).directives;
    assert.ok(d);
    assert.equal(d.range!.last - d.range!.first + 1, 16, "16 chunks of 256 KiB");
    assert.equal(planner.transferTimeoutMs(16 * CHUNK), 32_000, "4 MiB at 128 KiB/s");
  });

  it("a slow link gets about 8 s of its rate per directive, and three times its time to finish", async () => {
    const planner = new Planner(await swarm(64), TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    const rate = 128 * KiB; // bytes/s one transfer of this fetcher gets: a quarter of a 512 KiB/s link
    const [d] = (await planner.plan("s", "v", 1_000, rate)).directives;
    assert.ok(d);
    const chunks = d.range!.last - d.range!.first + 1;
    assert.equal(chunks, 4, "8 s at 128 KiB/s = 1 MiB = 4 chunks");
    // 1 MiB at a third of 128 KiB/s: 24 s
    assert.equal(planner.transferTimeoutMs(chunks * CHUNK, rate), 24_000);
  });

  it("a fast link keeps the byte cap and the usual deadline", async () => {
    const planner = new Planner(await swarm(64), TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    const [d] = (await planner.plan("s", "v", 1_000, 100 * 1024 * KiB)).directives;
    assert.equal(d!.range!.last - d!.range!.first + 1, 16);
    assert.equal(planner.transferTimeoutMs(16 * CHUNK, 100 * 1024 * KiB), 10_000);
  });
});

describe("Planner: the hashed frontier", () => {
  it("directs only chunks whose hashes are stored, and more once the frontier grows", async () => {
    const store = await swarm(64, 8);
    const planner = new Planner(store, TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    const fast = 100 * 1024 * KiB;
    const first = await planner.plan("s", "v", 1_000, fast);
    assert.deepEqual(
      first.directives.map((d) => [d.range!.first, d.range!.last]),
      [[0, 7]],
      "chunks 8 and beyond could not be verified yet",
    );
    assert.equal(first.satisfied, false);
    const waiting = await planner.plan("s", "v", 1_000, fast);
    assert.deepEqual(waiting.directives, []);
    assert.equal(waiting.satisfied, false, "a fetcher waiting for hashes stays hungry");
    const epoch = waiting.epoch;
    await store.putHashPiece("s", 1, new Uint8Array([1]), 40);
    const more = await planner.plan("s", "v", 1_000, fast);
    assert.ok(more.epoch > epoch, "a stored piece bumps the epoch, so the tick replans");
    const last = Math.max(...more.directives.map((d) => d.range!.last));
    assert.equal(Math.min(...more.directives.map((d) => d.range!.first)), 8);
    assert.ok(last <= 39 && last >= 8, `last directed chunk ${last}`);
  });

  it("reports the failure of a stream whose hashing failed", async () => {
    const store = await swarm(64, 8);
    const planner = new Planner(store, TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    await store.failStream("s", "manifest not computed: source went away");
    const plan = await planner.plan("s", "v", 1_000);
    assert.equal(plan.failure, "manifest not computed: source went away");
    assert.deepEqual(plan.directives, []);
  });
});

describe("Planner: a live stream's moving bounds", () => {
  it("plans a live stream within its moving bounds, and a fetcher at the edge waits for it", async () => {
    const store = new MemorySwarmStore();
    await store.createStream({
      streamId: "s",
      name: "live",
      chunkSize: CHUNK,
      version: 1,
      kind: "live",
      windowChunks: 40,
      createdMs: 0,
    });
    await store.markReady("s", new Uint8Array([1]), 0);
    await store.raiseHigh("s", 49);
    await store.raiseLow("s", 10);
    const peer = { host: "10.0.0.1", port: 9000, position: 0 };
    await store.joinPeer(
      "s",
      { ...peer, peerId: "seed", role: "seeder", mode: "bulk", have: [{ first: 0, last: 49 }] },
      0,
    );
    await store.joinPeer(
      "s",
      { ...peer, peerId: "v", host: "10.0.0.2", role: "viewer", mode: "in_order", have: [] },
      0,
    );
    const planner = new Planner(store, TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    const fast = 100 * 1024 * KiB;
    const got: number[][] = [];
    for (let i = 0; i < 10; i++) {
      const plan = await planner.plan("s", "v", 1_000, fast);
      for (const d of plan.directives) {
        got.push([d.range!.first, d.range!.last]);
        await store.takeTransfer("s", d.transferId);
        await store.addHoldings("s", "v", [d.range!]);
      }
    }
    assert.equal(Math.min(...got.map((r) => r[0]!)), 10, "nothing below the low bound, from the low bound on");
    assert.equal(Math.max(...got.map((r) => r[1]!)), 49, "nothing past the edge");
    const atEdge = await planner.plan("s", "v", 1_000, fast);
    assert.deepEqual(atEdge.directives, []);
    assert.equal(atEdge.satisfied, false, "a fetcher at the live edge stays hungry");
    await store.raiseHigh("s", 59);
    await store.addHoldings("s", "seed", [{ first: 50, last: 59 }]);
    assert.ok((await planner.plan("s", "v", 1_000, fast)).epoch > atEdge.epoch, "the edge moving replans it");
    const next = await store.transfersOf("s", "v");
    assert.deepEqual(
      next.map((t) => [t.range.first, t.range.last]),
      [[50, 59]],
    );
  });
});
