import { Command, CommanderError } from "commander";
import { RateLimiter } from "@distribustream/data-plane";
import { parsePdtpUrl } from "@distribustream/pdtp";
import { createLogger, type Logger } from "@distribustream/runtime/log";
import { ignoreIpServernameWarning, readPemCertificates } from "@distribustream/runtime/tls";
import { envName, yamlKey } from "@distribustream/runtime/config";
import { batchExitCode, checkBatch, readUrlList, runJobs, type UrlSource } from "./batch.js";
import { clientConfigSchema, loadClientConfig, type ClientConfig } from "./config.js";
import { AGENT, download } from "./download.js";
import { DownloadError, ExitCode, exitCodeOf } from "./errors.js";
import { Reporter, type Outcome, type ReportMode } from "./report.js";
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
  2  bad usage: unknown option, invalid setting, bad URL, a --player that
     cannot start, -c with -o -, a FIFO or a live stream
  3  unknown stream name
  4  tracker unreachable after the connection attempts
  5  local I/O error, such as a full disk
  6  integrity failure: the manifest, a hash piece or a live stream's
     descriptor does not verify
  7  download stalled, or ended by the tracker
  8  TLS failure: pdtps:// to a plaintext tracker, pdtp:// to a TLS tracker,
     or a tracker certificate that is not trusted (see --tls-ca)
  130/143  interrupted by SIGINT/SIGTERM (the partial file is removed, or
     kept with -c)
With several URLs: 0 when all succeeded, else the code of the first URL in
the list that failed; a line names each URL that failed.

Partial downloads: a file is written as FILE.dspart (chunks at their places,
in any order) and renamed to FILE when complete. A download that stops early
removes FILE.dspart, unless -c was given: then it stays, with FILE.dsclient
beside it (the stream's version and the chunks written), and dsclient -c
later checks every kept chunk against the signed manifest and fetches only
the rest; a stream that changed since starts again from zero (a line says
so). Unlike wget's, a partial file here is not a prefix of the file but has
holes, useless without its record: that is why it is kept only when asked.

Several URLs (arguments, or -i FILE with one a line, blank lines and #
comments skipped; -i - reads them from standard input) are downloaded -j at a
time (default 1: in order, the first is ready first), each to its name's last
segment, in the directory -o names if given (-o must then be an existing
directory).

${SETTINGS}

A live stream is watched the same way: dsclient tunes in a prebuffer behind
the live edge (or at the oldest chunk the swarm holds with --from-start),
writes its chunks in order, skips a chunk that misses its deadline when later
ones are there, and ends with 0 after the broadcast's last chunk.

Examples:
  dsclient pdtp://tracker.example/videos/film.mp4
  dsclient -c pdtp://tracker.example/videos/film.mp4        (resume after ^C)
  dsclient pdtps://tracker.example/videos/film.mp4          (TLS, system roots)
  dsclient pdtps://10.0.0.5:6086/film.mp4 --tls-ca ca.pem   (TLS, private CA)
  dsclient pdtp://localhost:6086/film.mp4 -o - | mpv -
  dsclient pdtp://localhost:6086/live/cam -o - --prebuffer 1000 | mpv -
  mkfifo film.mp4; dsclient --url pdtp://localhost/film.mp4 -o film.mp4 & mpv film.mp4
  dsclient -j 2 -o downloads/ pdtp://localhost/a.mp4 pdtp://localhost/b.mp4
  dsclient -i urls.txt -c --json 2> progress.ndjson
  dsclient pdtp://localhost:6086/film.mp4 --player mpv
  dsclient pdtp://localhost:6086/live/cam --player "ffplay -autoexit -"
  dsclient ls pdtp://localhost:6086                  (the streams; dsclient ls --help)
  dsclient info pdtp://localhost:6086/film.mp4       (one stream, its key to pin)
`;

/** dsclient's definitions; `ls` and `info` are dispatched by runDsclient before it parses, listed here for --help and the README. */
function program(): Command {
  return new Command()
    .name("dsclient")
    .description("Download DistribuStream streams in order, verifying every chunk, and share them with other viewers.")
    .usage("[options] <url...>")
    .argument("[urls...]", "pdtp://HOST[:PORT]/NAME, or pdtps://… for a tracker that speaks TLS; several are allowed")
    .option("--url <url>", "the stream URL (alternative to the argument)")
    .option(
      "-o, --output <file>",
      'output file, "-" for standard output, or a FIFO (default: the last segment of NAME); with several URLs, a directory',
    )
    .option("-c, --continue", "keep a partial download when stopped early, and resume one kept earlier (see below)")
    .option("-i, --input-file <file>", 'download the URLs listed in FILE, one a line ("-": standard input)')
    .option("-j, --jobs <n>", "with several URLs, download this many at once (default 1)")
    .option("--listen-port <n>", "port to serve other peers on (default: any free port)")
    .option("--listen-host <addr>", "address to serve other peers on (default 0.0.0.0)")
    .option("--linger <seconds>", "keep serving other peers this long after the download (default 0)")
    .option("--connect-attempts <n>", "tracker connection attempts before giving up (default 5)")
    .option("--stall <seconds>", "give up when nothing arrives for this long (default 60)")
    .option(
      "--max-download-rate <rate>",
      "download at most this many bytes/s, e.g. 8M or 500K, over all downloads (default: no limit)",
    )
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
      'play the stream as it arrives, instead of -o (one URL): mpv, vlc, or a shell command that reads it on its standard input (e.g. "ffplay -")',
    )
    .option(
      "-q, --quiet",
      "no progress bar or summary line (without a terminal on stderr there is no bar, and one summary line a download)",
    )
    .option(
      "--json",
      "progress (at most twice a second) and a summary of each download as JSON lines on stderr, for scripts",
    )
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
 * SIGINT/SIGTERM, stdin (for -i -), stdout and stderr.
 */
export async function runDsclient(argv: readonly string[]): Promise<number> {
  // `dsclient --help | head -1`: a reader gone early is no crash (a download to stdout sees it in its writes)
  process.stdout.on("error", () => {});
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
  const positional = cmd.args;
  const flagUrl = o.url as string | undefined;
  if (flagUrl !== undefined && positional.length > 1) {
    return usage("--url takes one URL: give several as arguments instead");
  }
  if (flagUrl !== undefined && positional.length === 1 && positional[0] !== flagUrl) {
    return usage(`two different URLs given ("${positional[0]}" and --url "${flagUrl}")`);
  }
  const sources: UrlSource[] =
    positional.length > 0
      ? positional.map((url, i) => ({ url, where: `argument ${i + 1}` }))
      : flagUrl !== undefined
        ? [{ url: flagUrl, where: "--url" }]
        : [];

  let cfg: Readonly<ClientConfig>;
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
        continue: o.continue,
        json: o.json,
        jobs: o.jobs,
      },
      env: process.env,
      confFile: o.conf as string | undefined,
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  const output = o.output as string | undefined;
  try {
    if (o.inputFile !== undefined) sources.push(...(await readUrlList(o.inputFile as string)));
    if (sources.length === 0) return usage("missing URL (usage: dsclient [options] <url...>; see --help)");
    await checkBatch(sources, output, process.cwd());
  } catch (err) {
    if (err instanceof DownloadError) return usage(err.message);
    throw err;
  }
  let tlsCa: Buffer | undefined;
  if (cfg.tlsCa !== undefined) {
    try {
      tlsCa = readPemCertificates(cfg.tlsCa, "tls_ca");
    } catch (err) {
      return usage((err as Error).message);
    }
    const plain = sources.find((s) => !parsePdtpUrl(s.url).tls);
    if (plain) return usage(`tls_ca is for pdtps:// URLs (TLS), but "${plain.url}" is plaintext`);
  }
  const many = sources.length > 1;
  const jobs = many ? Math.min(cfg.jobs, sources.length) : 1;
  if (jobs > 1 && cfg.listenPort !== 0) {
    return usage(
      `listen_port ${cfg.listenPort} with ${jobs} downloads at once: each serves peers on a port of its own (leave listen_port unset, or use -j 1)`,
    );
  }

  let player: PlayerSink | undefined;
  if (o.player !== undefined) {
    if (output !== undefined) return usage("--player plays the stream instead of writing it: leave out -o");
    if (sources.length > 1) return usage("--player plays one stream: give one URL");
    try {
      player = new PlayerSink(playerCommand(o.player as string));
    } catch (err) {
      return usage((err as Error).message);
    }
  }

  const log = createLogger("dsclient", { level: cfg.logLevel, format: cfg.logFormat, destination: 2 });
  process.stderr.on("error", () => {}); // a closed stderr must not kill the download
  const mode: ReportMode = cfg.json ? "json" : cfg.quiet ? "quiet" : process.stderr.isTTY ? "tty" : "plain";
  const reporter = new Reporter({ mode, progressEvents: !cfg.quiet, many, concurrent: jobs > 1 });

  const ac = new AbortController();
  let signalExit: number | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalExit !== undefined) process.exit(signalExit);
    signalExit = sig === "SIGINT" ? 130 : 143;
    ac.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  // One limit for all the downloads of the run, as --help says.
  const shared: Shared = {
    cfg,
    output,
    tlsCa,
    log,
    reporter,
    many,
    signal: ac.signal,
    signalExit: () => signalExit,
    player,
    downloadLimiter: cfg.maxDownloadRate ? new RateLimiter(cfg.maxDownloadRate) : undefined,
    uploadLimiter: cfg.maxUploadRate ? new RateLimiter(cfg.maxUploadRate) : undefined,
  };
  try {
    const codes = await runJobs(sources, jobs, (s) => downloadOne(s.url, shared), ac.signal);
    reporter.stop();
    const exitCode = signalExit ?? batchExitCode(codes);
    const outcomes: Outcome[] = sources.flatMap((s, i) =>
      codes[i] === undefined ? [] : [{ url: s.url, exitCode: codes[i] }],
    );
    reporter.total(outcomes, exitCode);
    return exitCode;
  } finally {
    reporter.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** What the downloads of one run share. */
interface Shared {
  cfg: Readonly<ClientConfig>;
  output: string | undefined;
  tlsCa: Buffer | undefined;
  log: Logger;
  reporter: Reporter;
  many: boolean;
  signal: AbortSignal;
  signalExit: () => number | undefined;
  /** With --player (one URL): the stream goes to its standard input instead of an output. */
  player: PlayerSink | undefined;
  downloadLimiter: RateLimiter | undefined;
  uploadLimiter: RateLimiter | undefined;
}

/** One download of the run; resolves with its exit code. */
async function downloadOne(url: string, s: Shared): Promise<number> {
  const { cfg } = s;
  const report = s.reporter.download(url);
  const log = s.many ? s.log.child({ url }) : s.log;
  try {
    const result = await download({
      url,
      output: s.output,
      sink: s.player && { writable: s.player, name: `the player ${s.player.command.name}` },
      listenHost: cfg.listenHost,
      listenPort: cfg.listenPort,
      lingerSeconds: cfg.linger,
      connectAttempts: cfg.connectAttempts,
      stallSeconds: cfg.stall,
      downloadLimiter: s.downloadLimiter,
      uploadLimiter: s.uploadLimiter,
      networkKey: cfg.networkKey,
      tlsCa: s.tlsCa,
      prebufferMs: cfg.prebuffer,
      fromStart: cfg.fromStart,
      resume: cfg.continue,
      log,
      signal: s.signal,
      onProgress: (p) => report.progress(p),
      onResume: (e) => report.resume(e),
      onComplete: (r) => {
        s.player?.release(); // the whole stream is in its pipe: the player sees its end while this peer lingers
        report.completed(r);
      },
    });
    log.info({ ...result }, "done");
    if (s.player) {
      const status = await s.player.finish();
      if (status === 0) log.info({ status }, "player exited");
      else log.warn({ status }, "player exited with an error status");
    }
    return s.signalExit() ?? 0;
  } catch (err) {
    s.player?.release();
    const code = exitCodeOf(err);
    if (code === ExitCode.OK && err instanceof DownloadError) {
      log.info({ reason: err.message }, "stopped");
      report.outputClosed(err);
      return 0;
    }
    if (!(err instanceof DownloadError)) log.error({ err }, "unexpected error");
    const signalled = s.signalExit();
    report.failed(err, signalled ?? code, signalled !== undefined);
    return signalled ?? code;
  }
}

function usage(message: string): number {
  process.stderr.write(`dsclient: ${message.split("\n")[0]}\n`);
  return ExitCode.USAGE;
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

export { program as dsclientProgram };
