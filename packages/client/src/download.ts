import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import type { Readable, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import {
  ManifestError,
  openManifest,
  parsePdtpUrl,
  PeerRole,
  RangeSet,
  keyId,
  rangeWithin,
  Signer,
  StreamKind,
  TransferOutcome,
  WantMode,
  type ChunkRange,
  type Directive,
  type HashPiece,
  type Joined,
  type Manifest,
  type PdtpUrl,
  type PublicKey,
  type TrackerMessage,
} from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime/log";
import {
  TrackerLink,
  type LinkPolicy,
  type SessionEnd,
  type TrackerSession,
  type Verdict,
} from "@distribustream/tracker-link";
import {
  fetchChunks,
  FetchError,
  keepAliveAgent,
  startDataPlane,
  type ChunkSource,
  type DataPlaneAgent,
  type RunningDataPlane,
  RateLimiter,
} from "@distribustream/data-plane";
import type { Layout } from "./bufferFile.js";
import { ControlBatcher, MAX_RANGES } from "./control.js";
import { classifySessionEnd, DownloadError, ExitCode, tlsError } from "./errors.js";
import { HashPieceCache, PieceUnavailable } from "./hashPieces.js";
import { LiveDownload, type LiveHost, type LiveProgress, type LiveResult } from "./liveDownload.js";
import { resolveOutput, type OutputTarget } from "./outputTarget.js";
import {
  findPartial,
  partialAsWhole,
  recordPath,
  RecordKeeper,
  removeRecord,
  streamHeader,
  wholeAsPartial,
} from "./resume.js";
import { FileStorage, openStorage, type Storage } from "./storage.js";
import { reportEnd, type TransferState } from "./transfer.js";
import { VERSION } from "./version.js";

export const AGENT = `dsclient/${VERSION}`;

export interface Progress {
  /** Bytes verified and held (for a live stream, bytes written), those of a resumed partial file included. */
  bytes: number;
  /** Of `bytes`, those a partial file kept earlier held (-c). */
  resumedBytes?: number;
  /** The file's size; 0 for a live stream. */
  size: number;
  fromPeers: number;
  fromSeeders: number;
  /** Set for a live stream: chunks written and skipped, and the delay behind the source. */
  live?: LiveProgress;
}

export interface DownloadOptions {
  /** pdtp://HOST[:PORT]/NAME */
  url: string;
  /** File path, "-" for standard output, or a FIFO/device/socket path. Default: NAME's last segment. */
  output?: string;
  /**
   * Instead of `output`: the stream goes to this Writable (named `name` in
   * messages), in order as to standard output, and is never ended (its
   * owner ends it after onComplete). An EPIPE from it ends the download
   * successfully, as a closed `-o -` pipe does. dsclient --player uses it.
   */
  sink?: { writable: Writable; name: string };
  /** Data plane bind address; default "0.0.0.0". */
  listenHost?: string;
  /** Data plane port; default 0 (any free port). */
  listenPort?: number;
  /** Keep serving this long after completion; default 0. */
  lingerSeconds?: number;
  log: Logger;
  onProgress?: (p: Progress) => void;
  /** Called once when the output is complete, before any lingering. */
  onComplete?: (r: DownloadResult) => void;
  /** Tracker connection attempts before giving up (exit 4); default 5, backoff 0.5, 1, 2, 4 s. */
  connectAttempts?: number;
  /** Folder of the buffer file when the output is a pipe; default os.tmpdir(). */
  tempDir?: string;
  /** No directive and no verified chunk for this long ends the download (exit 7); default 60. */
  stallSeconds?: number;
  /** Folder a relative output path is resolved against; default process.cwd(). */
  cwd?: string;
  /**
   * Bound on the chunk buffers of transfers in flight (one chunk each), so
   * concurrent transfers are capped at this / chunk size (at least 1); the
   * tracker's extra directives are reported CANCELLED and re-planned later.
   * Default 32 MiB.
   */
  maxInFlightBytes?: number;
  /** Bytes per second this peer downloads at most, over all transfers (default: no limit). */
  maxDownloadRate?: number;
  /** Bytes per second this peer uploads to other peers at most (default: no limit). */
  maxUploadRate?: number;
  /** A download limit shared with other downloads (several at once); wins over maxDownloadRate. */
  downloadLimiter?: RateLimiter;
  /** An upload limit shared with other downloads; wins over maxUploadRate. */
  uploadLimiter?: RateLimiter;
  /**
   * Resume (dsclient -c). A regular output's partial file is kept when the
   * download stops before the end, with a record of its chunks beside it
   * (FILE.dsclient, see resume.ts); one kept earlier is checked chunk by
   * chunk against the signed manifest and only the rest is fetched. A
   * stream that changed since starts again from zero (onResume says why).
   * Refused (exit 2) for standard output, a FIFO or another stream output,
   * and for a live stream.
   */
  resume?: boolean;
  /** With `resume`: what became of a kept partial download. */
  onResume?: (e: ResumeEvent) => void;
  /**
   * Fingerprint of the network key to trust (as ?key= in the URL): a tracker
   * offering another key is refused (exit 6), and manifests must be signed
   * by this one. Without it, the key the tracker names is trusted.
   */
  networkKey?: string;
  /** PEM CA certificate(s) to trust for a pdtps:// tracker instead of the system's roots. */
  tlsCa?: Buffer | undefined;
  /** Live streams: media behind the live edge to start at, in ms (default 500). */
  prebufferMs?: number;
  /** Live streams: start at the oldest chunk the swarm still holds instead of near the edge. */
  fromStart?: boolean;
  signal?: AbortSignal;
}

/** What became of a partial download kept earlier (DownloadOptions.resume). */
export type ResumeEvent =
  /** It was of something else (another version of the stream): the download starts from zero. */
  | { kind: "restart"; reason: string }
  /** Its chunks were checked: those that verified are kept, the others are fetched again. */
  | { kind: "resumed"; path: string; chunks: number; bytes: number; badChunks: number };

export interface DownloadResult {
  /** The file's size; for a live stream, the bytes written. */
  size: number;
  /** Bytes fetched from other viewers (each chunk counted once). */
  bytesFromPeers: number;
  /** Bytes fetched from seeders. */
  bytesFromSeeders: number;
  /** Bytes of a partial download kept earlier (-c) that verified, so were not fetched again. */
  resumedBytes: number;
  /** Chunks of a partial download kept earlier that did not verify, so were fetched again. */
  resumedBadChunks: number;
  /** Chunks received that failed verification, each reported BAD_DATA (for a live stream: every refusal). */
  badChunks: number;
  /** Distinct sources that sent those (the tracker stops using a source after repeated bad data). */
  badSources: number;
  /** Set when the download stopped early with `resume`: the partial file kept for the next run. */
  keptPartial?: string;
  /** Verified bytes that arrived for chunks already held (a range fetched twice, e.g. across a tracker failover). */
  duplicateBytes: number;
  /** From start to completion (lingering excluded). */
  durationMs: number;
  streamId: string;
  /** Where the bytes went: a path, "-", or the name of DownloadOptions.sink. */
  output: string;
  /** Set for a live stream: what the viewer wrote, skipped and refused, and its delay. */
  live?: LiveResult;
}

/** Downloads one stream; rejects with a DownloadError whose exitCode says why. */
export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  let url: PdtpUrl;
  try {
    url = parsePdtpUrl(opts.url);
  } catch (err) {
    throw new DownloadError((err as Error).message, ExitCode.USAGE);
  }
  const target: OutputTarget = opts.sink
    ? { kind: "stdout", sink: opts.sink }
    : await resolveOutput(opts.output, url.name, opts.cwd ?? process.cwd());
  if (opts.resume && target.kind !== "file") {
    const what =
      target.kind === "stream" ? `${target.path} (a ${target.type})` : (target.sink?.name ?? "standard output");
    throw new DownloadError(
      `-c cannot resume a download to ${what}: only a regular output file keeps its partial download`,
      ExitCode.USAGE,
    );
  }
  return new Download(opts, url, target).run();
}

/** Per-transfer state, from directive to report. */
interface Transfer extends TransferState {
  badChunk: number | undefined;
  /** Its chunks could not be verified yet (their hash piece was not available): why. */
  unverifiable: string | undefined;
}

const FETCH_TIMEOUT_MS = 30_000;
/**
 * A seeder's range that has been coming for this long has its chunks told
 * (Have) as they come, not only in its report: the Have interval, so that a
 * range that comes at once (one viewer alone with the seeder) costs no
 * message more.
 */
const TELL_SEEDER_CHUNKS_AFTER_MS = 100;
const BACKOFF_BASE_MS = 500;
const MAX_BACKOFF_MS = 4000;
const MIN_RECONNECT_ATTEMPTS = 8;
/** Room for big answers from the tracker (GetHashPieces, about 2 MiB). */
const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
} as const;
const DEFAULT_MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;

const transferKey = (generation: number, transferId: number) => `${generation}:${transferId}`;

class Download {
  private readonly log: Logger;
  private readonly started = Date.now();
  private dataPlane: RunningDataPlane | undefined;
  private readonly agent: DataPlaneAgent = keepAliveAgent();
  private link: TrackerLink | undefined;
  /** The welcomed session of the link, while there is one. */
  private session: TrackerSession | undefined;
  /**
   * The Welcome of the session shut down with the download: the data plane
   * goes on answering as that peer until it is closed, so fetches the
   * tracker directed here before it heard the Leave are served, not refused
   * with 503 (at the end of a broadcast, the last chunks of the others).
   */
  private servingAs: TrackerSession["welcome"] | undefined;
  /** Generation of the welcomed session: directives and transfers of an older one are told apart by it. */
  private generation = 0;
  /** Resolves the resync of the current session once the tracker answered its Join. */
  private joinAnswered: (() => void) | undefined;
  private manifest: Manifest | undefined;
  /** Set when the name is a live stream: the viewer, from its Joined on. */
  private live: LiveDownload | undefined;
  /** Named in this peer's tickets; it signs each data-plane request so that no one else can use them. */
  private readonly sessionKey = Signer.generate();
  /** The verified chunk hashes, fetched piece by piece from the tracker as transfers need them. */
  private hashes: HashPieceCache | undefined;
  private layout: Layout | undefined;
  private storage: Storage | undefined;
  private readonly transfers = new Map<string, Transfer>();
  /** Directives over the cap on concurrent transfers: reported CANCELLED once a transfer ends. */
  private deferred: { directive: Directive; generation: number }[] = [];
  private maxTransfers = 1;
  private readonly writing = new Set<number>();
  private readonly batcher: ControlBatcher;
  private queue: Promise<void> = Promise.resolve();
  private heldBytes = 0;
  private fromPeers = 0;
  private fromSeeders = 0;
  private duplicates = 0;
  private badChunks = 0;
  private readonly badSources = new Set<string>();
  /** Set while the chunks of a kept partial file are checked: directives wait (deferred) till then. */
  private checking: { claimed: RangeSet; next: number } | undefined;
  private resumedBytes = 0;
  private resumedBadChunks = 0;
  /** With -c and a regular output: keeps FILE.dsclient current. */
  private record: RecordKeeper | undefined;
  private keptPartial: string | undefined;
  /** With -c: the output path of a FILE found there and being checked as a partial download. */
  private whole: string | undefined;
  private lastActivity = Date.now();
  private completing = false;
  private completedMs: number | undefined;
  private failure: DownloadError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (err: DownloadError) => void;
  private readonly completed: Promise<void>;
  private resolveCompleted!: () => void;
  /** Aborted when the download fails: ends waits such as reconnect backoff. */
  private readonly stop = new AbortController();
  private readonly downloadLimiter: RateLimiter | undefined;

  constructor(
    private readonly opts: DownloadOptions,
    private readonly url: PdtpUrl,
    private readonly target: OutputTarget,
  ) {
    this.log = opts.log.child({ stream: url.name });
    this.downloadLimiter =
      opts.downloadLimiter ?? (opts.maxDownloadRate ? new RateLimiter(opts.maxDownloadRate) : undefined);
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {});
    this.completed = new Promise<void>((resolve) => (this.resolveCompleted = resolve));
    this.batcher = new ControlBatcher(
      (msg) => this.session?.send(msg),
      () => this.manifest?.streamId ?? this.live?.streamId,
    );
  }

  async run(): Promise<DownloadResult> {
    const onAbort = () => this.fail(new DownloadError("download interrupted", 130));
    this.opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.opts.signal?.aborted) onAbort();
    const watchdog = setInterval(() => this.checkStall(), 1000);
    let ok = false;
    let failure: unknown;
    try {
      await Promise.race([this.start(), this.failed]);
      await Promise.race([this.sessionLoop(), this.failed]);
      ok = true;
      const result = this.result();
      this.opts.onComplete?.(result);
      await this.linger();
      return result;
    } catch (err) {
      failure = this.failure ?? err;
      throw failure;
    } finally {
      clearInterval(watchdog);
      this.opts.signal?.removeEventListener("abort", onAbort);
      await this.shutdown(ok);
      // the figures until the failure, with the partial file kept for -c (known once shut down)
      if (failure instanceof DownloadError) failure.result = this.result();
    }
  }

  // ---- setup ---------------------------------------------------------------

  private async start(): Promise<void> {
    const host = this.opts.listenHost ?? "0.0.0.0";
    const port = this.opts.listenPort ?? 0;
    try {
      this.dataPlane = await startDataPlane({
        host,
        port,
        source: this.chunkSource(),
        identity: () => {
          const w = this.session?.welcome ?? this.servingAs;
          return w ? { peerId: w.peerId, ticketKeys: w.ticketKeys } : undefined;
        },
        log: this.log,
        uploadLimiter:
          this.opts.uploadLimiter ?? (this.opts.maxUploadRate ? new RateLimiter(this.opts.maxUploadRate) : undefined),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new DownloadError(`cannot serve peers on ${host}:${port} (${code})`, ExitCode.USAGE, { cause: err });
    }
  }

  /** What the data plane serves: the live stream's frames once it is one, else the file's chunks. */
  private chunkSource(): ChunkSource {
    const file = this.fileChunkSource();
    const source = () => this.live?.chunkSource ?? file;
    return {
      layout: (streamId) => source().layout(streamId),
      holds: (streamId, range) => source().holds(streamId, range),
      read: (streamId, start, end) => source().read(streamId, start, end),
    };
  }

  private fileChunkSource(): ChunkSource {
    return {
      layout: (streamId) => {
        const m = this.manifest;
        if (!m || streamId !== m.streamId || !this.storage) return undefined;
        return { size: m.body.size, chunkSize: m.body.chunkSize, chunkCount: m.chunkCount, name: m.body.name };
      },
      holds: (streamId, range) =>
        !!this.storage && streamId === this.manifest?.streamId && this.storage.held.hasRange(range),
      read: (_streamId, start, end): Readable => this.storage!.read(start, end),
    };
  }

  // ---- tracker session -----------------------------------------------------

  /**
   * Keeps a session up until the download completes, through the tracker
   * link: it reconnects after a retryable end (see classifySessionEnd) and
   * re-joins on every Welcome. Sessions that end before the tracker answers
   * the Join count as failed attempts: after `connectAttempts` in a row (at
   * least MIN_RECONNECT_ATTEMPTS once joined), the download ends (exit 4).
   */
  private async sessionLoop(): Promise<void> {
    const link = new TrackerLink({
      target: this.url.target,
      tls: this.url.tls ? { ca: this.opts.tlsCa } : undefined,
      channelOptions: CHANNEL_OPTIONS,
      hello: () => ({
        role: PeerRole.PEER_ROLE_VIEWER,
        dataPort: this.dataPlane!.port,
        agent: AGENT,
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: this.sessionKey.publicKey.ed25519,
      }),
      policy: this.linkPolicy(),
      resync: (session) => this.join(session),
      onMessage: (msg, session) => this.enqueue(msg, session.generation),
      onSessionEnd: (session) => this.onSessionLost(session),
      onRetry: ({ end, reason, failures }) => {
        if (end.welcomed) {
          this.log.warn(
            { code: status[end.code], details: end.details, reason, failures },
            "tracker session lost, reconnecting",
          );
        } else this.log.info({ attempt: failures, reason }, "tracker connection failed");
      },
      signal: this.stop.signal,
    });
    this.link = link;
    await Promise.race([link.done, this.completed]);
    // The link ended quietly: the download failed or was interrupted, or it is completing.
    if (this.failure) throw this.failure;
    await this.completed;
  }

  /** Attempts: `connectAttempts`, backoff 0.5, 1, 2, 4, 4 s; once joined at least 8, jittered. */
  private linkPolicy(): LinkPolicy {
    const attempts = Math.max(1, this.opts.connectAttempts ?? 5);
    const backoff = { baseMs: BACKOFF_BASE_MS, maxMs: MAX_BACKOFF_MS };
    return {
      connect: { attempts, backoff: { ...backoff, jitter: "none" } },
      reconnect: { attempts: Math.max(attempts, MIN_RECONNECT_ATTEMPTS), backoff: { ...backoff, jitter: "spread" } },
      retryable: (end) => this.verdict(end),
      exhausted: (failures, { end, reason }) =>
        new DownloadError(
          end.welcomed
            ? `tracker ${this.url.target} ended ${failures} sessions in a row before answering the join (${reason})`
            : `tracker ${this.url.target} unreachable after ${failures} attempt${failures === 1 ? "" : "s"} (${reason})`,
          ExitCode.UNREACHABLE,
        ),
    };
  }

  /** What a session's end means for the download; a TLS failure is never retried (exit 8). */
  private verdict(end: SessionEnd): Verdict {
    // We cancelled it (CANCELLED "Cancelled on client"): the download failed or was interrupted.
    if (this.failure || this.completing) return { retry: false };
    if (end.tls) return { retry: false, error: tlsError(end.tls, this.url.target) };
    const what = classifySessionEnd(end.code, end.details, {
      name: this.url.name,
      target: this.url.target,
      joined: this.manifest !== undefined || this.live !== undefined,
    });
    return what.retry ? { retry: true, reason: what.reason, giveUp: what.giveUp } : { retry: false, error: what.error };
  }

  private onSessionLost(session: TrackerSession): void {
    if (this.session === session) this.session = undefined;
    this.batcher.reset();
    // The new session's tracker no longer knows the deferred transfers.
    this.deferred = [];
    this.live?.sessionLost();
  }

  /** The network key pinned by --network-key or the URL's ?key=; a conflict between the two is a usage error. */
  private get pinnedKey(): string | undefined {
    const flag = this.opts.networkKey?.toLowerCase();
    const url = this.url.networkKey;
    if (flag && url && flag !== url) {
      throw new DownloadError(`--network-key ${flag} and the URL's ?key=${url} differ`, ExitCode.USAGE);
    }
    return flag ?? url;
  }

  /** Keys to verify manifests with: those `session`'s tracker offers, narrowed to the pinned one. */
  private trustedNetworkKeys(session = this.session): PublicKey[] {
    const offered = session?.welcome.networkKeys ?? [];
    const pin = this.pinnedKey;
    return pin ? offered.filter((k) => k.keyId === pin && keyId(k.ed25519) === pin) : offered;
  }

  /** Refuses a tracker that does not offer the pinned network key (a wrong or impostor network). */
  private checkNetworkKey(session: TrackerSession): void {
    const pin = this.pinnedKey;
    if (!pin || this.trustedNetworkKeys(session).length > 0) return;
    const offered = session.welcome.networkKeys;
    const ids = offered.map((k) => k.keyId).join(", ") || "none";
    throw new DownloadError(
      `tracker ${this.url.target} signs with network key ${ids}, not the pinned ${pin}: refusing it`,
      ExitCode.INTEGRITY,
    );
  }

  /**
   * The resync of a welcomed session: joins the stream with what is held.
   * Resolves when the tracker answered the Join (the attempt succeeded).
   */
  private join(session: TrackerSession): Promise<void> {
    if (this.failure) throw this.failure;
    this.checkNetworkKey(session);
    this.session = session;
    this.generation = session.generation;
    this.lastActivity = Date.now();
    this.log.info({ peerId: session.welcome.peerId, observedHost: session.welcome.observedHost }, "welcomed");
    const { position, held } = this.live?.holding() ?? {
      position: this.storage?.position() ?? 0,
      held: this.storage?.held.ranges() ?? [],
    };
    // A fragmented holding goes partly in the Join, the rest in Have messages (each within the size bound).
    session.send({
      body: {
        $case: "join",
        value: {
          name: this.url.name,
          mode: WantMode.WANT_MODE_IN_ORDER,
          have: held.slice(0, MAX_RANGES),
          position,
        },
      },
    });
    // a live viewer re-joining before it tuned in has no position yet: the tracker waits for the one it picks
    if (this.live && !this.live.tunedIn) this.batcher.positionUnknown();
    else this.batcher.positionKnown(position);
    if (held.length > MAX_RANGES) this.batcher.held(held.slice(MAX_RANGES));
    return new Promise((resolve) => (this.joinAnswered = resolve));
  }

  /** Tracker messages are handled one at a time, in order. */
  private enqueue(msg: TrackerMessage, generation: number): void {
    this.queue = this.queue.then(() => this.handle(msg, generation)).catch((err: unknown) => this.fail(err));
  }

  private async handle(msg: TrackerMessage, generation: number): Promise<void> {
    if (generation !== this.generation || this.failure) return;
    switch (msg.body?.$case) {
      case "joined":
        return this.onJoined(msg.body.value);
      case "directives":
        if (this.live) return this.live.directives(msg.body.value.directives, generation);
        for (const d of msg.body.value.directives) this.startTransfer(d, generation);
        return;
      case "liveEdge":
        return this.live?.edge(msg.body.value);
      case "cancel": {
        const ids = new Set(msg.body.value.transferIds);
        if (this.live) return this.live.cancel(ids, generation);
        for (const id of ids) {
          const t = this.transfers.get(transferKey(generation, id));
          if (!t) continue;
          t.cancelled = true;
          t.abort.abort();
        }
        // A withdrawn directive that waited for a free slot needs no report either.
        this.deferred = this.deferred.filter((x) => !ids.has(x.directive.transferId));
        return;
      }
      case "notice":
        this.log.warn({ notice: msg.body.value.message }, "tracker notice");
        return;
      case "retired": {
        // the stream changed and nobody can serve the rest of this version: what was written stays a prefix of it
        const r = msg.body.value;
        if (r.streamId !== this.manifest?.streamId || this.completing) return;
        throw new DownloadError(
          r.detail || `"${this.url.name}" changed during the download and this version was retired`,
          ExitCode.STALLED,
        );
      }
      default:
        this.log.debug({ type: msg.body?.$case }, "ignored tracker message");
    }
  }

  private async onJoined(joined: Joined): Promise<void> {
    const desc = joined.descriptor;
    const name = this.url.name;
    if (!desc) throw new DownloadError(`tracker sent no descriptor for "${name}"`, ExitCode.UNEXPECTED);
    if (desc.kind === StreamKind.STREAM_KIND_LIVE) return this.onJoinedLive(joined);
    if (this.live) throw new DownloadError(`"${name}" changed on the tracker during the download`, ExitCode.STALLED);
    // the signed header; the chunk hashes come in signed pieces (fetchPieces)
    if (!joined.manifest) throw new DownloadError(`tracker sent no manifest for "${name}"`, ExitCode.INTEGRITY);
    let manifest: Manifest;
    try {
      manifest = openManifest(joined.manifest, this.trustedNetworkKeys());
    } catch (err) {
      throw new DownloadError(`manifest of "${name}" rejected: ${(err as Error).message}`, ExitCode.INTEGRITY);
    }
    const b = manifest.body;
    const mismatch =
      b.streamId !== desc.streamId
        ? "stream id"
        : b.size !== desc.size
          ? "size"
          : b.chunkSize !== desc.chunkSize
            ? "chunk size"
            : manifest.chunkCount !== desc.chunkCount
              ? "chunk count"
              : b.name !== desc.name
                ? "name"
                : undefined;
    if (mismatch) {
      throw new DownloadError(`manifest of "${name}" does not match its descriptor (${mismatch})`, ExitCode.INTEGRITY);
    }
    if (this.manifest) {
      if (this.manifest.streamId !== manifest.streamId) {
        throw new DownloadError(`"${name}" changed on the tracker during the download`, ExitCode.STALLED);
      }
      this.joinAnswered?.();
      this.log.info({ held: this.storage?.held.toString() }, "re-joined");
      return;
    }
    const layout = { size: b.size, chunkSize: b.chunkSize, chunkCount: manifest.chunkCount };
    const kept = await this.openKept(manifest, layout);
    const storage =
      kept?.storage ??
      (await openStorage(this.target, layout, {
        tempDir: this.opts.tempDir ?? tmpdir(),
        onPosition: (p) => {
          this.lastActivity = Date.now();
          this.batcher.setPosition(p);
        },
      }));
    if (this.failure) {
      // Failed (or interrupted) while the buffer was being opened: leave nothing new behind.
      await (kept ? storage.close() : storage.discard()).catch((err: unknown) =>
        this.log.warn({ err }, "closing the download buffer"),
      );
      if (kept) await this.restoreWhole(storage);
      return;
    }
    this.storage = storage;
    this.storage.failed.catch((err: unknown) => this.fail(err));
    this.manifest = manifest;
    this.hashes = new HashPieceCache(
      manifest,
      () => this.trustedNetworkKeys(),
      (first, count) => this.fetchPieces(manifest.streamId, first, count),
    );
    this.layout = layout;
    if (kept) this.checking = { claimed: kept.claimed, next: 0 };
    if (this.target.kind === "file") await this.keepRecord(this.target.path, manifest);
    this.joinAnswered?.();
    if (kept && storage instanceof FileStorage) {
      this.checkKept(storage, kept.claimed).catch((err: unknown) => this.fail(err));
    }
    const inFlight = this.opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES;
    this.maxTransfers = Math.max(1, Math.floor(inFlight / b.chunkSize));
    this.log.info(
      { streamId: b.streamId, size: b.size, chunkSize: b.chunkSize, peers: desc.peers, seeders: desc.seeders },
      "joined",
    );
    this.progress();
    this.checkComplete();
  }

  // ---- resume (-c) ---------------------------------------------------------

  /**
   * With -c and a regular output: the partial file an earlier run kept, with
   * the chunks its record names (not yet checked), when it is of this
   * version of the stream. Anything else kept is replaced, and onResume says why.
   */
  private async openKept(
    manifest: Manifest,
    layout: Layout,
  ): Promise<{ storage: FileStorage; claimed: RangeSet } | undefined> {
    if (!this.opts.resume || this.target.kind !== "file") return undefined;
    const path = this.target.path;
    const found = await findPartial(path, manifest);
    if (found.kind === "none") return undefined;
    if (found.kind === "whole") {
      // FILE becomes the partial file whose every chunk is to be checked; it goes back to its name
      // if the download stops before anything was written to it (see restoreWhole)
      this.log.info({ path }, "checking the file already there");
      await wholeAsPartial(path);
      const storage = await FileStorage.reopen(path, layout).catch((err: unknown) => String(err));
      if (storage instanceof FileStorage) {
        this.whole = path;
        return { storage, claimed: found.claimed };
      }
      await partialAsWhole(path);
      return undefined;
    }
    if (found.kind === "resume") {
      const storage = await FileStorage.reopen(path, layout);
      if (storage instanceof FileStorage) return { storage, claimed: found.claimed };
      if (storage === undefined) return undefined;
      this.restart(`${storage}, so it cannot be resumed`);
    } else this.restart(found.reason);
    return undefined;
  }

  /**
   * A FILE found complete-looking (-c) that the download stopped on before
   * writing a byte to it (interrupted while checking, the tracker gone) is
   * put back under its name as it was, with no record: the user's file is
   * never left as a partial download that a later run would remove.
   */
  private async restoreWhole(storage: Storage): Promise<boolean> {
    if (this.whole === undefined || !(storage instanceof FileStorage) || storage.written > 0) return false;
    try {
      await partialAsWhole(this.whole);
      this.log.info({ path: this.whole }, "the file already there is left as it was");
      return true;
    } catch (err) {
      this.log.warn({ err, path: this.whole }, "putting the file already there back");
      return false;
    }
  }

  private restart(reason: string): void {
    this.log.info({ reason }, "partial download not resumed");
    this.opts.onResume?.({ kind: "restart", reason: `${reason}: starting from zero` });
  }

  /**
   * With -c, keeps FILE.dsclient current from now on (the chunks held, and
   * those kept still to be checked); without, removes one left by an earlier
   * run, whose partial file the new one replaced.
   */
  private async keepRecord(path: string, manifest: Manifest): Promise<void> {
    if (!this.opts.resume) return removeRecord(recordPath(path));
    const chunks = () => {
      const held = this.storage!.held;
      const c = this.checking;
      if (!c) return held;
      const all = new RangeSet(held.ranges());
      all.addAll(c.claimed.intersect({ first: c.next, last: Number.MAX_SAFE_INTEGER }));
      return all;
    };
    this.record = new RecordKeeper(recordPath(path), streamHeader(manifest), chunks, this.log);
    await this.record.save();
  }

  /**
   * Checks the chunks a kept partial file's record names, one at a time
   * through one reused buffer: each that hashes as the signed manifest says
   * counts as held, the others are fetched again. Meanwhile directives wait
   * (deferred, holding the tracker's transfer slots so it plans no more);
   * afterwards the tracker hears what is held and plans the rest.
   */
  private async checkKept(storage: FileStorage, claimed: RangeSet): Promise<void> {
    const started = Date.now();
    const scratch = Buffer.allocUnsafe(this.layout!.chunkSize);
    let chunks = 0;
    for (const r of claimed.ranges()) {
      for (let i = r.first; i <= r.last; i++) {
        if (this.failure) return;
        this.checking!.next = i;
        const piece = await this.keptPiece(i, r.last);
        if (!piece || this.failure) return;
        const data = await storage.readChunk(i, scratch);
        if (piece.matches(i, createHash("sha256").update(data).digest())) {
          storage.adopt(i);
          chunks++;
          this.resumedBytes += data.length;
          this.heldBytes += data.length;
        } else this.resumedBadChunks++;
        this.lastActivity = Date.now();
        this.progress();
      }
    }
    this.checking = undefined;
    const e = { path: storage.partPath, chunks, bytes: this.resumedBytes, badChunks: this.resumedBadChunks };
    this.log.info({ ...e, ms: Date.now() - started }, "kept chunks checked");
    this.opts.onResume?.({ kind: "resumed", ...e });
    if (!storage.held.isEmpty) this.batcher.held(storage.held.ranges());
    this.batcher.setPosition(storage.position());
    this.releaseDeferred("kept chunks checked");
    this.record?.changed();
    this.checkComplete();
  }

  /** The hash piece for kept chunk `index`; waits while the tracker cannot give it (the stall limit bounds that). */
  private async keptPiece(index: number, upTo: number): Promise<HashPiece | undefined> {
    for (;;) {
      try {
        return await this.hashes!.pieceFor(index, upTo);
      } catch (err) {
        this.pieceFailed(err);
        if (this.failure) return undefined;
        await sleep(1000, undefined, { signal: this.stop.signal }).catch(() => {});
      }
    }
  }

  /** A live name: the live module takes the stream from here (see liveDownload.ts). */
  private onJoinedLive(joined: Joined): void {
    if (this.manifest) {
      throw new DownloadError(`"${this.url.name}" changed on the tracker during the download`, ExitCode.STALLED);
    }
    if (this.opts.resume) {
      throw new DownloadError(
        `-c cannot resume "${this.url.name}": it is a live stream, which has no fixed bytes to continue (record it without -c, to a new file)`,
        ExitCode.USAGE,
      );
    }
    if (this.live) this.live.rejoined(joined, this.trustedNetworkKeys());
    else {
      // joined with position 0 before knowing the stream was live: the tune-in chunk is news to the tracker
      this.batcher.positionUnknown();
      this.live = LiveDownload.open(this.liveHost(), joined, this.trustedNetworkKeys(), {
        name: this.url.name,
        target: this.target,
        prebufferMs: this.opts.prebufferMs,
        fromStart: this.opts.fromStart,
        maxInFlightBytes: this.opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES,
      });
    }
    this.joinAnswered?.();
  }

  private liveHost(): LiveHost {
    return {
      log: this.log,
      batcher: this.batcher,
      sessionKey: this.sessionKey,
      agent: this.agent,
      downloadLimiter: this.downloadLimiter,
      startedMs: this.started,
      generation: () => this.generation,
      connected: () => this.session !== undefined,
      activity: () => (this.lastActivity = Date.now()),
      fail: (err) => this.fail(err),
      complete: () => {
        if (this.completing) return;
        this.completing = true;
        this.completedMs = Date.now();
        this.batcher.flush();
        this.resolveCompleted();
      },
      progress: (p) =>
        this.opts.onProgress?.({
          bytes: p.bytesWritten,
          size: 0,
          fromPeers: p.fromPeers,
          fromSeeders: p.fromSeeders,
          live: p,
        }),
    };
  }

  // ---- transfers -----------------------------------------------------------

  private startTransfer(d: Directive, generation: number): void {
    this.lastActivity = Date.now();
    const m = this.manifest;
    const storage = this.storage;
    const report = (outcome: TransferOutcome, detail: string) =>
      this.batcher.report({
        transferId: d.transferId,
        outcome,
        bytes: 0,
        durationMs: 0,
        detail,
        httpStatus: 0,
        verified: outcome === TransferOutcome.TRANSFER_OUTCOME_CANCELLED ? this.heldOf(d) : [],
      });
    if (!m || !storage || this.completing) {
      report(TransferOutcome.TRANSFER_OUTCOME_CANCELLED, this.completing ? "download complete" : "not joined");
      return;
    }
    if (d.streamId !== m.streamId || !d.range || !rangeWithin(d.range, m.chunkCount) || !d.source || !d.ticket) {
      this.log.warn({ transferId: d.transferId, streamId: d.streamId }, "invalid directive");
      report(TransferOutcome.TRANSFER_OUTCOME_FAILED, "invalid directive");
      return;
    }
    const key = transferKey(generation, d.transferId);
    if (this.transfers.has(key) || this.deferred.some((x) => x.directive.transferId === d.transferId)) {
      this.log.warn({ transferId: d.transferId }, "duplicate directive ignored");
      return;
    }
    // Fetch only the chunks not yet held, nor on their way in a transfer of a lost session
    // (the new session's tracker does not know of those; should one fail, its chunks are
    // missing from this transfer's report, and so planned again).
    const gaps = [...this.heldOrComing().gaps(d.range)];
    if (gaps.length === 0) {
      // The tracker credits `verified` on CANCELLED: it learns we hold the range and plans it no more.
      report(TransferOutcome.TRANSFER_OUTCOME_CANCELLED, "already held");
      return;
    }
    if (this.checking || this.transfers.size >= this.maxTransfers) {
      // Memory is one chunk buffer per transfer: the tracker re-plans this once a transfer ends
      // (or the kept chunks are checked).
      this.deferred.push({ directive: d, generation });
      return;
    }
    const range = { first: gaps[0]!.first, last: gaps[gaps.length - 1]!.last };
    const t: Transfer = {
      key,
      directive: d,
      range,
      generation,
      fromSeeder: d.source.seeder,
      abort: new AbortController(),
      // The held head and tail (and any held chunk between) count as verified in the report.
      verified: new RangeSet(storage.held.intersect(d.range)),
      bytes: 0,
      startedMs: Date.now(),
      cancelled: false,
      dropped: false,
      badChunk: undefined,
      unverifiable: undefined,
    };
    this.transfers.set(key, t);
    // the hashes of the range are fetched while its first bytes are on their way
    this.hashes!.prefetch(range.first, range.last).catch((err: unknown) => this.pieceFailed(err));
    const source = d.source;
    const ticket = d.ticket;
    // One request per run of missing chunks, in turn (on one keep-alive connection): chunks held
    // between them (kept by a resumed download, or fetched before a tracker failover) are not sent again.
    const fetchGaps = async () => {
      for (const gap of gaps) {
        for (const still of [...storage.held.gaps(gap)]) {
          await fetchChunks({
            host: source.host,
            port: source.port,
            streamId: m.streamId,
            range: still,
            ticket,
            sessionKey: this.sessionKey,
            layout: { size: m.body.size, chunkSize: m.body.chunkSize },
            onChunk: (index, data) => this.onChunk(t, index, data),
            signal: t.abort.signal,
            agent: this.agent,
            timeoutMs: FETCH_TIMEOUT_MS,
          });
        }
      }
    };
    fetchGaps().then(
      () => this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_OK, ""),
      (err: unknown) => this.transferFailed(t, err),
    );
  }

  private async onChunk(t: Transfer, index: number, data: Buffer): Promise<void> {
    // Waiting here keeps the socket paused: the limit reaches the sender as TCP backpressure.
    if (this.downloadLimiter) await this.downloadLimiter.take(data.length);
    const storage = this.storage!;
    let piece: HashPiece;
    try {
      piece = await this.hashes!.pieceFor(index, t.range.last);
    } catch (err) {
      this.pieceFailed(err);
      t.unverifiable = (err as Error).message;
      t.abort.abort();
      throw err;
    }
    if (!piece.matches(index, createHash("sha256").update(data).digest())) {
      t.badChunk = index;
      t.abort.abort();
      throw new Error(`chunk ${index} failed verification`);
    }
    if (!storage.held.has(index) && !this.writing.has(index)) {
      this.writing.add(index);
      try {
        await storage.put(index, data);
      } catch (err) {
        this.fail(err);
        throw err;
      } finally {
        this.writing.delete(index);
      }
      this.heldBytes += data.length;
      if (t.fromSeeder) {
        this.fromSeeders += data.length;
        // A seeder injects each chunk once and shares its upload among many transfers, so a range
        // from it can take seconds: its chunks are told as they come (Have, at most every 100 ms), and
        // other viewers can fetch them from here before the range ends.
        if (index < t.range.last && Date.now() - t.startedMs >= TELL_SEEDER_CHUNKS_AFTER_MS) {
          this.batcher.held([{ first: index, last: index }]);
        }
      } else this.fromPeers += data.length;
      this.record?.changed();
      this.lastActivity = Date.now();
      this.batcher.setPosition(storage.position());
      this.progress();
      this.checkComplete();
    } else this.duplicates += data.length;
    t.verified.add({ first: index, last: index });
    t.bytes += data.length;
  }

  /**
   * A hash piece could not be had. A refused one (bad signature, another
   * stream's, version's or place's) ends the download as an integrity
   * failure; one not available now only ends the transfer (reported
   * CANCELLED: the source did nothing wrong) and the tracker plans it again.
   */
  private pieceFailed(err: unknown): void {
    if (err instanceof ManifestError) {
      this.fail(new DownloadError(`hash piece of "${this.url.name}" rejected: ${err.message}`, ExitCode.INTEGRITY));
    } else if (!(err instanceof PieceUnavailable)) {
      const e = err as { code?: number; details?: string; message?: string };
      this.log.info({ code: e.code, detail: e.details ?? e.message }, "hash pieces not fetched");
    }
  }

  /** GetHashPieces on the current session's tracker. */
  private async fetchPieces(streamId: string, first: number, count: number) {
    const session = this.session;
    if (!session) throw new PieceUnavailable("not connected to the tracker");
    return session.hashPieces(streamId, first, count);
  }

  private transferFailed(t: Transfer, err: unknown): void {
    if (t.unverifiable !== undefined && !t.verified.hasRange(t.range)) {
      return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_CANCELLED, `not verifiable: ${t.unverifiable}`);
    }
    if (t.badChunk !== undefined) {
      this.badChunks++;
      this.badSources.add(t.directive.source?.peerId ?? "");
      this.log.warn({ transferId: t.directive.transferId, source: t.directive.source, chunk: t.badChunk }, "bad chunk");
      return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_BAD_DATA, `chunk ${t.badChunk} failed verification`);
    }
    // Completion aborts every transfer, including the one whose last chunk completed the file.
    if (t.verified.hasRange(t.range)) return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_OK, "");
    if (t.cancelled || t.dropped) return this.endTransfer(t, TransferOutcome.TRANSFER_OUTCOME_CANCELLED, "cancelled");
    const detail = err instanceof Error ? err.message : String(err);
    const outcome =
      err instanceof FetchError && err.kind === "refused"
        ? TransferOutcome.TRANSFER_OUTCOME_REFUSED
        : TransferOutcome.TRANSFER_OUTCOME_FAILED;
    this.log.info({ transferId: t.directive.transferId, source: t.directive.source, detail }, "transfer failed");
    this.endTransfer(t, outcome, detail, err instanceof FetchError ? (err.status ?? 0) : 0);
  }

  /** One report per transfer, unless the tracker cancelled it or it belongs to a lost session. */
  private endTransfer(t: Transfer, outcome: TransferOutcome, detail: string, status = 0): void {
    if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
    this.lastActivity = Date.now();
    if (!this.session) return;
    // Chunks of the directive that other transfers brought meanwhile are held too.
    t.verified.addAll(this.heldOf(t.directive));
    reportEnd(this.batcher, t, this.generation, outcome, detail, status);
    this.releaseDeferred("a transfer slot was busy");
  }

  /** Reports the directives that waited for a slot as CANCELLED, so the tracker plans them again. */
  private releaseDeferred(detail: string): void {
    const deferred = this.deferred;
    this.deferred = [];
    for (const { directive: d, generation } of deferred) {
      if (generation !== this.generation) continue;
      this.batcher.report({
        transferId: d.transferId,
        outcome: TransferOutcome.TRANSFER_OUTCOME_CANCELLED,
        bytes: 0,
        durationMs: 0,
        detail,
        httpStatus: 0,
        verified: this.heldOf(d),
      });
    }
  }

  /** The chunks of a directive's range that are already held. */
  /** Chunks held, plus those still coming in transfers of a lost session. */
  private heldOrComing(): RangeSet {
    const held = this.storage!.held;
    let covered: RangeSet | undefined;
    for (const t of this.transfers.values()) {
      if (t.generation === this.generation) continue;
      covered ??= new RangeSet(held.ranges());
      covered.add(t.range);
    }
    return covered ?? held;
  }

  private heldOf(d: Directive): ChunkRange[] {
    const m = this.manifest;
    if (!this.storage || !m || !d.range || d.streamId !== m.streamId || !rangeWithin(d.range, m.chunkCount)) return [];
    return [...this.storage.held.intersect(d.range)];
  }

  // ---- progress, completion, failure --------------------------------------

  private progress(): void {
    if (!this.layout) return;
    this.opts.onProgress?.({
      bytes: this.heldBytes,
      size: this.layout.size,
      fromPeers: this.fromPeers,
      fromSeeders: this.fromSeeders,
      resumedBytes: this.resumedBytes,
    });
  }

  private checkComplete(): void {
    const storage = this.storage;
    if (this.completing || !storage || !this.layout || storage.held.count < this.layout.chunkCount) return;
    this.completing = true;
    for (const t of this.transfers.values()) {
      t.dropped = true;
      t.abort.abort();
    }
    this.releaseDeferred("download complete");
    storage.finish().then(
      () => {
        this.completedMs = Date.now();
        this.batcher.setPosition(this.layout!.chunkCount);
        this.batcher.flush();
        this.log.info({ ms: this.completedMs - this.started }, "download complete");
        this.resolveCompleted();
      },
      (err: unknown) => this.fail(err),
    );
  }

  private checkStall(): void {
    const stallMs = (this.opts.stallSeconds ?? 60) * 1000;
    if (this.completing || this.failure) return;
    // A reader that is slow to take the output (a paused player) is not a stall.
    if (this.storage?.outputBlocked() || this.live?.outputBlocked()) this.lastActivity = Date.now();
    if (Date.now() - this.lastActivity < stallMs) return;
    const held = this.storage?.held.count ?? 0;
    const of = this.layout?.chunkCount;
    const where = this.live?.stallDetail() ?? (of !== undefined ? `${held} of ${of} chunks held` : "not joined");
    this.fail(
      new DownloadError(`download stalled: no data for ${Math.round(stallMs / 1000)} s (${where})`, ExitCode.STALLED),
    );
  }

  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure =
      err instanceof DownloadError
        ? err
        : new DownloadError(`unexpected error: ${(err as Error)?.message ?? String(err)}`, ExitCode.UNEXPECTED, {
            cause: err,
          });
    if (this.failure.exitCode === ExitCode.UNEXPECTED) this.log.error({ err }, "download failed");
    this.stop.abort();
    this.rejectFailed(this.failure);
  }

  private result(): DownloadResult {
    const common = {
      durationMs: (this.completedMs ?? Date.now()) - this.started,
      output: this.target.kind === "stdout" ? (this.target.sink?.name ?? "-") : this.target.path,
      resumedBytes: this.resumedBytes,
      resumedBadChunks: this.resumedBadChunks,
      ...(this.keptPartial !== undefined ? { keptPartial: this.keptPartial } : {}),
    };
    if (this.live) {
      const r = this.live.result();
      return { ...common, ...r, size: r.live.bytesWritten, streamId: this.live.streamId };
    }
    return {
      ...common,
      size: this.layout?.size ?? 0,
      bytesFromPeers: this.fromPeers,
      bytesFromSeeders: this.fromSeeders,
      duplicateBytes: this.duplicates,
      badChunks: this.badChunks,
      badSources: this.badSources.size,
      streamId: this.manifest?.streamId ?? "",
    };
  }

  /** Keeps serving after completion, until the time is up, the session ends or the caller aborts. */
  private async linger(): Promise<void> {
    const seconds = this.opts.lingerSeconds ?? 0;
    if (seconds <= 0 || !this.session) return;
    this.log.info({ seconds }, "lingering");
    const ac = new AbortController();
    const stop = () => ac.abort();
    this.opts.signal?.addEventListener("abort", stop, { once: true });
    try {
      await Promise.race([
        sleep(seconds * 1000, undefined, { signal: ac.signal }).catch(() => {}),
        this.session.ended,
        this.failed.catch(() => {}),
      ]);
    } finally {
      ac.abort();
      this.opts.signal?.removeEventListener("abort", stop);
    }
  }

  private async shutdown(ok: boolean): Promise<void> {
    // A Joined being handled may still be creating the buffer: let it finish (it discards it on failure).
    await this.queue;
    for (const t of this.transfers.values()) {
      t.dropped = true;
      t.abort.abort();
    }
    this.live?.close();
    const session = this.session;
    if (session) this.batcher.flush();
    this.servingAs = session?.welcome;
    this.session = undefined;
    const streamId = this.manifest?.streamId ?? this.live?.streamId;
    if (session && ok && streamId) session.send({ body: { $case: "leave", value: { streamId } } });
    if (ok) await this.link?.close();
    else this.link?.abort();
    this.batcher.close();
    await this.dataPlane?.close().catch((err: unknown) => this.log.warn({ err }, "closing the data plane"));
    this.agent.destroy();
    if (this.storage) {
      // With -c a partial file stays, with its record, for the next run to resume.
      const keep = !ok && this.record !== undefined && this.completedMs === undefined;
      await (ok || keep ? this.storage.close() : this.storage.discard()).catch((err: unknown) =>
        this.log.warn({ err }, "closing the download buffer"),
      );
      await this.record?.close(keep);
      const restored = keep && (await this.restoreWhole(this.storage));
      if (keep && !restored && this.storage instanceof FileStorage) this.keptPartial = this.storage.partPath;
    }
  }
}
