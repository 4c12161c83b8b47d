import assert from "node:assert/strict";
import { test } from "node:test";
import { PeerMessage, RangeSet, TransferOutcome, type ChunkRange } from "@distribustream/pdtp";
import { ControlBatcher, MAX_DELAYS, MAX_MESSAGE_BYTES, MAX_RANGES } from "./control.js";

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
      httpStatus: 0,
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

test("after positionUnknown the first position goes out even if the Join said the same", async () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "s1",
    20,
  );
  b.positionKnown(0);
  b.setPosition(0);
  await tick(50);
  assert.equal(sent.length, 0, "the position the Join said is not sent again");
  b.positionUnknown();
  b.setPosition(0);
  await tick(50);
  assert.deepEqual(
    sent.map((m) => (m.body?.$case === "position" ? m.body.value.nextChunk : m.body?.$case)),
    [0],
  );
  b.setPosition(0);
  await tick(50);
  assert.equal(sent.length, 1, "then an unchanged position is not sent again");
  b.close();
});

test("many reports with long details are split into messages of at most 32 KiB, in order", async () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "s1",
  );
  for (let i = 1; i <= 1000; i++) {
    b.report({
      transferId: 4_000_000_000 + i,
      outcome: TransferOutcome.TRANSFER_OUTCOME_FAILED,
      bytes: 2 ** 40,
      durationMs: 2 ** 31,
      detail: "é".repeat(100), // 200 bytes
      httpStatus: 0,
      verified: [
        { first: 2 ** 31 + i, last: 2 ** 31 + i },
        { first: 2 ** 31 + 10_000 + i, last: 2 ** 31 + 20_000 + i },
      ],
    });
  }
  b.flush();
  assert.ok(sent.length > 1, "more than one message");
  const ids: number[] = [];
  for (const m of sent) {
    const bytes = PeerMessage.encode(m).finish().length;
    assert.ok(bytes <= MAX_MESSAGE_BYTES, `message of ${bytes} bytes`);
    assert.equal(m.body?.$case, "reports");
    if (m.body?.$case === "reports") ids.push(...m.body.value.reports.map((r) => r.transferId - 4_000_000_000));
  }
  assert.deepEqual(
    ids,
    Array.from({ length: 1000 }, (_, i) => i + 1),
  );
  b.close();
});

test("a fragmented verified set and Have are split so that no message exceeds the bound", () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "s1",
  );
  const every2nd = (from: number, n: number): ChunkRange[] =>
    Array.from({ length: n }, (_, i) => ({ first: from + 2 * i, last: from + 2 * i }));
  const verified = every2nd(2 ** 31, 5000);
  b.report({
    transferId: 1,
    outcome: TransferOutcome.TRANSFER_OUTCOME_OK,
    bytes: 1,
    durationMs: 1,
    detail: "",
    httpStatus: 0,
    verified,
  });
  b.held(every2nd(2 ** 32 - 20_000, 5000));
  b.flush();
  const credited = new RangeSet();
  for (const m of sent) {
    const bytes = PeerMessage.encode(m).finish().length;
    assert.ok(bytes <= MAX_MESSAGE_BYTES, `${m.body?.$case} message of ${bytes} bytes`);
    if (m.body?.$case === "reports") {
      assert.equal(m.body.value.reports[0]!.verified.length, MAX_RANGES);
      credited.addAll(m.body.value.reports[0]!.verified);
    }
    if (m.body?.$case === "have") {
      assert.ok(m.body.value.ranges.length <= MAX_RANGES);
      credited.addAll(m.body.value.ranges);
    }
  }
  assert.equal(credited.count, 10_000, "every held chunk is credited once");
  b.close();
});

test("a live viewer's playback rides on the next Position: delays of chunks written and chunks skipped", async () => {
  const sent: PeerMessage[] = [];
  const b = new ControlBatcher(
    (m) => sent.push(m),
    () => "live-1",
    30,
  );
  b.played([120], 0);
  await tick(50);
  assert.equal(sent.length, 0, "no position yet (not tuned in): the playback waits for one");
  b.setPosition(2 ** 32 + 1);
  b.played([130.4, -5], 2);
  b.rejectedChunk("replayed");
  b.rejectedChunk("replayed");
  b.rejectedChunk("bad-data");
  await tick(50);
  assert.equal(sent.length, 1);
  const p1 = sent[0]!.body?.$case === "position" ? sent[0]!.body.value : undefined;
  assert.deepEqual(p1, {
    streamId: "live-1",
    nextChunk: 2 ** 32 + 1,
    live: { delaysMs: [120, 130, 0], skipped: 2, rejected: { replayed: 2, "bad-data": 1 } },
  });
  b.played([], 1);
  await tick(50);
  const p2 = sent[1]!.body?.$case === "position" ? sent[1]!.body.value : undefined;
  assert.deepEqual(
    p2,
    { streamId: "live-1", nextChunk: 2 ** 32 + 1, live: { delaysMs: [], skipped: 1, rejected: {} } },
    "a skip alone is news: the same position goes again with it",
  );
  b.played(
    Array.from({ length: 3 * MAX_DELAYS }, (_, i) => i),
    0,
  );
  b.flush();
  const p3 = sent[2]!.body?.$case === "position" ? sent[2]!.body.value : undefined;
  assert.equal(p3?.live?.delaysMs.length, MAX_DELAYS, "a burst is sampled down");
  assert.ok(PeerMessage.encode(sent[2]!).finish().length < MAX_MESSAGE_BYTES);
  b.setPosition(2 ** 32 + 1);
  await tick(50);
  assert.equal(sent.length, 3, "nothing new: nothing sent");
  b.close();
});
