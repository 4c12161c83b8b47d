import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { fileURLToPath } from "node:url";
import { freePort } from "@distribustream/swarm-store/testing";

/** Repository root (test/dist/support -> ../../..). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const DISTRIBUSTREAM = `${ROOT}cmd/distribustream/bin/distribustream.js`;
export const DSCLIENT = `${ROOT}packages/client/bin/dsclient.js`;

export { freePort };

export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or 128 + signal number). */
  exited: Promise<number>;
  /** Resolves when stdout+stderr so far match `re`; rejects after timeoutMs or if the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<number>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };

/** Starts `node script args` as a real child process and records its output (`stdin: "pipe"`: child.stdin is the test's to write). */
export function startNode(
  script: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: "pipe" | "ignore"; stdout?: "pipe" | "ignore" } = {},
): Proc {
  // REDIS_URL names the tests' Redis (see redisForTests); up, tracker and dashboard would read it as their store
  const { REDIS_URL: _testRedis, ...inherited } = process.env;
  const child = spawn(process.execPath, [script, ...args], {
    cwd: opts.cwd,
    env: { ...inherited, ...opts.env },
    stdio: [opts.stdin ?? "ignore", opts.stdout ?? "pipe", "pipe"],
  });
  live.add(child);
  let out = "";
  let err = "";
  const waiters: Array<() => void> = [];
  const poke = () => waiters.splice(0).forEach((w) => w());
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    poke();
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    poke();
  });
  const exited = new Promise<number>((resolve) =>
    child.on("exit", (code, signal) => {
      live.delete(child);
      poke();
      resolve(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0));
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  const proc: Proc = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${re}; output:\n${out}\n${err}`)),
          timeoutMs,
        );
        const check = () => {
          const m = (out + err).match(re);
          if (m) {
            clearTimeout(timer);
            resolve(m);
          } else if (done) {
            clearTimeout(timer);
            reject(new Error(`process exited before ${re}; output:\n${out}\n${err}`));
          } else waiters.push(check);
        };
        check();
      });
    },
    async kill(signal = "SIGTERM") {
      if (!done) child.kill(signal);
      return exited;
    },
  };
  return proc;
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Sum of a Prometheus metric's samples whose labels include `labels`. */
export async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([^ ]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

export interface Up {
  proc: Proc;
  /** PDTP port of the tracker. */
  port: number;
  metricsUrl: string;
}

/**
 * Runs `distribustream up` in `dir` (publishing dir/media) on free loopback
 * ports and resolves once `name` is ready (its download line is printed).
 */
export async function startUp(dir: string, name: string): Promise<Up> {
  const [port, data, checksum, metrics] = await freePorts(4);
  const proc = startNode(
    DISTRIBUSTREAM,
    ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat([
      "--checksum-port",
      `${checksum}`,
      "--metrics-port",
      `${metrics}`,
    ]),
    { cwd: dir },
  );
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await proc.waitFor(new RegExp(`npx dsclient '?pdtp://localhost:\\d+/${escaped}`), 60_000);
  return { proc, port: port!, metricsUrl: `http://127.0.0.1:${metrics}/metrics` };
}
