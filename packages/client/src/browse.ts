import { setTimeout as sleep } from "node:timers/promises";
import { Command, CommanderError } from "commander";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import {
  joinHostPort,
  parsePdtpUrl,
  StreamKind,
  TrackerClient,
  type PdtpUrl,
  type StreamDescriptor,
} from "@distribustream/pdtp";
import { channelCredentials, readPemCertificates } from "@distribustream/runtime/tls";
import { backoffDelay, speaksTlsAt, tlsProblem } from "@distribustream/tracker-link";
import { loadClientConfig } from "./config.js";
import { connectionReason, DownloadError, ExitCode, exitCodeOf, tlsError } from "./errors.js";

/**
 * `dsclient ls` and `dsclient info`: what a tracker offers, read with its
 * ListStreams and DescribeStream calls (no session, nothing downloaded).
 * Same exit codes as a download: 3 unknown name, 4 tracker unreachable,
 * 8 TLS, 6 a ?key= pin the tracker's key does not match.
 */

/** The commands browse handles, as the first argument of dsclient. */
export const BROWSE_COMMANDS = ["ls", "info"] as const;
export type BrowseCommand = (typeof BROWSE_COMMANDS)[number];

export function isBrowseCommand(arg: string | undefined): arg is BrowseCommand {
  return (BROWSE_COMMANDS as readonly (string | undefined)[]).includes(arg);
}

const CALL_TIMEOUT_MS = 10_000;
const BACKOFF = { baseMs: 500, maxMs: 4000, jitter: "none" } as const;

function common(cmd: Command): Command {
  return cmd
    .option("--json", "print JSON instead of a table (ls: one array; info: one object)")
    .option("--connect-attempts <n>", "tracker connection attempts before giving up (default 5)")
    .option("--tls-ca <file.pem>", "CA certificate(s) to trust for a pdtps:// tracker (default: the system's roots)")
    .option("--conf <file.yml>", "YAML settings file (connect_attempts, tls_ca)")
    .exitOverride()
    .configureOutput({ outputError: () => {} });
}

/** `dsclient ls`: the definition (for --help and the README's reference). */
export function lsCommand(): Command {
  return common(
    new Command("ls")
      .description("list the streams a tracker offers: name, kind, size or live window, seeders, viewers")
      .usage("[options] pdtp://HOST[:PORT][/PREFIX]")
      .argument("<url>", "the tracker, pdtp://HOST[:PORT] or pdtps://…; a path lists only the names under it"),
  ).addHelpText(
    "after",
    `
Exit codes: 0 listed (also when there is no stream), 2 bad usage, 4 tracker
unreachable, 8 TLS failure, 1 anything else.

Examples:
  dsclient ls pdtp://tracker.example
  dsclient ls pdtp://tracker.example/videos/ --json
`,
  );
}

/** `dsclient info`: the definition (for --help and the README's reference). */
export function infoCommand(): Command {
  return common(
    new Command("info")
      .description(
        "describe one stream: version, chunk size and count, manifest fingerprint, the network key to pin (?key=), a live stream's edge and window",
      )
      .usage("[options] pdtp://HOST[:PORT]/NAME")
      .argument("<url>", "the stream, pdtp://HOST[:PORT]/NAME or pdtps://…; with ?key= the tracker's key must match"),
  ).addHelpText(
    "after",
    `
Exit codes: 0 described, 2 bad usage, 3 unknown stream name, 4 tracker
unreachable, 6 the tracker signs with another key than ?key= pins,
8 TLS failure, 1 anything else.

Examples:
  dsclient info pdtp://tracker.example/videos/film.mp4
  dsclient info pdtps://tracker.example/live/cam --json
`,
  );
}

/**
 * Runs `dsclient ls ARGS` or `dsclient info ARGS` (`argv` starts with the
 * command's name); resolves with the exit code. Output on stdout, errors on
 * stderr as `dsclient: …`.
 */
export async function runBrowse(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = name === "ls" ? lsCommand() : infoCommand();
  new Command("dsclient").addCommand(cmd); // its help says "dsclient ls"
  try {
    cmd.parse(rest, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      return fail(err.message.replace(/^error: /, ""), ExitCode.USAGE);
    }
    throw err;
  }
  const o = cmd.opts<{ json?: boolean; connectAttempts?: string; tlsCa?: string; conf?: string }>();
  try {
    const cfg = loadClientConfig({
      flags: { connectAttempts: o.connectAttempts, tlsCa: o.tlsCa },
      env: process.env,
      confFile: o.conf,
    });
    const input = cmd.args[0]!;
    const url = name === "ls" ? parseTrackerUrl(input) : parsePdtpUrl(input);
    const tlsCa = cfg.tlsCa === undefined ? undefined : readPemCertificates(cfg.tlsCa, "tls_ca");
    if (tlsCa && !url.tls)
      return fail(`tls_ca is for pdtps:// URLs (TLS), but "${input}" is plaintext`, ExitCode.USAGE);
    const tracker = new TrackerQuery(url, cfg.connectAttempts, tlsCa);
    if (name === "ls") {
      const all = await tracker.listStreams();
      const prefix = url.name;
      const streams = all
        .filter(
          (s) => prefix === "" || s.name === prefix || s.name.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`),
        )
        .sort((a, b) => a.name.localeCompare(b.name));
      process.stdout.write(o.json ? `${JSON.stringify(streams.map((s) => streamJson(s, url)))}\n` : listTable(streams));
      return 0;
    }
    const d = await tracker.describeStream(url.name);
    if (url.networkKey && d.networkKeyId && d.networkKeyId !== url.networkKey) {
      throw new DownloadError(
        `tracker ${url.target} signs "${d.name}" with network key ${d.networkKeyId}, not the pinned ${url.networkKey}`,
        ExitCode.INTEGRITY,
      );
    }
    process.stdout.write(o.json ? `${JSON.stringify(streamJson(d, url))}\n` : infoText(d, url));
    return 0;
  } catch (err) {
    const code = exitCodeOf(err);
    return fail(
      code === ExitCode.UNEXPECTED ? `unexpected error: ${(err as Error).message}` : (err as Error).message,
      code,
    );
  }
}

function fail(message: string, code: number): number {
  process.stderr.write(`dsclient: ${message.split("\n")[0]}\n`);
  return code;
}

/** pdtp://HOST[:PORT][/PREFIX][?key=…]: a tracker, and the name prefix to list ("" for all). */
function parseTrackerUrl(input: string): PdtpUrl {
  const m = /^([a-z]+:\/\/[^/?#]*)\/?([^?#]*)(.*)$/i.exec(input);
  if (!m) return parsePdtpUrl(input); // its error says what is wrong
  const [, authority, path, tail] = m as unknown as [string, string, string, string];
  // checked as a stream URL (scheme, host, port, ?key=) with a stand-in name
  const checked = `${authority}/${path.replace(/\/+$/, "") || "_"}${tail}`;
  try {
    const url = parsePdtpUrl(checked);
    return { ...url, name: path === "" ? "" : url.name };
  } catch (err) {
    (err as Error).message = (err as Error).message.replaceAll(checked, input);
    throw err;
  }
}

/** Unary calls to a tracker, each retried with backoff while the tracker is unreachable. */
class TrackerQuery {
  private readonly client: TrackerClient;

  constructor(
    private readonly url: PdtpUrl,
    private readonly attempts: number,
    private readonly tlsCa: Buffer | undefined,
  ) {
    this.client = new TrackerClient(url.target, channelCredentials(url.tls ? { ca: tlsCa } : undefined));
  }

  listStreams(): Promise<StreamDescriptor[]> {
    return this.call((deadline, cb) =>
      this.client.listStreams({}, new Metadata(), { deadline }, (e, r) => cb(e, r?.streams)),
    );
  }

  describeStream(name: string): Promise<StreamDescriptor> {
    return this.call((deadline, cb) =>
      this.client.describeStream({ name, streamId: "" }, new Metadata(), { deadline }, cb),
    );
  }

  private async call<T>(
    once: (deadline: number, cb: (err: ServiceError | null, value: T | undefined) => void) => void,
  ): Promise<T> {
    try {
      for (let attempt = 1; ; attempt++) {
        const res = await new Promise<{ err: ServiceError | null; value: T | undefined }>((resolve) =>
          once(Date.now() + CALL_TIMEOUT_MS, (err, value) => resolve({ err, value })),
        );
        if (!res.err) return res.value!;
        const err = await this.classify(res.err);
        if (err) throw err;
        if (attempt >= this.attempts) {
          throw new DownloadError(
            `tracker ${this.url.target} unreachable after ${attempt} attempt${attempt === 1 ? "" : "s"} (${connectionReason(res.err.details)})`,
            ExitCode.UNREACHABLE,
          );
        }
        await sleep(backoffDelay(BACKOFF, attempt));
      }
    } finally {
      this.client.close();
    }
  }

  /** The error a failed call ends with, or undefined when it is worth another attempt (tracker unreachable). */
  private async classify(err: ServiceError): Promise<DownloadError | undefined> {
    const target = this.url.target;
    switch (err.code) {
      case status.UNAVAILABLE:
      case status.DEADLINE_EXCEEDED: {
        const speaksTls = !this.url.tls && !/\bE[A-Z]{3,}/.test(err.details) && (await speaksTlsAt(target));
        const tls = tlsProblem(err.details, { tls: this.url.tls, speaksTls });
        return tls && tlsError(tls, target);
      }
      case status.NOT_FOUND:
        return new DownloadError(`no stream named "${this.url.name}" on ${target}`, ExitCode.NOT_FOUND);
      case status.INVALID_ARGUMENT:
        return new DownloadError(`tracker ${target} rejected the request: ${err.details}`, ExitCode.UNEXPECTED);
      default:
        return new DownloadError(
          `tracker ${target} answered ${status[err.code] ?? err.code}: ${err.details || "no detail"}`,
          ExitCode.UNEXPECTED,
        );
    }
  }
}

/** A stream as `--json` prints it: the descriptor's fields with kind as a word, and the URL that pins its key. */
function streamJson(d: StreamDescriptor, url: PdtpUrl) {
  const live = d.kind === StreamKind.STREAM_KIND_LIVE;
  return {
    name: d.name,
    kind: live ? "live" : "file",
    streamId: d.streamId,
    version: d.version,
    ...(live ? {} : { size: d.size, chunkCount: d.chunkCount }),
    chunkSize: d.chunkSize,
    seeders: d.seeders,
    viewers: d.peers,
    manifestSha256: d.manifestSha256 || null,
    networkKeyId: d.networkKeyId || null,
    url: streamUrl(d, url),
    ...(live && d.live
      ? {
          live: {
            started: d.live.started,
            ended: d.live.ended,
            ...(d.live.started ? { low: d.live.low, edge: d.live.edge, edgeTimestampMs: d.live.edgeTimestampMs } : {}),
            windowChunks: d.live.windowChunks,
            chunkMs: d.live.chunkMs,
            bitrate: d.live.bitrate,
          },
        }
      : {}),
  };
}

/** The stream's URL on this tracker, pinned to the key that signs it (?key=) when the tracker names it. */
function streamUrl(d: StreamDescriptor, url: PdtpUrl): string {
  const path = d.name.split("/").map(encodeURIComponent).join("/");
  const key = d.networkKeyId ? `?key=${d.networkKeyId}` : "";
  return `${url.tls ? "pdtps" : "pdtp"}://${joinHostPort(url.host, url.port)}/${path}${key}`;
}

function listTable(streams: StreamDescriptor[]): string {
  if (streams.length === 0) return "no streams\n";
  const rows = [
    ["NAME", "KIND", "SIZE / WINDOW", "SEEDERS", "VIEWERS"],
    ...streams.map((d) => [
      d.name,
      d.kind === StreamKind.STREAM_KIND_LIVE ? "live" : "file",
      d.kind === StreamKind.STREAM_KIND_LIVE ? liveWindow(d) : bytes(d.size),
      String(d.seeders),
      String(d.peers),
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const right = new Set([3, 4]);
  return rows
    .map((r) =>
      r
        .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** A live stream's window in a few words: "60 s window, edge 1234", "not started", "ended at 1234". */
function liveWindow(d: StreamDescriptor): string {
  const w = d.live;
  if (!w || !w.started) return "not started";
  const held = w.edge - w.low + 1;
  const span = w.chunkMs > 0 ? `${seconds(held * w.chunkMs)} window` : `${held} chunks`;
  return w.ended ? `ended, ${span}, last ${w.edge}` : `${span}, edge ${w.edge}`;
}

function infoText(d: StreamDescriptor, url: PdtpUrl): string {
  const live = d.kind === StreamKind.STREAM_KIND_LIVE;
  const lines: [string, string][] = [
    ["name", d.name],
    ["kind", live ? "live" : "file"],
    ["stream id", d.streamId],
    ["version", String(d.version)],
  ];
  if (live) {
    lines.push(["chunk size", `up to ${bytes(d.chunkSize)}`]);
    const w = d.live;
    if (!w || !w.started) lines.push(["window", "not started: no chunk attested yet"]);
    else {
      const held = w.edge - w.low + 1;
      lines.push([
        "edge",
        `chunk ${w.edge}${w.ended ? " (the broadcast ended: its last chunk)" : ""}, at ${new Date(w.edgeTimestampMs).toISOString()}`,
      ]);
      lines.push([
        "window",
        `chunks ${w.low}-${w.edge} (${held} chunks${w.chunkMs > 0 ? `, about ${seconds(held * w.chunkMs)}` : ""}), keeps ${w.windowChunks}`,
      ]);
    }
    if (w && w.chunkMs > 0) lines.push(["chunk time", `${w.chunkMs} ms on average`]);
    if (w && w.bitrate > 0) lines.push(["bitrate", `${(w.bitrate / 1e6).toFixed(2)} Mbit/s`]);
  } else {
    lines.push(["size", `${bytes(d.size)} (${d.size} bytes)`]);
    lines.push(["chunks", `${d.chunkCount} of ${bytes(d.chunkSize)}`]);
  }
  lines.push([
    live ? "descriptor" : "manifest",
    d.manifestSha256 ? `sha256 ${d.manifestSha256}` : "(not told by this tracker)",
  ]);
  lines.push(["network key", d.networkKeyId || "(not told by this tracker)"]);
  lines.push(["seeders", String(d.seeders)]);
  lines.push(["viewers", String(d.peers)]);
  lines.push(["url", streamUrl(d, url)]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}\n`).join("");
}

function bytes(n: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

function seconds(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}
