import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { Writable } from "node:stream";
import { DownloadError, ExitCode } from "./errors.js";

/**
 * `dsclient --player`: a media player that reads the stream on its standard
 * input (a pipe), started when the first bytes are ready to play (a file's
 * first chunks in order, a live stream's prebuffer), as webtorrent-cli does.
 *
 * - "mpv" runs `mpv -`, "vlc" runs `vlc --play-and-exit -`;
 * - anything else is a shell command, run with /bin/sh -c, that reads the
 *   stream from its standard input, e.g. --player "ffplay -autoexit -".
 *
 * The player closing its input (it quit) ends the download successfully,
 * as a closed `-o -` pipe does; a player that cannot start is exit 2.
 */

const KNOWN: Record<string, string[]> = {
  mpv: ["mpv", "-"],
  vlc: ["vlc", "--play-and-exit", "-"],
};

/** Exit statuses of a shell whose command could not run: not executable, not found. */
const CANNOT_RUN = new Set([126, 127]);
/** How long a closed pipe waits for the player's exit status, to tell "could not start" from "quit". */
const EXIT_WAIT_MS = 2000;

export interface PlayerCommand {
  /** What messages call it: "mpv", "vlc", or the shell command. */
  name: string;
  file: string;
  args: string[];
}

/**
 * The command for --player VALUE; a DownloadError (exit 2) when its program
 * is not found, checked before anything is downloaded.
 */
export function playerCommand(value: string): PlayerCommand {
  const cmd = value.trim();
  if (cmd === "") throw new DownloadError("--player needs mpv, vlc or a command", ExitCode.USAGE);
  const known = KNOWN[cmd];
  const program = known ? known[0]! : /^\S+/.exec(cmd)![0];
  // the shell tells whether the program (or a shell builtin, a function, a path) can run
  const found = spawnSync("/bin/sh", ["-c", 'command -v -- "$1" >/dev/null 2>&1', "sh", program]);
  if (found.status !== 0) {
    throw new DownloadError(`player "${program}" not found (give mpv, vlc or a command on the PATH)`, ExitCode.USAGE);
  }
  return known
    ? { name: cmd, file: known[0]!, args: known.slice(1) }
    : { name: cmd, file: "/bin/sh", args: ["-c", cmd] };
}

/**
 * The player's standard input as the download's sink: the player starts on
 * the first bytes written. Its exit ends the pipe (EPIPE: the download stops
 * with exit 0) unless it could not run at all (exit 2).
 */
export class PlayerSink extends Writable {
  private child: ChildProcess | undefined;
  private started: Promise<void> | undefined;
  private exited: Promise<number | null> | undefined;

  constructor(readonly command: PlayerCommand) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    // an empty write (the download flushing its output) has nothing for the player, and must not start it
    if (chunk.length === 0) return cb();
    this.start().then(
      () =>
        this.child!.stdin!.write(chunk, (err) => {
          if (!err) return cb();
          void this.explain(err).then(cb);
        }),
      (err: Error) => cb(err),
    );
  }

  /**
   * Ends the player's input and resolves with its exit status once it has
   * exited (the viewer watches to the end). A player never started (nothing
   * was written, an empty file) starts now and gets an empty input.
   */
  async finish(): Promise<number | null> {
    await this.start();
    this.child!.stdin!.end();
    return this.exited!;
  }

  /** Ends the player's input without waiting for it (a failed download: it plays what it got). */
  release(): void {
    this.child?.stdin?.end();
  }

  private start(): Promise<void> {
    this.started ??= new Promise<void>((resolve, reject) => {
      const c = this.command;
      const child = spawn(c.file, c.args, { stdio: ["pipe", "inherit", "inherit"] });
      this.child = child;
      this.exited = new Promise((res) => child.once("close", (code) => res(code)));
      child.stdin!.on("error", () => {}); // EPIPE reaches the write that hit it
      child.once("spawn", () => resolve());
      child.once("error", (err: NodeJS.ErrnoException) => {
        reject(new DownloadError(`player "${c.name}" could not start: ${err.code ?? err.message}`, ExitCode.USAGE));
      });
    });
    return this.started;
  }

  /** A failed write to the player: it could not run (exit 2), or it quit (the pipe's error: exit 0). */
  private async explain(err: Error): Promise<Error> {
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      this.exited!,
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), EXIT_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (code != null && CANNOT_RUN.has(code) && this.command.file === "/bin/sh") {
      return new DownloadError(
        `player "${this.command.name}" could not run (the shell exited with ${code})`,
        ExitCode.USAGE,
      );
    }
    return err;
  }
}
