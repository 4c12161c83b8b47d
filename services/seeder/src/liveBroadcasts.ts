import { Readable } from "node:stream";
import type { ChunkSource } from "@distribustream/data-plane";
import {
  chunkCount,
  type LiveAttested,
  type LiveChunkClaim,
  type PeerMessage,
  type PublishResult,
} from "@distribustream/pdtp";
import { Counter, type Logger, type Registry } from "@distribustream/runtime";
import { MediaSource } from "./fileSource.js";
import type { MediaFile } from "./library.js";
import { LiveBroadcast } from "./live/broadcast.js";
import { DEFAULT_CHUNK_POLICY, type ChunkPolicy } from "./live/chunker.js";
import { insideFolder, LiveRecording } from "./live/recording.js";
import { SequenceState } from "./live/sequenceState.js";
import { describeInput, openLiveInput } from "./live/sources.js";
import { DEFAULT_LIVE_WINDOW_CHUNKS, type LiveSpec } from "./liveSpec.js";
import type { LiveFile, Published, PublishSink, PublishSource } from "./publishing.js";

/** Longest wait, once an input ended, for its last chunks' attestations before the Unpublish that ends the broadcast. */
const END_GRACE_MS = 15_000;

export interface LiveBroadcastsOptions {
  specs: readonly LiveSpec[];
  /** Folder of the sequence state files (one per name). */
  stateDir: string;
  /**
   * Folder where each broadcast is recorded whole (see LiveRecording); once
   * its input ended, the recording is published as a file under its name.
   */
  recordDir?: string | undefined;
  /** Standard input, for a `-` input (default process.stdin). */
  stdin?: Readable | undefined;
  /** Writes to the tracker's current session; dropped without one (claims are sent again after the next READY). */
  send(msg: PeerMessage): void;
  log: Logger;
  registry: Registry;
}

/**
 * How far one broadcast got: waiting for its first READY (its input not yet
 * read), running, ending (its input ended; the last claims are being
 * attested), ended (unpublished; its window is still served).
 */
type Phase = "waiting" | "running" | "ending" | "ended";

interface Entry {
  spec: LiveSpec;
  broadcast: LiveBroadcast;
  abort: AbortController;
  phase: Phase;
  /** What is published: the tracker's stream id once READY, and the Publish.live of the last resync. */
  file: LiveFile;
  /** The sequence number the state file held at open: where the broadcast starts unless the tracker is further. */
  savedNextSeq: number;
  /** READY in the current session: new chunks are claimed to it. */
  ready: boolean;
  /** Claims cut since the last flush. */
  pending: LiveChunkClaim[];
  /** The last chunk, once the input ended. */
  last?: number | undefined;
  endTimer?: NodeJS.Timeout | undefined;
  /** The broadcast's recording, with a record folder. */
  recording?: LiveRecording | undefined;
  /** The finished recording: published as a file under the name once the broadcast ended. */
  recorded?: MediaFile | undefined;
}

/**
 * The live inputs as a source: each broadcast is published with its chunk
 * policy, window and the sequence number it continues at; on READY it starts
 * cutting its input from where the tracker says, claims every chunk to the
 * tracker (the claims of one event-loop turn in one LiveChunks message),
 * serves the window on the data plane (raw for the checksum service, framed
 * with the attestations the tracker sends back for peers), and when its input
 * ends it is unpublished (the tracker's end of the broadcast) and its window
 * is served on until the seeder drains. With a record folder each broadcast
 * is also recorded, and once it ended the recording is published as a file
 * under its name (live to on-demand). Live names hide the origins and media
 * files of the same name.
 */
export class LiveBroadcasts implements PublishSource {
  /** Serves the broadcasts' windows on the data plane. */
  readonly chunks: ChunkSource;
  private readonly entries = new Map<string, Entry>();
  private readonly byStream = new Map<string, Entry>();
  private readonly metrics: LiveMetrics;
  private sink: PublishSink | undefined;
  private flushQueued = false;
  private stopped = false;

  private constructor(private readonly o: LiveBroadcastsOptions) {
    this.metrics = liveMetrics(o.registry);
    for (const spec of o.specs) this.entries.set(spec.name, this.entry(spec));
    const find = (streamId: string) => this.byStream.get(streamId)?.broadcast;
    const recordings = new MediaSource({
      get: (streamId) => this.recordedFile(streamId),
      contains: (real) => [...this.entries.values()].some((e) => e.recording && insideFolder(e.recording.dir, real)),
    });
    this.chunks = {
      layout: (streamId) => find(streamId)?.layout() ?? recordings.layout(streamId),
      holds: (streamId, range) => find(streamId)?.window.holds(range) ?? recordings.holds(streamId, range),
      read: (streamId, start, end) =>
        find(streamId)?.window.read(start, end) ??
        (this.recordedFile(streamId) ? recordings.read(streamId, start, end) : unknownStream(streamId)),
    };
  }

  /**
   * Reads each broadcast's saved sequence number (a state file that is not
   * valid throws SequenceStateError) and opens its recording (a record
   * folder that cannot be used throws LiveRecordingError).
   */
  static open(o: LiveBroadcastsOptions): LiveBroadcasts {
    const live = new LiveBroadcasts(o);
    for (const e of live.entries.values()) {
      o.log.info(
        { name: e.spec.name, input: describeInput(e.spec.input), nextSeq: e.savedNextSeq, stateDir: o.stateDir },
        "live broadcast waiting for the tracker",
      );
    }
    return live;
  }

  private entry(spec: LiveSpec): Entry {
    const log = this.o.log;
    const policy: ChunkPolicy = spec.policy ?? DEFAULT_CHUNK_POLICY;
    const windowChunks = spec.windowChunks ?? DEFAULT_LIVE_WINDOW_CHUNKS;
    const abort = new AbortController();
    const input = openLiveInput(spec.input, {
      signal: abort.signal,
      stdin: this.o.stdin,
      onRetry: (why, retryInMs) =>
        log.warn({ name: spec.name, input: describeInput(spec.input), why, retryInMs }, "live input dropped"),
    });
    const state = new SequenceState(this.o.stateDir, spec.name);
    const recording =
      this.o.recordDir === undefined
        ? undefined
        : LiveRecording.open({ dir: this.o.recordDir, stateDir: this.o.stateDir, name: spec.name, log });
    // the entry is in this.entries before its input is read
    const entry = () => this.entries.get(spec.name)!;
    const broadcast = new LiveBroadcast({
      name: spec.name,
      input,
      policy,
      windowChunks,
      state,
      onChunks: (claims) => this.cut(entry(), claims),
      onEnd: (last, err) => this.inputEnded(entry(), last, err),
      record: recording && ((data) => recording.append(data)),
      log,
    });
    const savedNextSeq = broadcast.savedNextSeq();
    const bitrate = spec.input.kind === "file" ? spec.input.bitrate : (spec.bitrate ?? 0);
    return {
      spec,
      broadcast,
      abort,
      phase: "waiting",
      savedNextSeq,
      ready: false,
      pending: [],
      recording,
      file: {
        name: spec.name,
        size: 0,
        version: 0,
        streamId: "",
        live: {
          maxChunkBytes: policy.maxChunkBytes,
          maxChunkMs: policy.maxChunkMs,
          bitrate,
          windowChunks,
          nextSeq: savedNextSeq,
        },
      },
    };
  }

  /** Hands the end of each broadcast (an Unpublish) to `sink` from now on. */
  start(sink: PublishSink): void {
    this.sink = sink;
  }

  claims(name: string): boolean {
    return this.entries.has(name);
  }

  /** The broadcast of the name; once it ended, its recording (when there is one). */
  byNameOf(name: string): LiveFile | MediaFile | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    return e.phase !== "ended" ? e.file : e.recorded;
  }

  /**
   * The broadcasts to publish, as a resync publishes them: each with the
   * sequence number the tracker is to expect next (the saved one before the
   * broadcast started; once running, its first chunk not yet attested).
   */
  files(): (LiveFile | MediaFile)[] {
    const out: (LiveFile | MediaFile)[] = [];
    for (const e of this.entries.values()) {
      if (e.phase === "ended") {
        if (e.recorded) out.push(e.recorded);
        continue;
      }
      e.file.live.nextSeq = e.phase === "waiting" ? e.savedNextSeq : this.firstUnattested(e);
      out.push(e.file);
    }
    return out;
  }

  /** The chunk size of a recording (live chunks have the lengths their source cut them at). */
  setChunkSize(streamId: string, chunkSize: number): void {
    const f = this.recordedFile(streamId);
    if (!f) return;
    f.chunkSize = chunkSize;
    f.chunkCount = chunkCount(f.size, chunkSize);
  }

  rejected(file: Published): void {
    if (!("live" in file)) return; // a recording: publishing logged the tracker's reason
    this.o.log.info({ name: file.name }, "live broadcast will be published again in the next tracker session");
  }

  /** READY: a waiting broadcast starts; a running one claims again what the tracker has not attested. */
  ready(file: Published, r: PublishResult): void {
    const e = this.entries.get(file.name);
    if (!e || e.phase === "ended" || e.ready || this.stopped) return;
    e.ready = true;
    e.file.streamId = r.streamId;
    this.byStream.set(r.streamId, e);
    const sent = e.file.live.nextSeq;
    // The tracker continues at its edge + 1 once started; at our next_seq when that is higher (tracker.proto).
    const from = r.live?.started ? Math.max(r.live.edge + 1, sent) : sent;
    const log = this.o.log;
    if (e.phase === "waiting") {
      e.phase = "running";
      log.info({ name: e.spec.name, streamId: r.streamId, firstSeq: from }, "live broadcast started");
      e.broadcast.start(from);
      return;
    }
    const b = e.broadcast;
    const next = b.nextSeq!;
    if (from > next) {
      log.error(
        { name: e.spec.name, streamId: r.streamId, trackerNext: from, next },
        "the tracker's live edge is ahead of this broadcast (another seeder, or a lost state file): no chunk is claimed in this session",
      );
      return;
    }
    // Everything cut from `from` on, in order: the claims of the lost session are
    // sent again, and those cut since (not sent while not READY) with them.
    e.pending = [];
    for (let seq = from; seq < next; seq++) {
      const c = b.claimOf(seq);
      if (c) e.pending.push(c);
    }
    log.info(
      { name: e.spec.name, streamId: r.streamId, from, claims: e.pending.length },
      "live broadcast continues in a new tracker session",
    );
    this.flush();
  }

  /** The session ended: nothing is claimed until the next READY. */
  sessionLost(): void {
    for (const e of this.entries.values()) {
      e.ready = false;
      e.pending = [];
    }
  }

  /** The tracker's attestations of claimed chunks: served with them from now on. */
  attested(msg: LiveAttested): void {
    const e = this.byStream.get(msg.streamId);
    if (!e) {
      this.o.log.debug({ streamId: msg.streamId }, "attestations for a stream not broadcast here");
      return;
    }
    const n = e.broadcast.attested(msg.attestations);
    this.metrics.attested.inc({ stream: e.spec.name }, n);
    if (e.phase === "ending" && this.allAttested(e)) this.finish(e);
  }

  /**
   * Stops every input (the seeder is draining); nothing more is claimed or
   * unpublished. Resolves once the recordings are written and closed.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.endTimer);
      e.abort.abort();
      e.broadcast.stop();
    }
    await Promise.all([...this.entries.values()].flatMap((e) => (e.recording ? [e.recording.close()] : [])));
  }

  private cut(e: Entry, claims: LiveChunkClaim[]): void {
    const stream = e.spec.name;
    for (const c of claims) {
      this.metrics.chunks.inc({ stream });
      this.metrics.bytes.inc({ stream }, c.length);
    }
    if (!e.ready) return; // claimed again after the next READY
    e.pending.push(...claims);
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => this.flush());
  }

  /** Sends the claims cut since the last flush, one LiveChunks message per broadcast. */
  private flush(): void {
    this.flushQueued = false;
    for (const e of this.entries.values()) {
      if (e.pending.length === 0 || !e.ready) continue;
      const chunks = e.pending;
      e.pending = [];
      this.o.send({ body: { $case: "liveChunks", value: { streamId: e.file.streamId, chunks } } });
    }
  }

  private inputEnded(e: Entry, last: number | undefined, err?: Error): void {
    if (this.stopped) return;
    const log = this.o.log;
    const fields = { name: e.spec.name, streamId: e.file.streamId, input: describeInput(e.spec.input), last };
    if (err) log.error({ ...fields, err }, "live input failed: the broadcast ends");
    else log.info(fields, "live input ended: the broadcast ends");
    e.phase = "ending";
    e.last = last;
    e.recording?.finish().then(
      (file) => {
        e.recorded = file;
        this.publishRecording(e);
      },
      (err: unknown) => log.error({ name: e.spec.name, err }, "live recording not finished"),
    );
    this.flush(); // the last claims go before the Unpublish
    if (this.allAttested(e)) return this.finish(e);
    e.endTimer = setTimeout(() => {
      log.warn(
        { name: e.spec.name, last, lastAttested: e.broadcast.lastAttested },
        "the last chunks of the broadcast were not attested in time: it ends without them",
      );
      this.finish(e);
    }, END_GRACE_MS);
    e.endTimer.unref();
  }

  private allAttested(e: Entry): boolean {
    const attested = e.broadcast.lastAttested;
    return e.last === undefined || (attested !== undefined && attested >= e.last);
  }

  /** The broadcast ended: unpublished (the tracker's edge is its last chunk); its window is still served. */
  private finish(e: Entry): void {
    if (e.phase === "ended") return;
    clearTimeout(e.endTimer);
    e.phase = "ended";
    e.ready = false;
    this.o.log.info({ name: e.spec.name, streamId: e.file.streamId, last: e.last }, "live broadcast unpublished");
    this.sink?.unpublish(e.spec.name);
    this.publishRecording(e);
  }

  /**
   * Once the broadcast ended and its recording is finished, whichever comes
   * last: the recording is published under the name. Its Publish follows the
   * Unpublish on the session: the tracker has ended the stream for its
   * viewers before the name points at the file.
   */
  private publishRecording(e: Entry): void {
    if (e.phase !== "ended" || !e.recorded || this.stopped) return;
    const f = e.recorded;
    this.o.log.info(
      { name: f.name, path: f.path, size: f.size, streamId: f.streamId },
      "live broadcast recorded: the recording is published under its name",
    );
    this.sink?.publish(f);
  }

  /** The finished recording published as `streamId`, if any. */
  private recordedFile(streamId: string): MediaFile | undefined {
    for (const e of this.entries.values()) if (e.recorded?.streamId === streamId) return e.recorded;
    return undefined;
  }

  /**
   * The sequence number a tracker of a new session is to expect: the chunk
   * after the last one attested, or the oldest one held when that dropped
   * out of the window; the next to be cut when everything held is attested.
   */
  private firstUnattested(e: Entry): number {
    const b = e.broadcast;
    const next = b.nextSeq!;
    const low = b.window.low ?? next;
    const attested = b.lastAttested;
    return Math.min(next, Math.max(low, attested === undefined ? low : attested + 1));
  }
}

/** A read of a stream not broadcast here: fails before its first byte with 404. */
function unknownStream(streamId: string): Readable {
  const err = Object.assign(new Error(`${streamId} is not broadcast here`), { refusalStatus: 404 });
  return new Readable({
    read() {
      this.destroy(err);
    },
  });
}

interface LiveMetrics {
  chunks: Counter<"stream">;
  bytes: Counter<"stream">;
  attested: Counter<"stream">;
}

function liveMetrics(registry: Registry): LiveMetrics {
  const counter = (name: string, help: string) =>
    (registry.getSingleMetric(name) as Counter<"stream"> | undefined) ??
    new Counter({ name, help, labelNames: ["stream"], registers: [registry] });
  return {
    chunks: counter("pdtp_seeder_live_chunks_total", "Live chunks cut and claimed to the tracker, by stream name."),
    bytes: counter("pdtp_seeder_live_bytes_total", "Bytes of the live chunks cut, by stream name."),
    attested: counter(
      "pdtp_seeder_live_attested_chunks_total",
      "Live chunks the tracker sent an attestation for while still held, by stream name.",
    ),
  };
}
