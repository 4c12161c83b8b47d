import cliProgress from "cli-progress";
import type { DownloadResult, Progress, ResumeEvent } from "./download.js";
import { DownloadError } from "./errors.js";

/**
 * What dsclient tells on stderr about its downloads, in one of four modes:
 * - "tty": a progress bar (one a download when several run at once) and a
 *   summary line per download;
 * - "plain" (stderr is not a terminal): no progress, one summary line per
 *   download at its end;
 * - "json" (--json): newline-delimited JSON objects, each with an `event`:
 *   "progress" (at most two a second per download; none with --quiet),
 *   "restart", "resumed", "summary" (one per download, also when it failed)
 *   and, with several URLs, "total";
 * - "quiet": nothing but errors and warnings.
 * Errors and warnings (a kept partial download that cannot be resumed) are
 * one line each in every mode but json, where they are events.
 */
export type ReportMode = "tty" | "plain" | "json" | "quiet";

export interface ReportOptions {
  mode: ReportMode;
  /** json: progress events too (not with --quiet). */
  progressEvents: boolean;
  /** Several URLs: lines name the URL, and a last line (or "total" event) says which failed. */
  many: boolean;
  /** Several downloads at once: one bar a download. */
  concurrent: boolean;
}

/** One download's outcome, for the batch's last line. */
export interface Outcome {
  url: string;
  exitCode: number;
}

const MiB = 1024 * 1024;
/** Least time between two JSON progress events of one download. */
const JSON_PROGRESS_MS = 500;

export class Reporter {
  private multi: cliProgress.MultiBar | undefined;

  constructor(readonly o: ReportOptions) {}

  /** The report of one download of `url`. */
  download(url: string): DownloadReport {
    return new DownloadReport(this, url);
  }

  /** With several URLs, the end: which failed (always), or that all succeeded (unless quiet). */
  total(outcomes: readonly Outcome[], exitCode: number): void {
    if (!this.o.many) return;
    const failed = outcomes.filter((x) => x.exitCode !== 0);
    if (this.o.mode === "json") {
      this.json({ event: "total", ok: failed.length === 0, downloads: outcomes.length, failed, exitCode });
      return;
    }
    if (failed.length === 0) {
      if (this.o.mode !== "quiet") this.line(`dsclient: all ${outcomes.length} downloads succeeded`);
      return;
    }
    const which = failed.map((x) => `${x.url} (exit ${x.exitCode})`).join(", ");
    this.line(
      `dsclient: ${outcomes.length - failed.length} of ${outcomes.length} downloads succeeded; failed: ${which}`,
    );
  }

  /** A line on stderr (above the bars while there are some). */
  line(text: string): void {
    if (this.multi) {
      this.multi.log(text + "\n");
      this.multi.update(); // written now: a MultiBar flushes its log only when it redraws, not when stopped
    } else process.stderr.write(text + "\n");
  }

  json(event: Record<string, unknown>): void {
    process.stderr.write(JSON.stringify(event) + "\n");
  }

  /** The bars of the downloads running at once (tty mode). */
  bars(): cliProgress.MultiBar {
    this.multi ??= new cliProgress.MultiBar(
      { stream: process.stderr, hideCursor: true, clearOnComplete: false, fps: 10 },
      cliProgress.Presets.shades_classic,
    );
    return this.multi;
  }

  stop(): void {
    this.multi?.stop();
    this.multi = undefined;
  }
}

/** The report of one download; the download's callbacks call it. */
export class DownloadReport {
  private readonly view: ProgressView | undefined;
  private lastJson = 0;
  private readonly started = Date.now();

  constructor(
    private readonly r: Reporter,
    private readonly url: string,
  ) {
    if (r.o.mode === "tty") this.view = r.o.concurrent ? new ProgressRow(r.bars(), url) : new ProgressLine();
  }

  progress(p: Progress): void {
    this.view?.update(p);
    if (this.r.o.mode !== "json" || !this.r.o.progressEvents) return;
    const now = Date.now();
    if (now - this.lastJson < JSON_PROGRESS_MS) return;
    this.lastJson = now;
    const seconds = round((now - this.started) / 1000);
    const common = { event: "progress", url: this.url, seconds };
    const from = { bytesFromPeers: p.fromPeers, bytesFromSeeders: p.fromSeeders };
    if (p.live) {
      const l = p.live;
      const { chunksWritten, bytesWritten, skipped, delayMs } = l;
      this.r.json({ ...common, live: true, chunksWritten, bytesWritten, skipped, delayMs: delayMs ?? null, ...from });
    } else {
      this.r.json({ ...common, bytes: p.bytes, size: p.size, resumedBytes: p.resumedBytes ?? 0, ...from });
    }
  }

  resume(e: ResumeEvent): void {
    if (this.r.o.mode === "json") return this.r.json({ event: e.kind, url: this.url, ...withoutKind(e) });
    // a kept partial download that cannot be used is a warning, even with --quiet
    if (e.kind === "restart") this.r.line(`dsclient: ${this.prefix()}${e.reason}`);
  }

  /** The download completed (before any lingering). */
  completed(result: DownloadResult): void {
    this.view?.stop();
    if (this.r.o.mode === "json") this.r.json(summaryEvent(this.url, result, 0));
    else if (this.r.o.mode !== "quiet") this.r.line(summaryLine(result));
  }

  /** The download failed, or was interrupted (`interrupted`: by a signal, exit 130/143). */
  failed(err: unknown, exitCode: number, interrupted: boolean): void {
    this.view?.stop();
    const result = err instanceof DownloadError ? err.result : undefined;
    const message = err instanceof DownloadError ? err.message : `unexpected error: ${(err as Error)?.message ?? err}`;
    if (this.r.o.mode === "json") {
      this.r.json(summaryEvent(this.url, result, exitCode, interrupted ? "interrupted" : message));
      return;
    }
    const kept = result?.keptPartial;
    if (interrupted) {
      if (kept && this.r.o.mode !== "quiet") {
        const held = (result.resumedBytes + result.bytesFromPeers + result.bytesFromSeeders) / MiB;
        this.r.line(
          `dsclient: ${this.prefix()}interrupted; ${held.toFixed(1)} of ${(result.size / MiB).toFixed(1)} MiB kept in ${kept} (run again with -c to resume)`,
        );
      }
      return;
    }
    this.r.line(
      `dsclient: ${this.prefix()}${message}${kept ? ` (partial download kept in ${kept}: -c resumes it)` : ""}`,
    );
  }

  /** The reader of the output closed it early: a success (exit 0) without a summary line. */
  outputClosed(err: DownloadError): void {
    this.view?.stop();
    if (this.r.o.mode === "json") this.r.json({ ...summaryEvent(this.url, err.result, 0), note: err.message });
  }

  private prefix(): string {
    return this.r.o.many ? `${this.url}: ` : "";
  }
}

function withoutKind(e: ResumeEvent): Record<string, unknown> {
  const { kind: _kind, ...rest } = e;
  return rest;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/**
 * The JSON summary of a download: `bytes` are those fetched by this run
 * (from peers and seeders, each chunk once), `rate` is bytes / seconds, and
 * `resumedBytes` those a kept partial file already held (-c).
 */
export function summaryEvent(
  url: string,
  r: DownloadResult | undefined,
  exitCode: number,
  error?: string,
): Record<string, unknown> {
  const e: Record<string, unknown> = { event: "summary", url, ok: exitCode === 0, exitCode };
  if (error !== undefined) e.error = error;
  if (!r) return e;
  const bytes = r.bytesFromPeers + r.bytesFromSeeders;
  const seconds = round(Math.max(r.durationMs, 1) / 1000);
  Object.assign(e, {
    output: r.output,
    streamId: r.streamId,
    size: r.size,
    bytes,
    seconds,
    rate: Math.round(bytes / seconds),
    bytesFromPeers: r.bytesFromPeers,
    bytesFromSeeders: r.bytesFromSeeders,
    duplicateBytes: r.duplicateBytes,
    badChunks: r.badChunks,
    badSources: r.badSources,
    resumedBytes: r.resumedBytes,
    resumedBadChunks: r.resumedBadChunks,
  });
  if (r.keptPartial !== undefined) e.keptPartial = r.keptPartial;
  if (r.live) {
    const l = r.live;
    e.live = {
      chunksWritten: l.chunksWritten,
      bytesWritten: l.bytesWritten,
      skipped: l.skipped,
      delayP50Ms: l.delayP50Ms ?? null,
      delayP95Ms: l.delayP95Ms ?? null,
      tuneInMs: l.tuneInMs ?? null,
      retunes: l.retunes,
      rejected: l.rejected,
    };
  }
  return e;
}

/** The one line a completed download prints (on a terminal, or without one unless --quiet). */
export function summaryLine(r: DownloadResult): string {
  if (r.live) return liveSummaryLine(r);
  const secs = Math.max(r.durationMs, 1) / 1000;
  const got = r.bytesFromPeers + r.bytesFromSeeders;
  const share = got > 0 ? Math.round((100 * r.bytesFromPeers) / got) : 0;
  const where = r.output === "-" ? "standard output" : r.output;
  const extra = [
    r.resumedBytes > 0 ? `${(r.resumedBytes / MiB).toFixed(1)} MiB resumed` : "",
    r.resumedBadChunks > 0 ? `${r.resumedBadChunks} kept chunks fetched again` : "",
    r.badChunks > 0 ? `${r.badChunks} bad chunks refused` : "",
  ].filter((x) => x !== "");
  return (
    `dsclient: ${(r.size / MiB).toFixed(1)} MiB to ${where} in ${secs.toFixed(1)} s ` +
    `(${(got / MiB / secs).toFixed(1)} MiB/s), ${share}% from peers` +
    extra.map((x) => `, ${x}`).join("")
  );
}

function liveSummaryLine(r: DownloadResult): string {
  const l = r.live!;
  const where = r.output === "-" ? "standard output" : r.output;
  const got = r.bytesFromPeers + r.bytesFromSeeders;
  const share = got > 0 ? Math.round((100 * r.bytesFromPeers) / got) : 0;
  const rejected = Object.values(l.rejected).reduce((a, b) => a + b, 0);
  const s = (ms: number | undefined) => (ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`);
  return (
    `dsclient: live, ${l.chunksWritten} chunks (${(l.bytesWritten / MiB).toFixed(1)} MiB) to ${where}, ` +
    `${l.skipped} skipped, tune-in ${s(l.tuneInMs)}, delay ${s(l.delayP50Ms)} median / ${s(l.delayP95Ms)} p95, ` +
    `${share}% from peers${rejected > 0 ? `, ${rejected} chunks rejected` : ""}`
  );
}

interface ProgressView {
  update(p: Progress): void;
  stop(): void;
}

/** Throughput since the first update, of the bytes fetched (not those a resumed file held). */
class Speed {
  private first: { ms: number; fetched: number } | undefined;

  mibPerSecond(p: Progress): string {
    const now = Date.now();
    const fetched = p.bytes - (p.resumedBytes ?? 0);
    this.first ??= { ms: now, fetched };
    const secs = (now - this.first.ms) / 1000;
    return secs > 0 ? ((fetched - this.first.fetched) / MiB / secs).toFixed(1) : "0.0";
  }
}

const peersShare = (p: Progress) => {
  const got = p.fromPeers + p.fromSeeders;
  return got > 0 ? Math.round((100 * p.fromPeers) / got) : 0;
};

/** The progress of the only download shown: a bar for a file, a line of delay and skips for a live stream. */
class ProgressLine implements ProgressView {
  private readonly file = new ProgressBar();
  private readonly live = new LiveLine();

  update(p: Progress): void {
    if (p.live) this.live.update(p);
    else this.file.update(p);
  }

  stop(): void {
    this.file.stop();
    this.live.stop();
  }
}

/** A live stream has no end to measure against: chunks and bytes written, skips, the delay behind the source. */
class LiveLine {
  private last = 0;
  private shown = false;
  private stopped = false;

  update(p: Progress): void {
    const now = Date.now();
    if (this.stopped || now - this.last < 100) return;
    this.last = now;
    process.stderr.write(`\r ${liveText(p)}\x1b[K`);
    this.shown = true;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.shown) process.stderr.write("\n");
  }
}

function liveText(p: Progress): string {
  const l = p.live!;
  const delay = l.delayMs === undefined ? "-" : `${(l.delayMs / 1000).toFixed(1)} s`;
  return (
    `live | delay ${delay} | ${l.chunksWritten} chunks, ${(l.bytesWritten / MiB).toFixed(1)} MiB | ` +
    `${l.skipped} skipped | ${peersShare(p)}% from peers`
  );
}

/** Percent, throughput, and the share that came from peers. */
class ProgressBar {
  private readonly bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: " {bar} {percentage}% | {done}/{total_mib} MiB | {speed} MiB/s | {peers}% from peers",
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  private readonly speed = new Speed();
  private started = false;
  private stopped = false;

  update(p: Progress): void {
    if (this.stopped) return;
    const payload = {
      done: (p.bytes / MiB).toFixed(1),
      total_mib: (p.size / MiB).toFixed(1),
      speed: this.speed.mibPerSecond(p),
      peers: peersShare(p),
    };
    if (!this.started) {
      this.started = true;
      this.bar.start(Math.max(p.size, 1), p.bytes, payload);
    } else this.bar.update(p.bytes, payload);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.started) this.bar.stop();
  }
}

/** One download's bar among several running at once; removed when it ends (its summary line stays). */
class ProgressRow implements ProgressView {
  private bar: cliProgress.SingleBar | undefined;
  private readonly speed = new Speed();
  private readonly name: string;
  private stopped = false;

  constructor(
    private readonly multi: cliProgress.MultiBar,
    url: string,
  ) {
    const last =
      url
        .replace(/[?#].*$/, "")
        .split("/")
        .pop() ?? url;
    this.name = last.length > 24 ? `${last.slice(0, 21)}...` : last.padEnd(24);
  }

  update(p: Progress): void {
    if (this.stopped) return;
    const payload = p.live
      ? { name: this.name, text: liveText(p) }
      : {
          name: this.name,
          text:
            `${(p.bytes / MiB).toFixed(1)}/${(p.size / MiB).toFixed(1)} MiB | ` +
            `${this.speed.mibPerSecond(p)} MiB/s | ${peersShare(p)}% from peers`,
        };
    const total = p.live ? 1 : Math.max(p.size, 1);
    const value = p.live ? 0 : p.bytes;
    if (!this.bar) {
      const format = p.live ? " {name} {text}" : " {name} {bar} {percentage}% | {text}";
      this.bar = this.multi.create(total, value, payload, { format });
    } else this.bar.update(value, payload);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.bar) this.multi.remove(this.bar);
  }
}
