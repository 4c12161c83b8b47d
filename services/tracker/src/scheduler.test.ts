import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RangeSet, Signer, type ChunkRange } from "@distribustream/pdtp";
import { MemorySwarmStore, type AvailabilitySegment, type SourceCandidate } from "@distribustream/swarm-store";
import {
  DEFAULT_LIMITS,
  schedule,
  sameNetwork,
  wantWindow,
  type FetcherView,
  type SchedulerLimits,
} from "./scheduler.js";
import { Planner, DEFAULT_PLANNER } from "./planner.js";
import { TicketKeys } from "./ticketKeys.js";

const limits: SchedulerLimits = { ...DEFAULT_LIMITS, lookaheadChunks: 1000, bulkWindowChunks: 1000 };

function fetcher(over: Partial<FetcherView> = {}): FetcherView {
  return {
    peerId: "f",
    host: "10.0.0.9",
    mode: "bulk",
    position: 0,
    holdings: new RangeSet(),
    inFlight: [],
    downloads: 0,
    ...over,
  };
}

function source(peerId: string, held: ChunkRange[], over: Partial<SourceCandidate> = {}): SourceCandidate {
  return {
    peerId,
    host: "10.1.0.1",
    port: 8000,
    role: "viewer",
    holdings: new RangeSet(held),
    uploads: 0,
    served: 0,
    failures: 0,
    strikes: 0,
    bad: 0,
    banned: false,
    ...over,
  };
}

const seeder = (count: number, over: Partial<SourceCandidate> = {}) =>
  source("seed", [{ first: 0, last: count - 1 }], { role: "seeder", ...over });
const flat = (count: number, n: number): AvailabilitySegment[] => [{ first: 0, last: count - 1, count: n }];
const show = (as: ReturnType<typeof schedule>) => as.map((a) => `${a.range.first}-${a.range.last}@${a.source.peerId}`);
const fixed = () => 0.5;

describe("schedule", () => {
  it("fetches the rarest chunks first", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 29 },
      limits: { ...limits, maxDownloads: 2 },
      availability: [
        { first: 0, last: 9, count: 3 },
        { first: 10, last: 19, count: 1 },
        { first: 20, last: 29, count: 2 },
      ],
      sources: [source("a", [{ first: 0, last: 29 }])],
      random: fixed,
    });
    // starts in the rarest segment; a peer's run may continue over the next needed chunks it holds
    assert.deepEqual(show(got), ["10-25@a", "26-29@a"]);
  });

  it("fetches deadline-first inside the urgent window of an in-order peer", () => {
    const got = schedule({
      fetcher: fetcher({ mode: "in_order", position: 20, holdings: RangeSet.of(0, 19) }),
      bounds: { low: 0, high: 99 },
      limits: { ...limits, maxDownloads: 2, urgentChunks: 8, maxRangeChunks: 4 },
      availability: [
        { first: 0, last: 49, count: 5 },
        { first: 50, last: 99, count: 1 },
      ],
      sources: [source("a", [{ first: 0, last: 99 }])],
      random: fixed,
    });
    // the urgent window 20-27 comes first even though 50+ is rarer
    assert.deepEqual(show(got), ["20-23@a", "24-27@a"]);
  });

  it("goes rarest-first beyond the urgent window", () => {
    const got = schedule({
      fetcher: fetcher({ mode: "in_order", position: 0, holdings: RangeSet.of(0, 7) }),
      bounds: { low: 0, high: 99 },
      limits: { ...limits, maxDownloads: 1, urgentChunks: 8, maxRangeChunks: 4 },
      availability: [
        { first: 0, last: 59, count: 5 },
        { first: 60, last: 99, count: 1 },
      ],
      sources: [source("a", [{ first: 0, last: 99 }])],
      random: fixed,
    });
    assert.deepEqual(show(got), ["60-63@a"]);
  });

  it("never exceeds the fetcher's download slots", () => {
    const input = {
      bounds: { low: 0, high: 199 },
      limits: { ...limits, maxRangeChunks: 10 },
      availability: flat(200, 1),
      sources: [source("a", [{ first: 0, last: 199 }]), source("b", [{ first: 0, last: 199 }])],
      random: fixed,
    };
    assert.equal(schedule({ ...input, fetcher: fetcher() }).length, 4);
    assert.equal(schedule({ ...input, fetcher: fetcher({ downloads: 3 }) }).length, 1);
    assert.equal(schedule({ ...input, fetcher: fetcher({ downloads: 4 }) }).length, 0);
  });

  it("never exceeds a serving peer's upload slots", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 199 },
      limits: { ...limits, maxRangeChunks: 10 },
      availability: flat(200, 2),
      sources: [
        source("a", [{ first: 0, last: 199 }], { uploads: 3 }),
        source("b", [{ first: 0, last: 199 }], { uploads: 2 }),
      ],
      random: fixed,
    });
    const by = (id: string) => got.filter((a) => a.source.peerId === id).length;
    assert.equal(got.length, 3);
    assert.equal(by("a"), 1);
    assert.equal(by("b"), 2);
  });

  it("never exceeds a seeder's upload slots", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 199 },
      limits: { ...limits, maxRangeChunks: 10 },
      availability: flat(200, 0),
      sources: [seeder(200, { uploads: 7 })],
      random: fixed,
    });
    assert.equal(got.length, 1);
    assert.equal(got[0]!.source.peerId, "seed");
  });

  it("uses a seeder only for chunks no peer holds or fetches", () => {
    const got = schedule({
      fetcher: fetcher({ mode: "in_order" }),
      bounds: { low: 0, high: 47 },
      limits: { ...limits, maxRangeChunks: 16, urgentChunks: 8 },
      availability: [
        { first: 0, last: 15, count: 1 }, // a holds it
        { first: 16, last: 31, count: 1 }, // in flight to someone else: wait for it
        { first: 32, last: 47, count: 0 }, // nobody has it: the seeder injects it
      ],
      sources: [seeder(48), source("a", [{ first: 0, last: 15 }])],
      random: fixed,
    });
    assert.deepEqual(show(got), ["0-15@a", "32-47@seed"]);
  });

  it("prefers a peer over the seeder even when the seeder is idle", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 9 },
      limits,
      availability: flat(10, 1),
      sources: [seeder(10), source("a", [{ first: 0, last: 9 }], { uploads: 3 })],
      random: fixed,
    });
    assert.deepEqual(show(got), ["0-9@a"]);
  });

  it("lets a starving in-order peer take its urgent chunks from the seeder", () => {
    const base = {
      bounds: { low: 0, high: 31 },
      limits: { ...limits, urgentChunks: 8, maxRangeChunks: 16 },
      availability: flat(32, 1), // everything in flight elsewhere, nobody can serve yet
      sources: [seeder(32)],
      random: fixed,
      starving: true,
    };
    assert.deepEqual(show(schedule({ ...base, fetcher: fetcher({ mode: "in_order" }) })), ["0-7@seed"]);
    // not starving yet: it waits for the copies in flight
    assert.deepEqual(show(schedule({ ...base, starving: false, fetcher: fetcher({ mode: "in_order" }) })), []);
    // something in flight: it waits for the copy in flight
    assert.deepEqual(show(schedule({ ...base, fetcher: fetcher({ mode: "in_order", downloads: 1 }) })), []);
    // a bulk peer never has urgent chunks
    assert.deepEqual(show(schedule({ ...base, fetcher: fetcher() })), []);
  });

  it("never chooses a banned source", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 9 },
      limits,
      availability: flat(10, 1),
      sources: [source("evil", [{ first: 0, last: 9 }], { banned: true, bad: 3 })],
      random: fixed,
    });
    assert.deepEqual(got, []);
  });

  it("batches consecutive chunks into ranges of at most maxRangeChunks", () => {
    const got = schedule({
      fetcher: fetcher(),
      bounds: { low: 0, high: 39 },
      limits: { ...limits, maxRangeChunks: 16 },
      availability: [
        { first: 0, last: 4, count: 1 },
        { first: 5, last: 39, count: 1 },
      ],
      sources: [source("a", [{ first: 0, last: 39 }]), source("b", [{ first: 0, last: 39 }])],
      random: fixed,
    });
    const ranges = got.map((a) => a.range).sort((x, y) => x.first - y.first);
    assert.deepEqual(ranges, [
      { first: 0, last: 15 },
      { first: 16, last: 31 },
      { first: 32, last: 39 },
    ]);
  });

  it("reaches back over needed chunks before the rarest one, and prefers the source giving the longest range", () => {
    const rarestAt10 = [
      { first: 0, last: 9, count: 3 },
      { first: 10, last: 10, count: 1 },
      { first: 11, last: 31, count: 3 },
    ];
    const base = {
      fetcher: fetcher({ holdings: RangeSet.of(0, 1) }),
      bounds: { low: 0, high: 31 },
      limits: { ...limits, maxDownloads: 1, maxRangeChunks: 16 },
      availability: rarestAt10,
      random: fixed,
    };
    // the source's run ends at 12: the range takes the needed chunks before 10 it holds too (not 0-1, held)
    assert.deepEqual(show(schedule({ ...base, sources: [source("a", [{ first: 0, last: 12 }])] })), ["2-12@a"]);
    // never back past what the source holds, nor past maxRangeChunks
    assert.deepEqual(show(schedule({ ...base, sources: [source("a", [{ first: 8, last: 12 }])] })), ["8-12@a"]);
    assert.deepEqual(
      show(
        schedule({
          ...base,
          limits: { ...base.limits, maxRangeChunks: 5 },
          sources: [source("a", [{ first: 0, last: 12 }])],
        }),
      ),
      ["8-12@a"],
    );
    // of two idle peers holding the rarest chunk, the one that can serve more of the run around it
    assert.deepEqual(
      show(
        schedule({
          ...base,
          sources: [source("short", [{ first: 10, last: 11 }]), source("long", [{ first: 4, last: 20 }])],
        }),
      ),
      ["5-20@long"],
    );
    // a seeder's range stays on its piece and goes forward only
    assert.deepEqual(
      show(
        schedule({
          ...base,
          availability: [
            { first: 0, last: 9, count: 3 },
            { first: 10, last: 12, count: 0 },
            { first: 13, last: 31, count: 3 },
          ],
          sources: [seeder(32)],
        }),
      ),
      ["10-12@seed"],
    );
  });

  it("cuts a range where the source's holdings end and skips what it has or fetches", () => {
    const got = schedule({
      fetcher: fetcher({ holdings: RangeSet.of(0, 2), inFlight: [{ first: 6, last: 7 }] }),
      bounds: { low: 0, high: 11 },
      limits: { ...limits, maxDownloads: 4 },
      availability: flat(12, 1),
      sources: [source("a", [{ first: 0, last: 4 }]), source("b", [{ first: 8, last: 11 }])],
      random: fixed,
    });
    assert.deepEqual(show(got).sort(), ["3-4@a", "8-11@b"]);
  });

  it("prefers trusted sources, then the same /24", () => {
    const base = {
      fetcher: fetcher(),
      bounds: { low: 0, high: 3 },
      limits: { ...limits, maxDownloads: 1 },
      availability: flat(4, 2),
      random: fixed,
    };
    const all: ChunkRange[] = [{ first: 0, last: 3 }];
    assert.deepEqual(
      show(schedule({ ...base, sources: [source("flaky", all, { failures: 5 }), source("good", all, { served: 5 })] })),
      ["0-3@good"],
    );
    assert.deepEqual(
      show(schedule({ ...base, sources: [source("far", all), source("near", all, { host: "10.0.0.77" })] })),
      ["0-3@near"],
    );
  });

  it("wants nothing once everything from the position on is held or in flight", () => {
    const f = fetcher({
      mode: "in_order",
      position: 5,
      holdings: RangeSet.of(5, 8),
      inFlight: [{ first: 9, last: 9 }],
    });
    assert.equal(wantWindow(f, { low: 0, high: 9 }, limits), undefined);
    assert.deepEqual(wantWindow({ ...f, mode: "bulk" }, { low: 0, high: 9 }, limits), { first: 0, last: 9 });
    assert.equal(wantWindow(fetcher(), { low: 0, high: -1 }, limits), undefined, "an empty stream needs nothing");
  });

  it("keeps to the bounds: a window that starts past chunk 0 and ends at the edge", () => {
    const bounds = { low: 20, high: 40 };
    const f = fetcher({ mode: "in_order", position: 5 });
    assert.deepEqual(wantWindow(f, bounds, limits), { first: 20, last: 40 }, "a position below low starts at low");
    assert.deepEqual(wantWindow({ ...f, mode: "bulk" }, bounds, limits), { first: 20, last: 40 });
    assert.equal(wantWindow({ ...f, holdings: RangeSet.of(20, 40) }, bounds, limits), undefined);
    const got = schedule({
      fetcher: f,
      bounds,
      limits: { ...limits, maxDownloads: 4, maxRangeChunks: 8 },
      availability: [{ first: 20, last: 40, count: 0 }],
      sources: [seeder(100)],
      random: fixed,
    });
    assert.deepEqual(show(got), ["20-27@seed", "28-35@seed", "36-40@seed"]);
  });

  it("sameNetwork compares IPv4 /24 and IPv6 /64", () => {
    assert.equal(sameNetwork("10.0.0.1", "10.0.0.200"), true);
    assert.equal(sameNetwork("10.0.1.1", "10.0.0.1"), false);
    assert.equal(sameNetwork("2001:db8::1", "2001:db8:0:0:ffff::2"), true);
    assert.equal(sameNetwork("2001:db8:1::1", "2001:db8::1"), false);
    assert.equal(sameNetwork("10.0.0.1", "::1"), false);
  });
});

describe("Planner with the memory store (super-seeding)", () => {
  it("keeps seeder egress near one copy while many viewers download", async () => {
    const store = new MemorySwarmStore();
    const chunks = 64;
    await store.createStream({
      streamId: "s",
      name: "f",
      size: chunks * 1024,
      chunkSize: 1024,
      version: 1,
      kind: "file",
      createdMs: 0,
    });
    await store.putHashPiece("s", 0, Uint8Array.of(1), chunks);
    await store.markReady("s", Uint8Array.of(1), 0);
    await store.joinPeer(
      "s",
      {
        peerId: "seed",
        host: "10.9.0.1",
        port: 9000,
        role: "seeder",
        mode: "bulk",
        position: 0,
        have: [{ first: 0, last: chunks - 1 }],
      },
      0,
    );
    const viewers = Array.from({ length: 12 }, (_, i) => `v${i}`);
    for (const v of viewers) {
      await store.joinPeer(
        "s",
        {
          peerId: v,
          host: `10.0.${viewers.indexOf(v)}.1`,
          port: 8000,
          role: "viewer",
          mode: "in_order",
          position: 0,
          have: [],
        },
        0,
      );
    }
    const planner = new Planner(store, TicketKeys.fixed(Signer.generate()), DEFAULT_PLANNER);
    let seederChunks = 0;
    let peerChunks = 0;
    for (let round = 0; round < 200; round++) {
      const started: { streamId: string; transferId: number; fetcher: string; range: ChunkRange; seeder: boolean }[] =
        [];
      for (const v of viewers) {
        const plan = await planner.plan("s", v, round);
        for (const d of plan.directives) {
          started.push({
            streamId: d.streamId,
            transferId: d.transferId,
            fetcher: v,
            range: d.range!,
            seeder: d.source!.seeder,
          });
        }
      }
      if (started.length === 0) break;
      // every transfer completes before the next round
      for (const t of started) {
        await store.takeTransfer(t.streamId, t.transferId);
        await store.addHoldings("s", t.fetcher, [t.range]);
        const n = t.range.last - t.range.first + 1;
        if (t.seeder) seederChunks += n;
        else peerChunks += n;
      }
      for (const v of viewers) {
        const held = (await store.getPeer("s", v))!.holdings;
        await store.setPosition("s", v, held.firstMissing(0));
      }
    }
    for (const v of viewers) assert.equal((await store.getPeer("s", v))!.holdings.toString(), `0-${chunks - 1}`, v);
    assert.equal(seederChunks + peerChunks, chunks * viewers.length);
    assert.ok(seederChunks <= chunks * 1.5, `seeder sent ${seederChunks} chunks for a ${chunks}-chunk file`);
  });
});
