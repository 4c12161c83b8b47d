import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PeerRole, PublishStatus, TransferOutcome, WantMode, type Directive } from "@distribustream/pdtp";
import { Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { ProtocolFixture } from "./testing/index.js";

const CHUNK = 1024;

/** A memory store in which one peer's plans stop at their first read until the test opens the gate. */
class GatedStore extends MemorySwarmStore {
  gated: string | undefined;
  private gate: Promise<void> = Promise.resolve();
  /** Resolves when a plan of the gated peer reached the gate. */
  reached: Promise<void> = Promise.resolve();
  private arrive = (): void => {};
  open = (): void => {};

  shut(peerId: string): void {
    this.gated = peerId;
    this.gate = new Promise((resolve) => (this.open = resolve));
    this.reached = new Promise((resolve) => (this.arrive = resolve));
  }

  override async fetcherView(streamId: string, fetcherId: string): ReturnType<MemorySwarmStore["fetcherView"]> {
    if (fetcherId === this.gated) {
      this.arrive();
      await this.gate;
    }
    return super.fetcherView(streamId, fetcherId);
  }
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m as { values?: { value: number }[] } | undefined)?.values?.[0]?.value ?? 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("tracker: plans wait for a free plan slot, reports do not", () => {
  const registry = new Registry();
  const store = new GatedStore();
  const fixture = new ProtocolFixture(CHUNK, { overrides: { store, registry, planSlots: 1 } });
  const peer = () => fixture.peer();

  /** An OK report of the first chunk of a directive's range, fetched at one chunk a minute. */
  const ok = (d: Directive) => ({
    $case: "reports" as const,
    value: {
      reports: [
        {
          transferId: d.transferId,
          outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
          bytes: CHUNK,
          durationMs: 60_000,
          detail: "",
          httpStatus: 0,
          verified: [{ first: d.range!.first, last: d.range!.first }],
        },
      ],
    },
  });

  it("with the only slot taken, a viewer's reports are settled at once, and the plans they ask for come as one when it frees", async () => {
    const seeder = peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    seeder.send({ $case: "publish", value: { name: "slots.bin", size: 64 * CHUNK, version: 1 } });
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_ACCEPTED);
    assert.equal((await seeder.next("publishResult")).status, PublishStatus.PUBLISH_STATUS_READY);
    const join = {
      $case: "join" as const,
      value: { name: "slots.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 },
    };

    const viewer = peer();
    await viewer.hello(PeerRole.PEER_ROLE_VIEWER, 9201);
    viewer.send(join);
    await viewer.next("joined");
    // before its rate is known a viewer gets one transfer; a slow one makes the next ranges one chunk each
    const [first] = (await viewer.next("directives")).directives;
    viewer.send(ok(first!));
    const inFlight = (await viewer.next("directives")).directives;
    assert.ok(inFlight.length >= 2, `${inFlight.length} transfers in flight`);

    // another viewer (it holds the whole file) joins: its plan takes the only slot and holds it
    const other = peer();
    const welcome = await other.hello(PeerRole.PEER_ROLE_VIEWER, 9202);
    store.shut(welcome.peerId);
    other.send({ ...join, value: { ...join.value, have: [{ first: 0, last: 63 }] } });
    await other.next("joined");
    await store.reached;

    const done = await metric(registry, "pdtp_tracker_transfers_done_total");
    viewer.send(ok(inFlight[0]!));
    viewer.send(ok(inFlight[1]!));
    for (let i = 0; i < 200 && (await metric(registry, "pdtp_tracker_transfers_done_total")) < done + 2; i++) {
      await sleep(10);
    }
    assert.equal(await metric(registry, "pdtp_tracker_transfers_done_total"), done + 2, "both reports settled");
    assert.equal(await metric(registry, "pdtp_tracker_plans_waiting"), 1, "one plan waits, for both");
    await sleep(300);
    assert.deepEqual(
      viewer.inbox.map((b) => b.$case),
      [],
      "no plan while the slot is taken",
    );

    store.open();
    const next = (await viewer.next("directives")).directives;
    assert.equal(next.length, 2, "one plan fills both freed slots");
    await sleep(300);
    assert.deepEqual(
      viewer.inbox.map((b) => b.$case),
      [],
      "and no second plan for the second report",
    );
    assert.equal(await metric(registry, "pdtp_tracker_plans_waiting"), 0);
  });
});
