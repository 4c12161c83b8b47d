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
});
