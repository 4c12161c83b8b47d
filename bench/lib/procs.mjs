// Processes of the benchmark: each runs in its own process group, is stopped by its PID (then its group,
// if something of it is left), and can be measured from /proc while it runs. Viewers are wrapped in
// GNU time (`/usr/bin/time`, Debian package `time`) for their exact CPU seconds and peak RSS at exit.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

export const TIME = "/usr/bin/time";
const all = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Proc {
  /**
   * @param {string} name
   * @param {string} cmd
   * @param {string[]} args
   * @param {{ cwd?: string, env?: object, timeFile?: string, stdout?: "text" | "sink", stdin?: "pipe" }} [opts]
   *   timeFile: wrap in /usr/bin/time writing there; stdout "sink": standard output is data for onStdout
   *   (a pipe, as a player reading it), not kept as text; stdin "pipe": `this.stdin` feeds the process
   */
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.timeFile = opts.timeFile;
    const [c, a] = this.timeFile ? [TIME, ["-f", "%e %U %S %M", "-o", this.timeFile, cmd, ...args]] : [cmd, args];
    this.child = spawn(c, a, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.stdin ?? "ignore", "pipe", "pipe"],
      detached: true, // its own process group, so that nothing it starts outlives it
    });
    this.pid = this.child.pid;
    this.stdin = this.child.stdin ?? undefined;
    this.stdin?.on("error", () => {}); // a process that exits early: what is still written goes nowhere
    this.out = "";
    this.lines = [];
    this.listeners = [];
    let partial = "";
    const onData = (d) => {
      this.out = (this.out + d).slice(-256 * 1024);
      partial += d;
      const parts = partial.split("\n");
      partial = parts.pop();
      for (const line of parts) for (const l of [...this.listeners]) l(line);
    };
    this.sinks = [];
    if (opts.stdout === "sink") this.child.stdout.on("data", (d) => this.sinks.forEach((f) => f(d)));
    else this.child.stdout.on("data", onData);
    this.child.stderr.on("data", onData);
    this.stdoutEnded = new Promise((r) => this.child.stdout.on("close", r));
    this.exited = new Promise((r) => this.child.on("exit", (code, sig) => r(code ?? sig)));
    this.child.on("error", (err) => {
      this.out += `\nspawn error: ${err.message}`;
    });
    all.add(this);
    void this.exited.then(() => all.delete(this));
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  onStdout(fn) {
    this.sinks.push(fn);
  }

  /** Calls fn(line) for every line of output from now on; returns a function that stops it. */
  onLine(fn) {
    this.listeners.push(fn);
    return () => this.listeners.splice(this.listeners.indexOf(fn), 1);
  }

  /** Resolves when the output so far or from now on matches `re`; rejects on exit or timeout. */
  waitFor(re, ms = 60_000) {
    return new Promise((resolve, reject) => {
      if (re.test(this.out)) return resolve();
      let off = () => {};
      const t = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no ${re} within ${ms} ms\n${this.out.slice(-3000)}`));
      }, ms);
      off = this.onLine((line) => {
        if (!re.test(line)) return;
        clearTimeout(t);
        off();
        resolve();
      });
      void this.exited.then((code) => {
        clearTimeout(t);
        off();
        reject(new Error(`${this.name} exited (${code}) before ${re}\n${this.out.slice(-3000)}`));
      });
    });
  }

  /** The measured process: for a process wrapped in time, time's child. */
  target() {
    if (!this.timeFile) return this.pid;
    return childrenOf(this.pid)[0];
  }

  /** SIGTERM to the measured process, then SIGKILL to the group after `graceMs`. */
  async stop(graceMs = 10_000) {
    if (this.running) {
      const pid = this.target() ?? this.pid;
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* gone meanwhile */
      }
      const t = setTimeout(() => killGroup(this.pid), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    killGroup(this.pid); // whatever of the group is left (none, normally)
  }

  /** GNU time's figures once the process exited: { elapsedS, cpuS, maxRssMB }. */
  timeResult() {
    if (!this.timeFile || !existsSync(this.timeFile)) return undefined;
    const last = readFileSync(this.timeFile, "utf8").trim().split("\n").at(-1).split(" ").map(Number);
    if (last.length !== 4 || last.some((n) => !Number.isFinite(n))) return undefined;
    return { elapsedS: last[0], cpuS: +(last[1] + last[2]).toFixed(2), maxRssMB: +(last[3] / 1024).toFixed(1) };
  }
}

function killGroup(pgid) {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    /* no process left in the group */
  }
}

/** Stops every process still running, newest first (also on errors and signals). */
export async function stopAll() {
  for (const p of [...all].reverse()) await p.stop(5_000);
}

// ---- /proc ----------------------------------------------------------------------

export function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** pid and all its descendants that are alive. */
export function tree(pid) {
  if (pid === undefined) return [];
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childrenOf(out[i]));
  return out.filter((p) => existsSync(`/proc/${p}`));
}

const CLK_TCK = 100;

/** utime + stime of one process in seconds (its own, not its children's). */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** A memory field of /proc/PID/status ("VmHWM", "RssAnon", ...) in MB (MiB); 0 once the process is gone. */
function statusMB(pid, field) {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak resident set size of one process (VmHWM), in MB (MiB). */
export const peakRssMB = (pid) => statusMB(pid, "VmHWM");

/**
 * Resident anonymous memory of one process (RssAnon), in MB (MiB): what it holds of its own
 * (heap, buffers, stacks, JIT code), without the pages of its executable and libraries, which
 * every process running them shares (a node process maps about 40 MB of its binary).
 */
export const anonRssMB = (pid) => statusMB(pid, "RssAnon");

/** Bytes the process passed to write/send/sendfile (wchar of /proc/PID/io): sockets, pipes and files. */
export function wcharBytes(pid) {
  try {
    const m = /wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds, written bytes and summed peak RSS of a process and its descendants, now. */
export function sampleTree(pid) {
  const pids = tree(pid);
  return {
    pids,
    cpuS: pids.reduce((s, p) => s + cpuSeconds(p), 0),
    wchar: pids.reduce((s, p) => s + wcharBytes(p), 0),
    peakRssMB: pids.reduce((s, p) => s + peakRssMB(p), 0),
  };
}

/** Bytes sent on the loopback interface of this network namespace (every packet, headers included). */
export function loopbackTxBytes() {
  const line = readFileSync("/proc/net/dev", "utf8")
    .split("\n")
    .find((l) => l.trim().startsWith("lo:"));
  if (!line) return undefined;
  return Number(line.split(":")[1].trim().split(/\s+/)[8]);
}
