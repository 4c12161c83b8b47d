import { Readable } from "node:stream";
import {
  LIVE_REJECTIONS,
  LiveChunkError,
  LiveDescriptorError,
  liveFrameHead,
  LiveVerifier,
  openLiveDescriptor,
  RangeSet,
  TransferOutcome,
  type ChunkRange,
  type Directive,
  type Joined,
  type LiveAttestation,
  type LiveDescriptorBody,
  type LiveEdge,
  type LiveRejection,
  type LiveWindow as LiveWindowMessage,
  type PublicKey,
  type SignedLiveAttestation,
  type Signer,
} from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime/log";
import {
  fetchLiveChunks,
  FetchError,
  type ChunkSource,
  type DataPlaneAgent,
  type LiveStreamLayout,
  type RateLimiter,
} from "@distribustream/data-plane";
import type { ControlBatcher } from "./control.js";
import { DownloadError, ExitCode } from "./errors.js";
import { LiveHoldings } from "./liveHoldings.js";
import { LiveOutput } from "./liveOutput.js";
import { DEFAULT_PREBUFFER_MS, LivePlayout } from "./livePlayout.js";
import type { OutputTarget } from "./outputTarget.js";
import { reportEnd, type TransferState } from "./transfer.js";

export interface LiveOptions {
  /** The stream name, for messages. */
  name: string;
  target: OutputTarget;
  /** Media behind the live edge to start at (default DEFAULT_PREBUFFER_MS). */
  prebufferMs?: number;
  /** Start at the window's low end: replay what the swarm still holds. */
  fromStart?: boolean;
  /** Bound on the chunk buffers of transfers in flight (one chunk each, at most the descriptor's chunk size). */
  maxInFlightBytes: number;
}

/** What the live download needs of the download around it: the session, this peer's identity, and its end. */
export interface LiveHost {
  readonly log: Logger;
  readonly batcher: ControlBatcher;
  /** Named in this peer's tickets; signs each data-plane request. */
  readonly sessionKey: Signer;
  readonly agent: DataPlaneAgent;
  readonly downloadLimiter: RateLimiter | undefined;
  /** When the download started, for the tune-in time. */
  readonly startedMs: number;
  /** Generation of the current tracker session: reports go only to the session that sent the directive. */
  generation(): number;
  /** A session is up. */
  connected(): boolean;
  /** Something happened (a directive, a chunk, the window moved): not a stall. */
  activity(): void;
  /** Ends the download with this error. */
  fail(err: unknown): void;
  /** The broadcast's last chunk was written or skipped and the output is flushed. */
  complete(): void;
  progress(p: LiveProgress): void;
}

export interface LiveProgress {
  chunksWritten: number;
  bytesWritten: number;
  skipped: number;
  /** The viewer's delay behind the source as last written (ms), undefined before the first write. */
  delayMs: number | undefined;
  fromPeers: number;
  fromSeeders: number;
}

/** What a live viewer did, for the summary (DownloadResult.live and the "live summary" log line). */
export interface LiveResult {
  chunksWritten: number;
  /** Chunks given up: missed their deadline, or passed over by a re-tune. */
  skipped: number;
  bytesWritten: number;
  /** Source-to-write delay of the chunks written: median and 95th percentile (ms); undefined when none was. */
  delayP50Ms: number | undefined;
  delayP95Ms: number | undefined;
  /** From the start of the download to the first byte handed to the output (ms); undefined when none was. */
  tuneInMs: number | undefined;
  retunes: number;
  /** Chunks (or attestations) refused, by reason; each was reported BAD_DATA against its source. */
  rejected: Record<LiveRejection, number>;
  /** The broadcast ended and its last chunk was written or skipped. */
  ended: boolean;
}

/** Per-transfer state, from directive to report. */
interface LiveTransfer extends TransferState {
  /** What the bytes coming next must be: a verified attestation, or the copy of a chunk already held. */
  next: { att: LiveAttestation } | { held: Buffer } | undefined;
}

/** A chunk below the swarm's window: the window moved while it was on its way; the source did nothing wrong. */
class NotWanted extends Error {
  override name = "NotWanted";
}

const FETCH_TIMEOUT_MS = 10_000;
/** Delays kept for the percentiles; beyond, a uniform sample of them (reservoir). */
const MAX_DELAY_SAMPLES = 65_536;

/**
 * A viewer of one live stream, from the tracker's Joined on: verifies the
 * signed descriptor, fetches what the directives say over /live/ (each
 * attestation and each chunk verified before anything is kept), keeps the
 * verified chunks to serve on, writes them in order as the LivePlayout says
 * (tune-in a prebuffer behind the edge, at a random access point when the
 * stream has them; deadlines, skips, re-tunes), and
 * tells the tracker its position and playback. Ends (host.complete) after
 * the broadcast's last chunk.
 */
export class LiveDownload {
  readonly streamId: string;
  private descriptor: LiveDescriptorBody;
  private verifier: LiveVerifier;
  private readonly playout: LivePlayout;
  private readonly holdings: LiveHoldings;
  private readonly output: LiveOutput;
  private readonly transfers = new Map<string, LiveTransfer>();
  /** Directives over the cap on concurrent transfers: reported CANCELLED once a transfer ends. */
  private deferred: { directive: Directive; generation: number }[] = [];
  private readonly maxTransfers: number;
  private window: LiveWindowMessage | undefined;
  private pumping = false;
  private wake: NodeJS.Timeout | undefined;
  private finishing = false;
  private closed = false;
  // figures
  private written = 0;
  private bytesWritten = 0;
  private skipped = 0;
  private retunes = 0;
  private firstByteMs: number | undefined;
  private lastDelay: number | undefined;
  private delays: number[] = [];
  private delaysSeen = 0;
  private fromPeers = 0;
  private fromSeeders = 0;
  private duplicates = 0;
  private ended = false;
  private readonly rejected = Object.fromEntries(LIVE_REJECTIONS.map((r) => [r, 0])) as Record<LiveRejection, number>;
  /** Sources of the rejected chunks. */
  private readonly badSources = new Set<string>();
  /** What the data plane serves of this stream: the attested frames held. */
  readonly chunkSource: ChunkSource;

  private constructor(
    private readonly host: LiveHost,
    private readonly opts: LiveOptions,
    descriptor: LiveDescriptorBody,
    trusted: readonly PublicKey[],
  ) {
    this.streamId = descriptor.streamId;
    this.descriptor = descriptor;
    this.verifier = verifierFor(descriptor, trusted, opts.name);
    this.playout = new LivePlayout({
      prebufferMs: opts.prebufferMs ?? DEFAULT_PREBUFFER_MS,
      fromStart: opts.fromStart ?? false,
    });
    this.holdings = new LiveHoldings(descriptor.windowChunks);
    this.maxTransfers = Math.max(1, Math.floor(opts.maxInFlightBytes / descriptor.maxChunkBytes));
    this.output = new LiveOutput(opts.target);
    this.output.failed.catch((err: unknown) => this.host.fail(err));
    const layout: LiveStreamLayout = {
      kind: "live",
      name: descriptor.name,
      // Raw byte spans are for the checksum service, which reads the seeder: a viewer serves frames only.
      span: () => undefined,
      attested: (range) => this.holdings.attested(range),
    };
    this.chunkSource = {
      layout: (id) => (id === this.streamId ? layout : undefined),
      holds: (id, range) => id === this.streamId && this.holdings.holds(range),
      read: () => notHeld(),
    };
  }

  /**
   * The tracker's Joined for a live name: verifies its signed descriptor
   * with the network keys (a bad one is exit 6) and starts viewing.
   */
  static open(host: LiveHost, joined: Joined, trusted: readonly PublicKey[], opts: LiveOptions): LiveDownload {
    const descriptor = openDescriptor(joined, trusted, opts.name);
    const live = new LiveDownload(host, opts, descriptor, trusted);
    host.log.info(
      {
        streamId: descriptor.streamId,
        maxChunkBytes: descriptor.maxChunkBytes,
        windowChunks: descriptor.windowChunks,
        window: joined.descriptor?.live,
        peers: joined.descriptor?.peers,
      },
      "joined live stream",
    );
    if (joined.descriptor?.live) live.onWindow(joined.descriptor.live);
    return live;
  }

  /** The tracker answered a re-join (a new session): the same stream, maybe a new descriptor, and its window. */
  rejoined(joined: Joined, trusted: readonly PublicKey[]): void {
    const descriptor = openDescriptor(joined, trusted, this.opts.name);
    if (descriptor.streamId !== this.streamId) {
      throw new DownloadError(`"${this.opts.name}" changed on the tracker during the download`, ExitCode.STALLED);
    }
    if (descriptor.version !== this.descriptor.version) {
      // The source restarted and continues the sequence numbers: same chunks, a new descriptor to verify them by.
      const window = this.verifier.window;
      this.descriptor = descriptor;
      this.verifier = verifierFor(descriptor, trusted, this.opts.name);
      this.verifier.advance(window.edge, window.low);
    }
    this.host.log.info({ held: this.holdings.ranges().length, position: this.playout.position }, "re-joined");
    if (joined.descriptor?.live) this.onWindow(joined.descriptor.live);
  }

  /** It picked the chunk to start from (its position is known). */
  get tunedIn(): boolean {
    return this.playout.position !== undefined;
  }

  /** What a Join after a reconnect says: the next chunk to write (0 before tuning in) and the chunks held. */
  holding(): { position: number; held: ChunkRange[] } {
    return { position: this.playout.position ?? 0, held: this.holdings.ranges() };
  }

  /** The tracker's LiveEdge. */
  edge(msg: LiveEdge): void {
    if (msg.streamId !== this.streamId || !msg.window) return;
    this.onWindow(msg.window);
  }

  directives(directives: readonly Directive[], generation: number): void {
    for (const d of directives) this.startTransfer(d, generation);
  }

  /** The tracker withdrew these transfers: no report for them. */
  cancel(ids: ReadonlySet<number>, generation: number): void {
    for (const id of ids) {
      const t = this.transfers.get(`${generation}:${id}`);
      if (!t) continue;
      t.cancelled = true;
      t.abort.abort();
    }
    this.deferred = this.deferred.filter((x) => !ids.has(x.directive.transferId));
  }

  /** The session ended: its tracker no longer knows the deferred directives. */
  sessionLost(): void {
    this.deferred = [];
  }

  /** A paused player is not a stall. */
  outputBlocked(): boolean {
    return this.output.blocked;
  }

  /** For the stall message. */
  stallDetail(): string {
    const w = this.window;
    const edge = w?.started ? `live edge ${w.edge}` : "broadcast not started";
    return `${this.written} chunks written, ${edge}`;
  }

  result(): {
    bytesFromPeers: number;
    bytesFromSeeders: number;
    duplicateBytes: number;
    badChunks: number;
    badSources: number;
    live: LiveResult;
  } {
    const sorted = [...this.delays].sort((a, b) => a - b);
    return {
      bytesFromPeers: this.fromPeers,
      bytesFromSeeders: this.fromSeeders,
      duplicateBytes: this.duplicates,
      badChunks: Object.values(this.rejected).reduce((a, b) => a + b, 0),
      badSources: this.badSources.size,
      live: {
        chunksWritten: this.written,
        skipped: this.skipped,
        bytesWritten: this.bytesWritten,
        delayP50Ms: percentile(sorted, 0.5),
        delayP95Ms: percentile(sorted, 0.95),
        tuneInMs: this.firstByteMs === undefined ? undefined : this.firstByteMs - this.host.startedMs,
        retunes: this.retunes,
        rejected: { ...this.rejected },
        ended: this.ended,
      },
    };
  }

  /** Stops transfers and the output; logs the live summary. Once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.finishing = true;
    if (this.wake) clearTimeout(this.wake);
    this.dropTransfers("download ending");
    this.output.close();
    const { live } = this.result();
    this.host.log.info({ streamId: this.streamId, ...live }, "live summary");
  }

  // ---- window ---------------------------------------------------------------

  private onWindow(w: LiveWindowMessage): void {
    if (w.started && !(Number.isSafeInteger(w.low) && Number.isSafeInteger(w.edge) && w.low <= w.edge)) {
      this.host.log.warn({ window: w }, "invalid live window ignored");
      return;
    }
    const moved = !this.window || w.edge !== this.window.edge || w.ended !== this.window.ended;
    this.window = w;
    if (moved) this.host.activity();
    if (!w.started) {
      // A broadcast that ended before its first chunk: nothing to write.
      if (w.ended) void this.finish();
      return;
    }
    this.verifier.advance(w.edge, w.low);
    this.playout.window({
      low: w.low,
      edge: w.edge,
      edgeTimestampMs: w.edgeTimestampMs,
      // no chunk holds more media than the descriptor's chunk time, whatever a tracker says
      chunkMs: Math.min(w.chunkMs || this.descriptor.maxChunkMs, this.descriptor.maxChunkMs),
      ended: w.ended,
      randomAccess: w.randomAccess,
    });
    this.holdings.dropBelow(w.low);
    this.pump();
  }

  // ---- transfers ------------------------------------------------------------

  private startTransfer(d: Directive, generation: number): void {
    this.host.activity();
    const report = (outcome: TransferOutcome, detail: string) =>
      this.host.batcher.report({
        transferId: d.transferId,
        outcome,
        bytes: 0,
        durationMs: 0,
        detail,
        httpStatus: 0,
        verified: d.range && d.streamId === this.streamId ? this.heldOf(d.range) : [],
      });
    if (this.finishing) return report(TransferOutcome.TRANSFER_OUTCOME_CANCELLED, "broadcast ended");
    const r = d.range;
    if (
      d.streamId !== this.streamId ||
      !r ||
      !Number.isSafeInteger(r.first) ||
      !Number.isSafeInteger(r.last) ||
      r.first > r.last ||
      r.last - r.first >= this.descriptor.windowChunks ||
      !d.source ||
      !d.ticket
    ) {
      this.host.log.warn({ transferId: d.transferId, streamId: d.streamId, range: r }, "invalid directive");
      return report(TransferOutcome.TRANSFER_OUTCOME_FAILED, "invalid directive");
    }
    const key = `${generation}:${d.transferId}`;
    if (this.transfers.has(key) || this.deferred.some((x) => x.directive.transferId === d.transferId)) {
      this.host.log.warn({ transferId: d.transferId }, "duplicate directive ignored");
      return;
    }
    // Fetch from the first to the last chunk still wanted and not held: nothing below the
    // position (written or skipped) nor below the window (it can no longer be had).
    const floor = Math.max(r.first, this.playout.position ?? r.first, this.verifier.window.low);
    let first = floor;
    while (first <= r.last && this.holdings.has(first)) first++;
    let last = r.last;
    while (last >= first && this.holdings.has(last)) last--;
    if (first > last) {
      // The tracker credits `verified` on CANCELLED: it learns what is held and plans it no more.
      return report(TransferOutcome.TRANSFER_OUTCOME_CANCELLED, floor > r.last ? "no longer wanted" : "already held");
    }
    if (this.transfers.size >= this.maxTransfers) {
      this.deferred.push({ directive: d, generation });
      return;
    }
    const t: LiveTransfer = {
      key,
      directive: d,
      range: { first, last },
      generation,
      fromSeeder: d.source.seeder,
      abort: new AbortController(),
      verified: new RangeSet(this.heldOf(r)),
      bytes: 0,
      startedMs: Date.now(),
      cancelled: false,
      dropped: false,
      next: undefined,
    };
    this.transfers.set(key, t);
    fetchLiveChunks({
      host: d.source.host,
      port: d.source.port,
      streamId: this.streamId,
      range: t.range,
      ticket: d.ticket,
      sessionKey: this.host.sessionKey,
      maxChunkBytes: this.descriptor.maxChunkBytes,
      onAttestation: (seq, signed) => this.onAttestation(t, seq, signed),
      onChunk: (seq, data) => this.onChunk(t, seq, data),
      signal: t.abort.signal,
      agent: this.host.agent,
      timeoutMs: FETCH_TIMEOUT_MS,
    }).then(
      () => this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_OK, ""),
      (err: unknown) => this.transferFailed(t, err),
    );
  }

  /** The attestation framed with chunk `seq`: verified before its bytes are read. Returns the chunk's length. */
  private onAttestation(t: LiveTransfer, seq: number, signed: SignedLiveAttestation): number {
    if (seq < this.verifier.window.low) throw new NotWanted(`chunk ${seq} fell below the window`);
    const held = this.holdings.chunk(seq);
    if (held && this.holdings.head(seq)!.equals(liveFrameHead(signed))) {
      // Held already (another transfer brought it): the same attestation, so the same bytes must follow.
      t.next = { held: held.data };
      return held.data.length;
    }
    const att = this.verifier.open(signed, seq);
    this.playout.announce(seq, att.timestampMs, att.randomAccess);
    t.next = { att };
    return att.length;
  }

  private async onChunk(t: LiveTransfer, seq: number, data: Buffer): Promise<void> {
    // Waiting here keeps the socket paused: the limit reaches the sender as TCP backpressure.
    if (this.host.downloadLimiter) await this.host.downloadLimiter.take(data.length);
    const next = t.next;
    t.next = undefined;
    if (!next) throw new Error(`chunk ${seq} came without its attestation`);
    if ("held" in next) {
      if (!next.held.equals(data)) throw new LiveChunkError("bad-data", `chunk ${seq} differs from its attested copy`);
      this.duplicates += data.length;
    } else {
      this.verifier.accept(next.att, data);
      // The window may have moved past it while it was on its way: then there is nothing to keep.
      if (seq >= this.verifier.window.low) {
        // `data` is the transfer's one buffer, reused for the next chunk: keep a copy.
        const head = liveFrameHead(next.att.signed);
        if (this.holdings.put(seq, Buffer.from(data), next.att.timestampMs, head)) {
          if (t.fromSeeder) this.fromSeeders += data.length;
          else this.fromPeers += data.length;
          this.host.batcher.held([{ first: seq, last: seq }]);
          this.playout.arrived(seq);
          this.pump();
        } else this.duplicates += data.length;
      }
    }
    this.host.activity();
    t.verified.add({ first: seq, last: seq });
    t.bytes += data.length;
  }

  private transferFailed(t: LiveTransfer, err: unknown): void {
    if (err instanceof LiveChunkError) {
      this.rejected[err.reason]++;
      this.badSources.add(t.directive.source?.peerId ?? "");
      this.host.batcher.rejectedChunk(err.reason);
      const d = t.directive;
      this.host.log.warn(
        { transferId: d.transferId, source: d.source, reason: err.reason, detail: err.message },
        "live chunk rejected",
      );
      return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_BAD_DATA, `${err.reason}: ${err.message}`);
    }
    // The end aborts every transfer, including the one whose last chunk completed the range.
    if (t.verified.hasRange(t.range)) return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_OK, "");
    if (err instanceof NotWanted) return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_CANCELLED, err.message);
    if (t.cancelled || t.dropped) return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_CANCELLED, "cancelled");
    const detail = err instanceof Error ? err.message : String(err);
    const outcome =
      err instanceof FetchError && err.kind === "refused"
        ? TransferOutcome.TRANSFER_OUTCOME_REFUSED
        : TransferOutcome.TRANSFER_OUTCOME_FAILED;
    this.host.log.info({ transferId: t.directive.transferId, source: t.directive.source, detail }, "transfer failed");
    this.endTransfer(t, outcome, detail, err instanceof FetchError ? (err.status ?? 0) : 0);
  }

  /** One report per transfer, unless the tracker cancelled it or it belongs to a lost session. */
  private endTransfer(t: LiveTransfer, outcome: TransferOutcome, detail: string, status = 0): void {
    if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
    this.host.activity();
    if (!this.host.connected()) return;
    t.verified.addAll(this.heldOf(t.directive.range!));
    reportEnd(this.host.batcher, t, this.host.generation(), outcome, detail, status);
    this.releaseDeferred(this.finishing ? "broadcast ended" : "a transfer slot was busy");
  }

  /** Reports the directives that waited for a slot as CANCELLED, so the tracker plans them again. */
  private releaseDeferred(detail: string): void {
    const deferred = this.deferred;
    this.deferred = [];
    for (const { directive: d, generation } of deferred) {
      if (generation !== this.host.generation() || !this.host.connected()) continue;
      this.host.batcher.report({
        transferId: d.transferId,
        outcome: TransferOutcome.TRANSFER_OUTCOME_CANCELLED,
        bytes: 0,
        durationMs: 0,
        detail,
        httpStatus: 0,
        verified: this.heldOf(d.range!),
      });
    }
  }

  private dropTransfers(detail: string): void {
    for (const t of this.transfers.values()) {
      t.dropped = true;
      t.abort.abort();
    }
    this.releaseDeferred(detail);
  }

  private heldOf(range: ChunkRange): ChunkRange[] {
    return this.holdings.heldIn(range);
  }

  // ---- playout --------------------------------------------------------------

  /** Runs the playout: writes what it says, in order, one write at a time (the output's backpressure). */
  private pump(): void {
    if (this.pumping || this.finishing) return;
    this.pumping = true;
    if (this.wake) clearTimeout(this.wake);
    this.wake = undefined;
    this.writeLoop().catch((err: unknown) => {
      this.pumping = false;
      if (!this.closed) this.host.fail(err);
    });
  }

  private async writeLoop(): Promise<void> {
    for (;;) {
      if (this.finishing) return void (this.pumping = false);
      const step = this.playout.step(Date.now());
      if (step.retuned) {
        this.retunes++;
        this.host.log.info({ position: this.playout.position, skipped: step.skipped.length }, "re-tuned to the edge");
      }
      this.skipped += step.skipped.length;
      if (step.skipped.length > 0 && !step.retuned) {
        this.host.log.info(
          { first: step.skipped[0], last: step.skipped.at(-1), position: this.playout.position },
          "chunks skipped: past their deadline",
        );
      }
      // Take the chunks now: the window may drop them while earlier ones are being written.
      const chunks = step.write.map((seq) => this.holdings.chunk(seq));
      const delays: number[] = [];
      let lost = 0;
      for (const c of chunks) {
        if (!c) {
          lost++;
          continue;
        }
        const delay = Date.now() - c.timestampMs;
        this.firstByteMs ??= Date.now();
        await this.output.write(c.data);
        if (this.closed) return;
        this.written++;
        this.bytesWritten += c.data.length;
        this.lastDelay = delay;
        delays.push(delay);
        this.keepDelay(delay);
      }
      this.skipped += lost;
      const position = this.playout.position;
      if (position !== undefined) this.host.batcher.setPosition(position);
      this.host.batcher.played(delays, step.skipped.length + lost);
      if (chunks.length > 0 || step.skipped.length > 0) {
        this.host.activity();
        this.host.progress({
          chunksWritten: this.written,
          bytesWritten: this.bytesWritten,
          skipped: this.skipped,
          delayMs: this.lastDelay,
          fromPeers: this.fromPeers,
          fromSeeders: this.fromSeeders,
        });
      }
      if (step.done) {
        this.pumping = false;
        return this.finish();
      }
      if (chunks.length === 0 && step.skipped.length === 0 && !step.retuned) {
        // Nothing to do until a chunk arrives, the window moves or a deadline passes.
        this.pumping = false;
        if (step.wakeAt !== undefined) {
          this.wake = setTimeout(() => this.pump(), Math.max(0, step.wakeAt - Date.now()));
        }
        return;
      }
    }
  }

  /** The broadcast's last chunk is written or skipped: flush the output and end. */
  private async finish(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    this.ended = true;
    if (this.wake) clearTimeout(this.wake);
    this.dropTransfers("broadcast ended");
    try {
      await this.output.finish();
    } catch (err) {
      return this.host.fail(err);
    }
    this.host.log.info({ chunks: this.written, skipped: this.skipped }, "broadcast ended");
    this.host.complete();
  }

  /** Keeps a uniform sample of the delays for the percentiles (all of them up to MAX_DELAY_SAMPLES). */
  private keepDelay(delay: number): void {
    this.delaysSeen++;
    if (this.delays.length < MAX_DELAY_SAMPLES) this.delays.push(delay);
    else {
      const i = Math.floor(Math.random() * this.delaysSeen);
      if (i < MAX_DELAY_SAMPLES) this.delays[i] = delay;
    }
  }
}

/** Verifies the live descriptor of a Joined against the network keys; exit 6 when it does not hold. */
function openDescriptor(joined: Joined, trusted: readonly PublicKey[], name: string): LiveDescriptorBody {
  const desc = joined.descriptor;
  if (!joined.live) throw new DownloadError(`tracker sent no live descriptor for "${name}"`, ExitCode.INTEGRITY);
  let body: LiveDescriptorBody;
  try {
    body = openLiveDescriptor(joined.live, trusted);
  } catch (err) {
    if (!(err instanceof LiveDescriptorError)) throw err;
    throw new DownloadError(`live descriptor of "${name}" rejected: ${err.message}`, ExitCode.INTEGRITY);
  }
  const mismatch = body.streamId !== desc?.streamId ? "stream id" : body.name !== desc.name ? "name" : undefined;
  if (mismatch) {
    throw new DownloadError(
      `live descriptor of "${name}" does not match its stream descriptor (${mismatch})`,
      ExitCode.INTEGRITY,
    );
  }
  return body;
}

function verifierFor(descriptor: LiveDescriptorBody, trusted: readonly PublicKey[], name: string): LiveVerifier {
  try {
    return new LiveVerifier(descriptor, { trusted });
  } catch (err) {
    if (!(err instanceof LiveDescriptorError)) throw err;
    throw new DownloadError(`live descriptor of "${name}" rejected: ${err.message}`, ExitCode.INTEGRITY);
  }
}

/** The q-quantile of sorted values (nearest rank), undefined when there are none. */
function percentile(sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** A raw read of live bytes: a viewer holds none in a byte numbering (416, before any byte). */
function notHeld(): Readable {
  const err = Object.assign(new Error("a viewer serves live chunks framed only"), { refusalStatus: 416 });
  return new Readable({
    read() {
      this.destroy(err);
    },
  });
}
