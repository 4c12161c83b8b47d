import type { LiveWindow } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";
import type { StreamEvent, SwarmStore } from "@distribustream/swarm-store";
import type { LiveWindows } from "./liveWindows.js";
import type { TrackerMetrics } from "./metrics.js";
import type { Session } from "./session.js";

type LiveEvent = Extract<StreamEvent, { type: "live" }>;

/** Least time between two LiveEdge messages to one viewer about one stream. */
export const LIVE_EDGE_INTERVAL_MS = 250;

/**
 * Longest a Join of a live stream this replica was not following waits for
 * the stream's next chunk, whose event tells its edge time and random
 * access points (a broadcast cuts a chunk at least every second or two).
 */
export const LIVE_EDGE_WAIT_MS = 2_000;

/**
 * Sends a live stream's moving window (LiveEdge) to this replica's viewers
 * of it, at most one message per viewer per stream every
 * LIVE_EDGE_INTERVAL_MS, and always the latest window: an update that comes
 * sooner is held back and sent when the interval is up (replacing any
 * update held back before it). Each update also replans the viewer, since
 * new chunks may be fetched.
 */
export class LiveEdges {
  /** Latest window per stream. */
  private readonly latest = new Map<string, LiveWindow>();
  /** Per stream, per viewer: when it was last sent one, and the timer of the one held back. */
  private readonly sent = new Map<string, Map<Session, { atMs: number; timer?: NodeJS.Timeout }>>();

  constructor(
    private readonly o: {
      store: Pick<SwarmStore, "getStream">;
      windows: LiveWindows;
      metrics: TrackerMetrics;
      /** This replica's viewers of the stream (sessions that joined it). */
      viewersOf: (streamId: string) => Session[];
      log: Logger;
    },
  ) {}

  /**
   * A "live" event of a stream (from the replica that attested its chunks,
   * this one included): records its edge state, and tells this replica's
   * viewers of it the window as the store has it now.
   */
  async heard(streamId: string, e: LiveEvent): Promise<void> {
    const { windows, store } = this.o;
    windows.setEdge(streamId, { edgeTimestampMs: e.edgeTimestampMs, chunkMs: e.chunkMs, randomAccess: e.randomAccess });
    const viewers = this.o.viewersOf(streamId);
    if (viewers.length === 0) return;
    const meta = await store.getStream(streamId);
    if (meta?.kind !== "live") return;
    const d = await windows.descriptor(meta);
    if (!d) return;
    this.o.metrics.liveViewers.set({ stream: this.o.metrics.streamLabel(meta.name) }, viewers.length);
    this.moved(streamId, windows.window(meta, d.body.bitrate), viewers);
  }

  /** The window of a stream moved: tells `viewers` (those of this replica that joined it). */
  moved(streamId: string, window: LiveWindow, viewers: Iterable<Session>): void {
    this.latest.set(streamId, window);
    let perViewer = this.sent.get(streamId);
    if (!perViewer) this.sent.set(streamId, (perViewer = new Map()));
    const now = Date.now();
    for (const s of viewers) {
      const st = perViewer.get(s) ?? { atMs: 0 };
      perViewer.set(s, st);
      if (st.timer) continue; // the one held back will carry this window
      const wait = st.atMs + LIVE_EDGE_INTERVAL_MS - now;
      if (wait <= 0) {
        this.send(streamId, s, st);
        continue;
      }
      st.timer = setTimeout(() => {
        st.timer = undefined;
        this.send(streamId, s, st);
      }, wait);
      st.timer.unref();
    }
  }

  /** The viewer left the stream (or its session ended): nothing more is sent to it. */
  forget(streamId: string, s: Session): void {
    const perViewer = this.sent.get(streamId);
    const st = perViewer?.get(s);
    if (!perViewer || !st) return;
    clearTimeout(st.timer);
    perViewer.delete(s);
    if (perViewer.size === 0) {
      this.sent.delete(streamId);
      this.latest.delete(streamId);
    }
  }

  /** Stops every timer (the tracker drains). */
  close(): void {
    for (const perViewer of this.sent.values()) for (const st of perViewer.values()) clearTimeout(st.timer);
    this.sent.clear();
    this.latest.clear();
  }

  private send(streamId: string, s: Session, st: { atMs: number }): void {
    const window = this.latest.get(streamId);
    if (!window || s.closed || !s.joined.has(streamId)) {
      this.forget(streamId, s);
      return;
    }
    st.atMs = Date.now();
    s.send({ body: { $case: "liveEdge", value: { streamId, window } } });
    s.requestPlan();
  }
}
