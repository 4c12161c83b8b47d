import { LiveDescriptorBody, SignedLiveDescriptor, type LiveWindow } from "@distribustream/pdtp";
import type { LiveStreamMeta, SwarmStore } from "@distribustream/swarm-store";

/**
 * Most random access points a window names (the newest): at a keyframe every
 * 1 to 2 s, 16 to 32 s of them, about a default window; each LiveEdge carries
 * them (~80 bytes), so they are kept few.
 */
export const MAX_RANDOM_ACCESS = 16;

/**
 * What a live stream's bounds in the store do not say of its edge: where it
 * is in source time, and which recent chunks a viewer can start at.
 */
export interface EdgeState {
  /** Source time of the edge chunk (ms since the Unix epoch), 0 before the first. */
  edgeTimestampMs: number;
  /** Media time a chunk covers, ms (moving average over the attested timestamps), 0 when unknown. */
  chunkMs: number;
  /** Chunks attested as beginning at a random access point, increasing, the newest MAX_RANDOM_ACCESS at most. */
  randomAccess: number[];
}

/** A live stream's signed descriptor, as kept in the store, and its body. */
export interface LiveDescriptorOf {
  signed: SignedLiveDescriptor;
  body: LiveDescriptorBody;
}

/** Descriptors kept per replica (they never change for a stream id and creation time). */
const MAX_DESCRIPTORS = 4096;

/**
 * What this replica knows of its live streams' windows beyond the bounds in
 * the store: each stream's signed descriptor (kept in the store's manifest
 * slot, see PublishLive) and the state of its edge (source time, random
 * access points), which every replica learns from the "live" events of the
 * stream's channel (the replica that attests a chunk announces it). A
 * replica that has heard no event of a stream yet answers edge time 0 and no
 * random access points until the next chunk.
 */
export class LiveWindows {
  private readonly descriptors = new Map<string, LiveDescriptorOf>();
  private readonly edges = new Map<string, EdgeState>();
  /** Joins waiting for a stream's edge state (see edgeHeard). */
  private readonly waiting = new Map<string, Set<() => void>>();

  constructor(private readonly store: Pick<SwarmStore, "getManifest">) {}

  /** The stream's descriptor (read from the store once), or undefined when it has none (not ready). */
  async descriptor(meta: LiveStreamMeta): Promise<LiveDescriptorOf | undefined> {
    const key = `${meta.streamId}@${meta.createdMs}`;
    const hit = this.descriptors.get(key);
    if (hit) return hit;
    const bytes = await this.store.getManifest(meta.streamId);
    if (!bytes) return undefined;
    const signed = SignedLiveDescriptor.decode(bytes);
    const d = { signed, body: LiveDescriptorBody.decode(signed.body) };
    if (this.descriptors.size >= MAX_DESCRIPTORS) this.descriptors.clear();
    this.descriptors.set(key, d);
    return d;
  }

  /** The edge state last heard of (or set for) the stream. */
  edge(streamId: string): EdgeState {
    return this.edges.get(streamId) ?? { edgeTimestampMs: 0, chunkMs: 0, randomAccess: [] };
  }

  /** Records the edge state of a stream (from its ingest here, or an event). Never goes back. */
  setEdge(streamId: string, e: EdgeState): void {
    const before = this.edges.get(streamId);
    if (before && before.edgeTimestampMs > e.edgeTimestampMs) return;
    if (this.edges.size >= MAX_DESCRIPTORS && !before) this.edges.clear();
    this.edges.set(streamId, { ...e, randomAccess: e.randomAccess.slice(-MAX_RANDOM_ACCESS) });
    const waiting = this.waiting.get(streamId);
    this.waiting.delete(streamId);
    for (const wake of waiting ?? []) wake();
  }

  /**
   * This replica stopped following the stream's events: what it knew of the
   * edge goes stale from now on, so it is dropped rather than handed to the
   * next viewer (an edge time long past, random access points out of the
   * window: a viewer would tune in mid-frame).
   */
  forgetEdge(streamId: string): void {
    this.edges.delete(streamId);
  }

  /**
   * "known" when this replica knows the stream's edge state; otherwise waits
   * for the next one it hears (the stream's events are being followed) and
   * says "heard", or "timeout" after `timeoutMs` (a stalled or ended stream).
   */
  async edgeHeard(streamId: string, timeoutMs: number): Promise<"known" | "heard" | "timeout"> {
    if (this.edges.has(streamId)) return "known";
    let waiting = this.waiting.get(streamId);
    if (!waiting) this.waiting.set(streamId, (waiting = new Set()));
    const w = waiting;
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve("heard");
      };
      const timer = setTimeout(() => {
        w.delete(wake);
        if (w.size === 0 && this.waiting.get(streamId) === w) this.waiting.delete(streamId);
        resolve("timeout");
      }, timeoutMs);
      timer.unref();
      w.add(wake);
    });
  }

  /** The stream's window as peers see it (PublishResult.live, StreamDescriptor.live, LiveEdge). */
  window(
    meta: Pick<LiveStreamMeta, "streamId" | "low" | "high" | "ended" | "windowChunks">,
    bitrate: number,
  ): LiveWindow {
    const started = meta.high >= meta.low && meta.high >= 0;
    const t = this.edge(meta.streamId);
    return {
      low: started ? meta.low : 0,
      edge: started ? meta.high : 0,
      started,
      edgeTimestampMs: started ? t.edgeTimestampMs : 0,
      chunkMs: started ? t.chunkMs : 0,
      windowChunks: meta.windowChunks,
      bitrate,
      ended: meta.ended,
      randomAccess: started ? t.randomAccess.filter((seq) => seq >= meta.low && seq <= meta.high) : [],
    };
  }
}
