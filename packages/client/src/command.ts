import { Command, CommanderError } from "commander";
import cliProgress from "cli-progress";
import { parsePdtpUrl } from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime/log";
import { ignoreIpServernameWarning, readPemCertificates } from "@distribustream/runtime/tls";
import { envName, yamlKey } from "@distribustream/runtime/config";
import { clientConfigSchema, loadClientConfig } from "./config.js";
import { AGENT, download, type DownloadResult, type Progress as DownloadProgress } from "./download.js";
import { DownloadError, ExitCode, exitCodeOf } from "./errors.js";
import { infoCommand, isBrowseCommand, lsCommand, runBrowse } from "./browse.js";
import { playerCommand, PlayerSink } from "./player.js";

/** The settings' environment variables and YAML keys, from the schema: the list cannot drift from it. */
const SETTINGS = wrap(
  `Settings also come from DS_* environment variables (${Object.keys(clientConfigSchema.shape).map(envName).join(", ")}; ` +
    `DS_CONF names the YAML file) and from the YAML file given with --conf (keys ` +
    `${Object.keys(clientConfigSchema.shape).map(yamlKey).join(", ")}). Flags win over the environment, which wins over the file.`,
  78,
);

function wrap(text: string, width: number): string {
  const lines = [""];
  for (const word of text.split(" ")) {
    const last = lines.length - 1;
    if (lines[last] !== "" && lines[last]!.length + 1 + word.length > width) lines.push(word);
    else lines[last] = lines[last] === "" ? word : `${lines[last]} ${word}`;
  }
  return lines.join("\n");
}

const EXIT_CODES = `
Exit codes:
  0  success (also when the reader of -o - closes the pipe early, or the
     --player quits early)
  1  unexpected error, or the tracker rejected the request
  2  bad usage: unknown option, invalid setting, bad URL, or a --player
     that cannot start
  3  unknown stream name
  4  tracker unreachable after the connection attempts
  5  local I/O error, such as a full disk
  6  integrity failure: the manifest, a hash piece or a live stream's
     descriptor does not verify
  7  download stalled, or ended by the tracker
  8  TLS failure: pdtps:// to a plaintext tracker, pdtp:// to a TLS tracker,
     or a tracker certificate that is not trusted (see --tls-ca)
  130/143  interrupted by SIGINT/SIGTERM (the partial file is removed)

${SETTINGS}

A live stream is watched the same way: dsclient tunes in a prebuffer behind
the live edge (or at the oldest chunk the swarm holds with --from-start),
writes its chunks in order, skips a chunk that misses its deadline when later
ones are there, and ends with 0 after the broadcast's last chunk.

Examples:
  dsclient pdtp://tracker.example/videos/film.mp4
  dsclient pdtps://tracker.example/videos/film.mp4          (TLS, system roots)
  dsclient pdtps://10.0.0.5:6086/film.mp4 --tls-ca ca.pem   (TLS, private CA)
  dsclient pdtp://localhost:6086/film.mp4 -o - | mpv -
  dsclient pdtp://localhost:6086/live/cam -o - --prebuffer 1000 | mpv -
  mkfifo film.mp4; dsclient --url pdtp://localhost/film.mp4 -o film.mp4 & mpv film.mp4
  dsclient pdtp://localhost:6086/film.mp4 --player mpv
  dsclient pdtp://localhost:6086/live/cam --player "ffplay -autoexit -"
  dsclient ls pdtp://localhost:6086                  (the streams; dsclient ls --help)
  dsclient info pdtp://localhost:6086/film.mp4       (one stream, its key to pin)
`;

/** dsclient's definitions; `ls` and `info` are dispatched by runDsclient before it parses, listed here for --help and the README. */
function program(): Command {
  return new Command()
    .name("dsclient")
    .description("Download a DistribuStream stream in order, verifying every chunk, and share it with other viewers.")
    .usage("[options] <url>")
    .argument("[url]", "pdtp://HOST[:PORT]/NAME, or pdtps://… for a tracker that speaks TLS")
    .option("--url <url>", "the stream URL (alternative to the argument)")
    .option(
      "-o, --output <file>",
      'output file, "-" for standard output, or a FIFO (default: the last segment of NAME)',
    )
    .option("--listen-port <n>", "port to serve other peers on (default: any free port)")
    .option("--listen-host <addr>", "address to serve other peers on (default 0.0.0.0)")
    .option("--linger <seconds>", "keep serving other peers this long after the download (default 0)")
    .option("--connect-attempts <n>", "tracker connection attempts before giving up (default 5)")
    .option("--stall <seconds>", "give up when nothing arrives for this long (default 60)")
    .option("--max-download-rate <rate>", "download at most this many bytes/s, e.g. 8M or 500K (default: no limit)")
    .option("--max-upload-rate <rate>", "upload to other peers at most this many bytes/s (default: no limit)")
    .option(
      "--network-key <key>",
      "pin the network key: its fingerprint (distribustream network-key prints it) or its PEM file; same as ?key= in the URL",
    )
    .option("--tls-ca <file.pem>", "CA certificate(s) to trust for a pdtps:// tracker (default: the system's roots)")
    .option("--prebuffer <ms>", "live streams: start this much media behind the live edge (default 500)")
    .option("--from-start", "live streams: start at the oldest chunk the swarm still holds")
    .option(
      "--player <player>",
      'play the stream as it arrives, instead of -o: mpv, vlc, or a shell command that reads it on its standard input (e.g. "ffplay -")',
    )
    .option("-q, --quiet", "no progress bar or summary")
    .option("--conf <file.yml>", "YAML settings file")
    .option(
      "--log-level <level>",
      "logs on stderr at this level: fatal, error, warn, info, debug, trace, silent (default warn)",
    )
    .option(
      "--log-format <format>",
      "json (one object a line) or pretty (short human lines); default: pretty when stderr is a terminal, else json",
    )
    .version(AGENT.split("/")[1]!, "-V, --version")
    .addHelpText("after", EXIT_CODES)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addCommand(lsCommand())
    .addCommand(infoCommand())
    .action(() => {});
}

/**
 * The dsclient command: the `dsclient` bin and `distribustream dsclient` both
 * run it (one implementation). Runs dsclient with `argv` (without node and
 * script); resolves with the exit code. It owns the process while it runs:
 * SIGINT/SIGTERM, stdout and stderr.
 */
export async function runDsclient(argv: readonly string[]): Promise<number> {
  ignoreIpServernameWarning();
  if (isBrowseCommand(argv[0])) return runBrowse(argv);
  const cmd = program();
  try {
    cmd.parse(argv, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      return usage(err.message.replace(/^error: /, ""));
    }
    throw err;
  }
  const o = cmd.opts<Record<string, string | boolean | undefined>>();
  const positional = cmd.args[0];
  const flagUrl = o.url as string | undefined;
  if (positional !== undefined && flagUrl !== undefined && positional !== flagUrl) {
    return usage(`two different URLs given ("${positional}" and --url "${flagUrl}")`);
  }
  const url = positional ?? flagUrl;
  if (url === undefined) return usage("missing URL (usage: dsclient [options] <url>; see --help)");

  let cfg;
  try {
    cfg = loadClientConfig({
      flags: {
        listenPort: o.listenPort,
        listenHost: o.listenHost,
        linger: o.linger,
        quiet: o.quiet,
        logLevel: o.logLevel,
        logFormat: o.logFormat,
        connectAttempts: o.connectAttempts,
        stall: o.stall,
        maxDownloadRate: o.maxDownloadRate,
        maxUploadRate: o.maxUploadRate,
        networkKey: o.networkKey,
        tlsCa: o.tlsCa,
        prebuffer: o.prebuffer,
        fromStart: o.fromStart,
      },
      env: process.env,
      confFile: o.conf as string | undefined,
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  let tlsCa: Buffer | undefined;
  if (cfg.tlsCa !== undefined) {
    try {
      tlsCa = readPemCertificates(cfg.tlsCa, "tls_ca");
      if (!parsePdtpUrl(url).tls) return usage(`tls_ca is for pdtps:// URLs (TLS), but "${url}" is plaintext`);
    } catch (err) {
      return usage((err as Error).message);
    }
  }

  let player: PlayerSink | undefined;
  if (o.player !== undefined) {
    if (o.output !== undefined) return usage("--player plays the stream instead of writing it: leave out -o");
    try {
      player = new PlayerSink(playerCommand(o.player as string));
    } catch (err) {
      return usage((err as Error).message);
    }
  }

  const log = createLogger("dsclient", { level: cfg.logLevel, format: cfg.logFormat, destination: 2 });
  process.stderr.on("error", () => {}); // a closed stderr must not kill the download
  const interactive = !cfg.quiet && process.stderr.isTTY === true;
  const bar = interactive ? new Progress() : undefined;

  const ac = new AbortController();
  let signalExit: number | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalExit !== undefined) process.exit(signalExit);
    signalExit = sig === "SIGINT" ? 130 : 143;
    ac.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const result = await download({
      url,
      output: o.output as string | undefined,
      sink: player && { writable: player, name: `the player ${player.command.name}` },
      listenHost: cfg.listenHost,
      listenPort: cfg.listenPort,
      lingerSeconds: cfg.linger,
      connectAttempts: cfg.connectAttempts,
      stallSeconds: cfg.stall,
      maxDownloadRate: cfg.maxDownloadRate,
      maxUploadRate: cfg.maxUploadRate,
      networkKey: cfg.networkKey,
      tlsCa,
      prebufferMs: cfg.prebuffer,
      fromStart: cfg.fromStart,
      log,
      signal: ac.signal,
      onProgress: bar ? (p) => bar.update(p) : undefined,
      onComplete: (r) => {
        player?.release(); // the whole stream is in its pipe: the player sees its end while this peer lingers
        bar?.stop();
        if (interactive) process.stderr.write(summary(r) + "\n");
      },
    });
    log.info({ ...result }, "done");
    if (player) {
      const status = await player.finish();
      if (status === 0) log.info({ status }, "player exited");
      else log.warn({ status }, "player exited with an error status");
    }
    return signalExit ?? 0;
  } catch (err) {
    bar?.stop();
    player?.release();
    if (signalExit !== undefined) return signalExit;
    const code = exitCodeOf(err);
    if (code === ExitCode.OK) {
      log.info({ reason: (err as Error).message }, "stopped");
      return 0;
    }
    const msg = err instanceof DownloadError ? err.message : `unexpected error: ${(err as Error)?.message ?? err}`;
    if (!(err instanceof DownloadError)) log.error({ err }, "unexpected error");
    process.stderr.write(`dsclient: ${msg}\n`);
    return code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function usage(message: string): number {
  process.stderr.write(`dsclient: ${message.split("\n")[0]}\n`);
  return ExitCode.USAGE;
}

const MiB = 1024 * 1024;

function summary(r: DownloadResult): string {
  if (r.live) return liveSummary(r);
  const secs = Math.max(r.durationMs, 1) / 1000;
  const got = r.bytesFromPeers + r.bytesFromSeeders;
  const share = got > 0 ? Math.round((100 * r.bytesFromPeers) / got) : 0;
  const where = r.output === "-" ? "standard output" : r.output;
  return (
    `dsclient: ${(r.size / MiB).toFixed(1)} MiB to ${where} in ${secs.toFixed(1)} s ` +
    `(${(r.size / MiB / secs).toFixed(1)} MiB/s), ${share}% from peers`
  );
}

function liveSummary(r: DownloadResult): string {
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

/** Progress on a TTY stderr: a bar for a file, a line of delay and skips for a live stream. */
class Progress {
  private readonly file = new ProgressBar();
  private readonly live = new LiveLine();

  update(p: DownloadProgress): void {
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

  update(p: DownloadProgress): void {
    const now = Date.now();
    if (this.stopped || now - this.last < 100) return;
    this.last = now;
    const l = p.live!;
    const got = p.fromPeers + p.fromSeeders;
    const delay = l.delayMs === undefined ? "-" : `${(l.delayMs / 1000).toFixed(1)} s`;
    const line =
      ` live | delay ${delay} | ${l.chunksWritten} chunks, ${(l.bytesWritten / MiB).toFixed(1)} MiB | ` +
      `${l.skipped} skipped | ${got > 0 ? Math.round((100 * p.fromPeers) / got) : 0}% from peers`;
    process.stderr.write(`\r${line}\x1b[K`);
    this.shown = true;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.shown) process.stderr.write("\n");
  }
}

/** Progress on a TTY stderr: percent, throughput, and the share that came from peers. */
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
  private started: number | undefined;
  private stopped = false;

  update(p: DownloadProgress): void {
    if (this.stopped) return;
    const now = Date.now();
    const got = p.fromPeers + p.fromSeeders;
    const payload = {
      done: (p.bytes / MiB).toFixed(1),
      total_mib: (p.size / MiB).toFixed(1),
      speed: this.started && now > this.started ? (p.bytes / MiB / ((now - this.started) / 1000)).toFixed(1) : "0.0",
      peers: got > 0 ? Math.round((100 * p.fromPeers) / got) : 0,
    };
    if (this.started === undefined) {
      this.started = now;
      this.bar.start(Math.max(p.size, 1), p.bytes, payload);
    } else this.bar.update(p.bytes, payload);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.started !== undefined) this.bar.stop();
  }
}

/** Ends the process with the exit code `run` resolves, or 1 with the error when it rejects. */
export function exitWith(run: Promise<number>): void {
  run.then(
    (code) => exit(code),
    (err: unknown) => {
      process.stderr.write(`dsclient: unexpected error: ${(err as Error)?.message ?? err}\n`);
      exit(ExitCode.UNEXPECTED);
    },
  );
}

/** Lets the process end by itself; forces the exit if a stray handle would keep it alive. */
function exit(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

/** The dsclient command's definitions (a new instance each call), for the README's reference (scripts/readme.mjs). */
export { program as dsclientProgram };
