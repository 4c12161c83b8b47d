// What the live scenario measures with: the source's bytes and video frames, each with the time it was written,
// and each viewer's output placed against them (a DistribuStream viewer's by its bytes, an HLS viewer's by the
// PTS of its frames); then a viewer's figures: each frame's delay, and a real-time player's stalls.
import { TS_PACKET, TsFrames } from "./mpegts.mjs";
import { MiB } from "./util.mjs";

/** A frame that reaches the output later than a real-time player needs it by more than this is a stall. */
export const STALL_MS = 40;

/** Everything the source wrote, and its video frames with the time of each (by PTS: time and stream offset). */
export class SourceTap {
  constructor() {
    this.buf = Buffer.alloc(16 * MiB);
    this.length = 0;
    this.frames = []; // { pts, offset, t } in stream order
    this.ptsTime = new Map();
    this.ptsOffset = new Map();
    this.parser = new TsFrames((pts, offset, t) => {
      this.frames.push({ pts, offset, t });
      this.ptsTime.set(pts, t);
      this.ptsOffset.set(pts, offset);
    });
  }

  push(d, t) {
    if (this.length + d.length > this.buf.length) {
      const bigger = Buffer.alloc(Math.max(2 * this.buf.length, this.length + d.length));
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    d.copy(this.buf, this.length);
    this.length += d.length;
    this.parser.push(d, t);
  }

  get capture() {
    return this.buf.subarray(0, this.length);
  }
}

/**
 * Probe sizes; the output waits for the last but one before it is looked up. The smallest finds a chunk of a few
 * bytes between two skips (the seeder cuts the rest of a burst on time, however short).
 */
const PROBES = [32, TS_PACKET, 1024, 4096, 16384, 65536];

/**
 * Places a DistribuStream viewer's output in the source's bytes: where it starts (its first bytes looked up
 * in the source, the probe grown until it is found once only), then byte by byte; where the output departs
 * from the source (skipped chunks) it is looked up again after the last byte matched. Keeps the source spans
 * written, each with the time the viewer wrote it; output found nowhere in the source is counted unmatched.
 */
export class SourceMatcher {
  constructor(tap) {
    this.tap = tap;
    this.queue = [];
    this.queued = 0;
    this.cursor = undefined;
    this.synced = false;
    this.spans = []; // [start, end, t]
    this.discontinuities = 0;
    this.discontinuityTimes = [];
    this.bytesPassedOver = 0;
    this.unmatchedBytes = 0;
  }

  push(buf, t) {
    this.queue.push({ buf, t });
    this.queued += buf.length;
    this.drain(false);
  }

  end() {
    this.drain(true);
  }

  drain(final) {
    while (this.queue.length > 0) {
      if (!this.synced && !this.sync(final)) return;
      const { buf, t } = this.queue[0];
      const src = this.tap.capture.subarray(this.cursor, this.cursor + buf.length);
      let m = 0;
      if (src.length === buf.length && src.equals(buf)) m = buf.length;
      else while (m < src.length && src[m] === buf[m]) m++;
      if (m > 0) {
        const last = this.spans.at(-1);
        if (last && last[1] === this.cursor && last[2] === t) last[1] += m;
        else this.spans.push([this.cursor, this.cursor + m, t]);
        this.cursor += m;
      }
      this.queued -= m;
      if (m === buf.length) this.queue.shift();
      else {
        this.queue[0] = { buf: buf.subarray(m), t };
        this.synced = false;
        this.discontinuities++;
        this.discontinuityTimes.push(t);
      }
    }
  }

  /**
   * Finds where the queued output is in the source; false while more output is needed to tell. Probes of
   * growing size until one is found once only; a probe not found at all ran over the next skip (a chunk
   * written shorter than the probe), so the last one found stands, at its first place after the last byte
   * matched (at the start: its newest place, a viewer starts near the live edge).
   */
  sync(final) {
    if (this.queued < PROBES[PROBES.length - 2] && !final) return false;
    const capture = this.tap.capture;
    const from = this.cursor ?? 0;
    let where;
    for (const size of PROBES) {
      const probe = Buffer.concat(
        this.queue.map((q) => q.buf),
        Math.min(size, this.queued),
      );
      const at = capture.indexOf(probe, from);
      if (at < 0) break;
      const unique = capture.indexOf(probe, at + 1) < 0;
      where = unique || this.cursor !== undefined ? at : capture.lastIndexOf(probe);
      if (unique || probe.length === this.queued) break;
    }
    if (where === undefined) {
      // not in the source: wrong bytes (a correctness failure, counted)
      const n = Math.min(PROBES[0], this.queue[0].buf.length);
      this.unmatchedBytes += n;
      this.queued -= n;
      if (n === this.queue[0].buf.length) this.queue.shift();
      else this.queue[0] = { ...this.queue[0], buf: this.queue[0].buf.subarray(n) };
      return this.queue.length > 0 && this.sync(final);
    }
    if (this.cursor !== undefined) this.bytesPassedOver += where - this.cursor;
    this.cursor = where;
    this.synced = true;
    return true;
  }

  /** The video frames written, { pts, t } in output order: those whose first packet lies in a span. */
  framesOut() {
    const frames = this.tap.frames;
    const out = [];
    let f = 0;
    for (const [a, b, t] of this.spans) {
      while (f < frames.length && frames[f].offset < a) f++;
      while (f < frames.length && frames[f].offset < b) out.push({ pts: frames[f++].pts, t });
    }
    return out;
  }
}

/** An HLS viewer's output: the frames of the segments it wrote, parsed as they come. */
export class TsOutput {
  constructor() {
    this.frames = [];
    this.parser = new TsFrames((pts, _offset, t) => this.frames.push({ pts, t }));
  }
  push(buf, t) {
    this.parser.push(buf, t);
  }
  end() {}
  framesOut() {
    return this.frames;
  }
}

/**
 * What a viewer's frames say: the delay of each (its write minus the source's), and a player's view of them.
 * The player starts playing at the first frame written and plays in real time; a frame written after the
 * player needs it (by more than STALL_MS) is a stall: the player waits for it, and is that much further behind
 * from then on. Its delay behind the source is the first frame's delay plus every wait.
 */
export function viewerFigures(frames, srcTime) {
  const delays = [];
  const delayTimes = []; // when each of those frames was written
  let unmapped = 0;
  let stalls = 0;
  const stallTimes = [];
  let stallMs = 0;
  let clock; // when pts 0 plays
  let lastPts = -Infinity;
  let firstDelay;
  let maxGapMs = 0;
  let prevT;
  for (const { pts, t } of frames) {
    const s = srcTime.get(pts);
    if (s === undefined) unmapped++;
    else {
      delays.push(t - s);
      delayTimes.push(t);
      firstDelay ??= t - s;
    }
    if (prevT !== undefined) maxGapMs = Math.max(maxGapMs, t - prevT);
    prevT = t;
    if (pts <= lastPts) continue;
    lastPts = pts;
    if (clock === undefined) {
      clock = t - pts / 90;
      continue;
    }
    const late = t - (clock + pts / 90);
    if (late > 0) {
      clock += late;
      stallMs += late;
      if (late > STALL_MS) {
        stalls++;
        stallTimes.push(t);
      }
    }
  }
  return {
    frames: frames.length,
    unmapped,
    delays,
    delayTimes,
    stalls,
    stallTimes,
    stallS: stallMs / 1000,
    playbackDelayS: firstDelay === undefined ? undefined : (firstDelay + stallMs) / 1000,
    maxGapS: maxGapMs / 1000,
  };
}
