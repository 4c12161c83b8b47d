import assert from "node:assert/strict";
import { test } from "node:test";
import { TransferOutcome, type PeerMessage } from "@distribustream/pdtp";
import { ControlBatcher } from "./control.js";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("reports of transfers ending together go out in one message, at once", async () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "s1",
  );
  for (let i = 1; i <= 5; i++) {
    b.report({
      transferId: i,
      outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
      bytes: 1,
      durationMs: 1,
      detail: "",
      verified: [{ first: i, last: i }],
    });
  }
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.body?.$case, "reports");
  assert.equal(sent[0]!.body?.$case === "reports" && sent[0]!.body.value.reports.length, 5);
  b.close();
});

test("position and have are coalesced: many updates, one message each per interval", async () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "s1",
    50,
  );
  b.positionKnown(0);
  for (let i = 1; i <= 200; i++) {
    b.setPosition(i);
    b.held([{ first: 1000 + i, last: 1000 + i }]);
  }
  await tick(120);
  assert.deepEqual(
    sent.map((m) => m.body?.$case),
    ["have", "position"],
  );
  const have = sent[0]!.body?.$case === "have" ? sent[0]!.body.value.ranges : [];
  assert.deepEqual(have, [{ first: 1001, last: 1200 }], "200 chunks, one range");
  assert.equal(sent[1]!.body?.$case === "position" && sent[1]!.body.value.nextChunk, 200);
  b.setPosition(200);
  await tick(80);
  assert.equal(sent.length, 2, "an unchanged position is not sent again");
  b.close();
});
