import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LivePlayout } from "./livePlayout.js";

/** 5 chunks a second: chunk s has source time 1000 + (s - 100) * 200. */
const ts = (s: number) => 1000 + (s - 100) * 200;

function announced(p: LivePlayout, from: number, to: number): void {
  for (let s = from; s <= to; s++) p.announce(s, ts(s));
}

describe("live playout", () => {
  test("tunes in at the edge minus the prebuffer and writes in order as chunks arrive", () => {
    const p = new LivePlayout({ prebufferMs: 500 });
    assert.equal(p.step(0).write.length, 0, "nothing announced: not tuned in");
    announced(p, 100, 120);
    const now = ts(120) + 100;
    assert.deepEqual(p.step(now).write, []);
    assert.equal(p.position, 118, "the oldest chunk within 500 ms of the edge");
    assert.equal(p.wants(117), false);
    assert.equal(p.wants(119), true);
    p.arrived(119);
    assert.deepEqual(p.step(now + 10).write, [], "119 waits for 118");
    p.arrived(118);
    assert.deepEqual(p.step(now + 20).write, [118, 119]);
    assert.equal(p.delayMs, now + 20 - ts(118), "the delay is measured at the first write");
    assert.equal(p.arrived(118), false, "a chunk already written is not wanted again");
  });

  test("a chunk that misses its deadline is skipped when a later one can be written instead", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    announced(p, 100, 120);
    const t0 = ts(120);
    p.step(t0);
    p.arrived(118);
    p.arrived(119);
    assert.deepEqual(p.step(t0).write, [118, 119]);
    const delay = p.delayMs!;
    announced(p, 121, 122);
    p.arrived(121);
    const due = ts(120) + delay + 300;
    const early = p.step(due - 1);
    assert.deepEqual(early.skipped, [], "not yet due");
    assert.equal(early.wakeAt, due, "wake at the deadline");
    const late = p.step(due);
    assert.deepEqual(late.skipped, [120]);
    assert.deepEqual(late.write, [121]);
  });

  test("a stall keeps every chunk: nothing is skipped while nothing later has arrived", () => {
    const p = new LivePlayout({ prebufferMs: 500, retuneAfterMs: 60_000 });
    announced(p, 100, 120);
    p.step(ts(120));
    p.arrived(118);
    assert.deepEqual(p.step(ts(120)).write, [118]);
    // The source (or the swarm) stalls for 30 s: 119 and 120 arrive late, then nothing is lost.
    const s = p.step(ts(120) + 30_000);
    assert.deepEqual(s.skipped, []);
    assert.equal(s.wakeAt, undefined, "no deadline to wake for: nothing to skip to");
    p.arrived(120);
    p.arrived(119);
    assert.deepEqual(p.step(ts(120) + 30_001).write, [119, 120]);
  });

  test("a viewer far behind the edge after a stall re-tunes to the edge, never backwards", () => {
    const p = new LivePlayout({ prebufferMs: 500, retuneAfterMs: 3_000 });
    announced(p, 100, 120);
    p.step(ts(120));
    p.arrived(118);
    p.step(ts(120));
    // 10 s of broadcast go by; this viewer got none of it
    announced(p, 121, 170);
    p.arrived(169);
    const s = p.step(ts(170));
    assert.equal(s.retuned, true);
    assert.equal(p.position, 168, "the oldest chunk within 500 ms of the edge");
    assert.deepEqual(
      s.skipped,
      Array.from({ length: 168 - 119 }, (_, i) => 119 + i),
    );
    assert.deepEqual(s.write, [], "169 waits for the chunk at the tune-in point");
  });

  test("a window that moved past the position re-tunes at its low end or later", () => {
    const p = new LivePlayout({ prebufferMs: 500 });
    announced(p, 100, 110);
    p.step(ts(110));
    assert.equal(p.position, 108);
    p.setLow(109);
    const s = p.step(ts(110));
    assert.equal(s.retuned, true);
    assert.deepEqual(s.skipped, [108]);
    assert.equal(p.position, 109);
  });

  test("--from-start starts at the window's low end; the end of the broadcast ends the playout", () => {
    const p = new LivePlayout({ fromStart: true });
    p.setLow(100);
    announced(p, 100, 103);
    p.end(103);
    p.step(ts(103));
    assert.equal(p.position, 100);
    for (let s = 100; s <= 103; s++) p.arrived(s);
    const s = p.step(ts(103) + 1);
    assert.deepEqual(s.write, [100, 101, 102, 103]);
    assert.equal(s.done, true);
  });

  test("the first chunk never arriving is skipped a prebuffer after tuning in, once a later one is here", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    announced(p, 100, 120);
    const t0 = ts(120);
    p.step(t0);
    p.arrived(119);
    assert.deepEqual(p.step(t0 + 700).skipped, []);
    const s = p.step(t0 + 800);
    assert.deepEqual(s.skipped, [118]);
    assert.deepEqual(s.write, [119]);
  });

  test("tunes in from the window alone, estimating source times from the edge's and the chunk time", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: ts(120), chunkMs: 200 });
    const t0 = ts(120) + 50;
    const first = p.step(t0);
    assert.equal(p.position, 118, "the oldest chunk within 500 ms of the edge, by estimate");
    assert.equal(first.wakeAt, undefined, "nothing here to skip to");
    p.announce(119, ts(119));
    p.arrived(119);
    // 118's estimated time is ts(118): it is due a prebuffer (plus the grace) after tuning in
    const s = p.step(t0 + 10);
    assert.equal(s.wakeAt, t0 + 500 + 300);
    assert.deepEqual(p.step(t0 + 799).skipped, []);
    const late = p.step(t0 + 800);
    assert.deepEqual(late.skipped, [118]);
    assert.deepEqual(late.write, [119]);
    assert.equal(p.delayMs, t0 + 800 - ts(119));
  });

  test("an attestation's timestamp replaces the estimate; later estimates start from the nearest announced chunk", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: ts(120), chunkMs: 200 });
    const t0 = ts(120);
    p.step(t0);
    assert.equal(p.position, 118);
    // the source cut 118 to 120 in quick succession: 118 is really 50 ms before the edge
    p.announce(118, ts(120) - 50);
    p.announce(120, ts(120));
    p.arrived(118);
    assert.deepEqual(p.step(t0 + 5).write, [118]);
    assert.equal(p.delayMs, 55, "measured with the attested time");
    // 119 is estimated from 120 (announced): ts(120) - 200; due at that plus the delay and the grace
    p.arrived(120);
    assert.equal(p.step(t0 + 6).wakeAt, ts(120) - 200 + 55 + 300);
  });

  test("a window moving on moves the estimates with it and drops what fell below its low end", () => {
    const p = new LivePlayout({ prebufferMs: 1000 });
    p.window({ low: 2 ** 32 - 10, edge: 2 ** 32 + 5, edgeTimestampMs: 50_000, chunkMs: 100 });
    p.step(50_000);
    assert.equal(p.position, 2 ** 32 - 5, "ten chunks of 100 ms back, across 2^32");
    p.window({ low: 2 ** 32 - 2, edge: 2 ** 32 + 13, edgeTimestampMs: 50_800, chunkMs: 100 });
    const s = p.step(50_800);
    assert.equal(s.retuned, true);
    assert.equal(p.position, 2 ** 32 + 3, "re-tuned a prebuffer behind the new edge");
    assert.equal(s.skipped.length, 8);
  });

  test("once the broadcast ended, a missing last chunk is waited for past its deadline, then skipped", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300, endWaitMs: 4000 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: ts(120), chunkMs: 200, ended: true });
    const t0 = ts(120);
    p.step(t0);
    assert.equal(p.position, 118);
    p.announce(118, ts(118));
    p.arrived(118);
    p.announce(119, ts(119));
    p.arrived(119);
    const s = p.step(t0);
    assert.deepEqual(s.write, [118, 119]);
    assert.equal(s.done, false);
    const due = ts(120) + p.delayMs! + 300;
    assert.equal(s.wakeAt, due + 4000, "nothing waits behind 120: it is waited for endWaitMs past its deadline");
    const atDeadline = p.step(due);
    assert.deepEqual(atDeadline.skipped, [], "not skipped at its deadline: its holders may just have left");
    const end = p.step(s.wakeAt!);
    assert.deepEqual(end.skipped, [120]);
    assert.equal(end.done, true);
  });

  test("once the broadcast ended, a last chunk arriving after its deadline is written, not skipped", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: ts(120), chunkMs: 200, ended: true });
    const t0 = ts(120);
    p.step(t0);
    for (const seq of [118, 119]) {
      p.announce(seq, ts(seq));
      p.arrived(seq);
    }
    p.step(t0);
    p.announce(120, ts(120));
    p.arrived(120);
    const late = p.step(ts(120) + p.delayMs! + 2000);
    assert.deepEqual(late.write, [120]);
    assert.deepEqual(late.skipped, []);
    assert.equal(late.done, true);
  });

  test("a window without the edge's source time (a replica that has not heard it yet) sets no deadline from it", () => {
    const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: 0, chunkMs: 0 });
    const now = ts(120) + 100;
    const first = p.step(now);
    assert.equal(p.position, 120, "no source times: at the edge");
    assert.equal(first.wakeAt, undefined, "no deadline from a source time of 0");
    // a later window brings the edge's time: deadlines start from it
    p.window({ low: 100, edge: 121, edgeTimestampMs: ts(121), chunkMs: 200 });
    p.announce(121, ts(121));
    p.arrived(121);
    const later = p.step(now);
    assert.ok(later.wakeAt !== undefined && later.wakeAt > now && later.wakeAt < now + 5_000, `${later.wakeAt}`);
    const skip = p.step(later.wakeAt!);
    assert.deepEqual(skip.skipped, [120], "120, held by nobody, is skipped once 121 is here and 120 is due");
    assert.deepEqual(skip.write, [121]);
  });

  test("--from-start tunes in at the window's low end from the window alone", () => {
    const p = new LivePlayout({ fromStart: true, prebufferMs: 500 });
    p.window({ low: 100, edge: 120, edgeTimestampMs: ts(120), chunkMs: 200 });
    p.step(ts(120));
    assert.equal(p.position, 100);
  });

  describe("an MPEG-TS stream: outputs start at random access points", () => {
    const window = (edge: number, randomAccess: number[], low = 100) => ({
      low,
      edge,
      edgeTimestampMs: ts(edge),
      chunkMs: 200,
      randomAccess,
    });

    test("tunes in at the newest one at or before the prebuffer point, from the window's list", () => {
      const p = new LivePlayout({ prebufferMs: 500 });
      p.window(window(120, [105, 112, 116, 119]));
      p.step(ts(120));
      assert.equal(p.position, 116, "the prebuffer point is 118; 116 is the newest point before it");
    });

    test("with none at or before the prebuffer point, at the oldest after it; with none at all, at the prebuffer point", () => {
      const after = new LivePlayout({ prebufferMs: 500 });
      after.window(window(120, [119, 120]));
      after.step(ts(120));
      assert.equal(after.position, 119);
      const belowLow = new LivePlayout({ prebufferMs: 500 });
      belowLow.window(window(120, [99], 100));
      belowLow.step(ts(120));
      assert.equal(belowLow.position, 118, "a point below the window is no use");
    });

    test("attestations say which chunks are points; one that says not overrides the window's list", () => {
      const p = new LivePlayout({ prebufferMs: 500 });
      for (let s = 100; s <= 120; s++) p.announce(s, ts(s), s === 110 || s === 114);
      p.step(ts(120));
      assert.equal(p.position, 114);
      const q = new LivePlayout({ prebufferMs: 500 });
      q.window(window(120, [110, 114]));
      q.announce(114, ts(114), false);
      q.step(ts(120));
      assert.equal(q.position, 110);
    });

    test("a re-tune after a stall lands on a point, and only when one is newer than the position", () => {
      const p = new LivePlayout({ prebufferMs: 500, retuneAfterMs: 3_000 });
      p.window(window(120, [116]));
      p.step(ts(120));
      p.announce(116, ts(116), true);
      p.arrived(116);
      assert.deepEqual(p.step(ts(120)).write, [116]);
      // 10 s go by without a chunk, and no point newer than 116
      p.window(window(170, [116]));
      const stay = p.step(ts(170));
      assert.equal(stay.retuned, false, "nowhere better to go");
      assert.equal(p.position, 117);
      p.window(window(171, [116, 160]));
      const s = p.step(ts(171));
      assert.equal(s.retuned, true);
      assert.equal(p.position, 160, "the newest point before the prebuffer point 169");
      assert.deepEqual(
        s.skipped,
        Array.from({ length: 160 - 117 }, (_, i) => 117 + i),
      );
    });

    test("a window that moved past the position re-tunes at a point within it", () => {
      const p = new LivePlayout({ prebufferMs: 500 });
      p.window(window(110, [104, 108]));
      p.step(ts(110));
      assert.equal(p.position, 108);
      p.window(window(112, [108, 111], 109));
      const s = p.step(ts(112));
      assert.equal(s.retuned, true);
      assert.equal(p.position, 111);
      assert.deepEqual(s.skipped, [108, 109, 110]);
    });

    test("a tune-in chunk that never arrives is skipped on to the next point, not the next chunk", () => {
      const p = new LivePlayout({ prebufferMs: 500, graceMs: 300 });
      p.window(window(120, [116, 119]));
      const t0 = ts(120);
      p.step(t0);
      assert.equal(p.position, 116);
      p.arrived(117);
      p.arrived(119);
      const s = p.step(t0 + 10_000);
      assert.deepEqual(s.skipped, [116, 117, 118]);
      assert.deepEqual(s.write, [119]);
      // once writing, a missing chunk is skipped alone
      p.announce(121, ts(121));
      p.announce(122, ts(122), true);
      p.arrived(122);
      const later = p.step(t0 + 20_000);
      assert.deepEqual(later.skipped, [120, 121]);
      assert.deepEqual(later.write, [122]);
    });
  });
});
