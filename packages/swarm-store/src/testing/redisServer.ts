import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { freePort } from "./freePort.js";

/** A Redis for tests; `stop` kills what the helper started (by PID) and removes its files. Idempotent. */
export interface TestRedis {
  /** URL for `openSwarmStore`: redis://… or redis+cluster://… */
  url: string;
  /** host:port of each node (one for standalone, the masters for a cluster). */
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
}

const INSTALL_HINT =
  "no Redis for the tests: set REDIS_URL, start a container runtime, or install the Debian package redis-server (apt-get install redis-server)";

/** Absolute path of an executable on PATH (of `env`), or undefined. */
export function findOnPath(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

const started = new Set<ChildProcess>();
process.on("exit", () => {
  // last resort when a test process exits without calling stop()
  for (const c of started) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
});

/**
 * Starts redis-server with these extra arguments on a free port (plain TCP,
 * or whatever `listen(port)` makes of it, e.g. TLS only); resolves once it
 * accepts connections. For the helpers of this folder only.
 */
export async function startServer(
  bin: string,
  dir: string,
  extra: string[],
  fixedPort?: number,
  listen: (port: number) => string[] = (port) => ["--port", String(port)],
): Promise<{ child: ChildProcess; port: number }> {
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = fixedPort ?? (await freePort());
    const args = [...listen(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
    const child = spawn(bin, [...args, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    started.add(child);
    let out = "";
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes("Ready to accept connections")) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.once("error", (e) => {
        out += String(e);
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ok) {
      child.stdout!.resume();
      child.stderr!.resume();
      return { child, port };
    }
    lastError = out.trim().split("\n").slice(-3).join("\n");
    await stopChild(child);
  }
  throw new Error(`redis-server did not start: ${lastError}`);
}

/** SIGTERM to the child's PID (SIGKILL after 3 s); resolves once it exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  started.delete(child);
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => child.pid && process.kill(child.pid, "SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** redis-server on PATH, or an error naming the package to install. */
export function redisServerBinary(env: NodeJS.ProcessEnv = process.env): string {
  const bin = findOnPath("redis-server", env);
  if (!bin) throw new Error(INSTALL_HINT);
  return bin;
}

/**
 * A real Redis for tests, the first of:
 *
 * 1. REDIS_URL when set: used as it is, nothing started or stopped;
 * 2. a container `redis:7` (testcontainers, imported only here) when a
 *    container runtime answers on DOCKER_HOST or /var/run/docker.sock; if
 *    the container does not start, a warning and on to 3;
 * 3. redis-server from PATH on a free port, no persistence, a temporary
 *    directory;
 * 4. else an error naming the Debian package to install.
 *
 * `env` is for tests of this order; it defaults to process.env.
 */
export async function redisForTests(env: NodeJS.ProcessEnv = process.env): Promise<TestRedis> {
  if (env.REDIS_URL) {
    const url = env.REDIS_URL;
    const u = new URL(url);
    return { url, nodes: [{ host: u.hostname, port: Number(u.port || 6379) }], stop: async () => {} };
  }
  const runtime = await containerRuntime(env);
  if (runtime) {
    try {
      return await redisContainer();
    } catch (e) {
      if (!findOnPath("redis-server", env))
        throw new Error(`container redis:7 on ${runtime} did not start (${(e as Error).message}); ${INSTALL_HINT}`);
      process.emitWarning(
        `container redis:7 on ${runtime} did not start (${(e as Error).message}); using redis-server`,
      );
    }
  }
  const bin = redisServerBinary(env);
  const dir = mkdtempSync(join(tmpdir(), "ds-redis-"));
  try {
    const { child, port } = await startServer(bin, dir, []);
    let stopped: Promise<void> | undefined;
    return {
      url: `redis://127.0.0.1:${port}`,
      nodes: [{ host: "127.0.0.1", port }],
      stop: () => (stopped ??= stopChild(child).finally(() => rmSync(dir, { recursive: true, force: true }))),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The container runtime's endpoint when one answers a `GET /_ping` within a
 * second: DOCKER_HOST (unix:// or tcp://; a TLS endpoint counts when it accepts
 * a TCP connection), else the socket /var/run/docker.sock when it exists.
 * Undefined otherwise; never throws.
 */
export async function containerRuntime(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const host = env.DOCKER_HOST || (existsSync(DOCKER_SOCKET) ? `unix://${DOCKER_SOCKET}` : "");
  if (!host) return undefined;
  let target: { socketPath: string } | { host: string; port: number };
  if (host.startsWith("unix://")) target = { socketPath: host.slice("unix://".length) };
  else if (host.startsWith("tcp://")) {
    const u = new URL(host.replace(/^tcp:/, "http:"));
    target = { host: u.hostname, port: Number(u.port || 2375) };
  } else return undefined;
  const tlsEndpoint = !!env.DOCKER_TLS_VERIFY && "port" in target;
  const answered = await new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      req.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    const req = httpRequest({ ...target, path: "/_ping", method: "GET" }, (res) => {
      res.resume();
      done(res.statusCode === 200);
    });
    if (tlsEndpoint) req.on("socket", (s) => s.once("connect", () => done(true)));
    req.on("error", () => done(false));
    req.end();
  });
  return answered ? host : undefined;
}

const DOCKER_SOCKET = "/var/run/docker.sock";

async function redisContainer(): Promise<TestRedis> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const c = await new GenericContainer("redis:7")
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .start();
  const host = c.getHost();
  const port = c.getMappedPort(6379);
  let stopped: Promise<void> | undefined;
  return {
    url: `redis://${host.includes(":") ? `[${host}]` : host}:${port}`,
    nodes: [{ host, port }],
    stop: () => (stopped ??= c.stop().then(() => undefined)),
  };
}

/** A local redis-server that a test can stop and start again on the same port (for outage tests). */
export interface RestartableRedis extends TestRedis {
  port: number;
  /** PID of the running server, or undefined while it is down. */
  pid(): number | undefined;
  /** SIGTERM to the server's PID; resolves once it exited. Its data is gone (no persistence). */
  kill(): Promise<void>;
  /** Starts a new, empty server on the same port; resolves once it accepts connections. */
  restart(): Promise<void>;
}

/**
 * A redis-server from PATH (never REDIS_URL: the test must be able to stop
 * and restart it) on a free port, without persistence.
 */
export async function restartableRedisForTests(): Promise<RestartableRedis> {
  const bin = redisServerBinary();
  const dir = mkdtempSync(join(tmpdir(), "ds-redis-"));
  let child: ChildProcess | undefined;
  try {
    const first = await startServer(bin, dir, []);
    child = first.child;
    const port = first.port;
    let stopped: Promise<void> | undefined;
    return {
      url: `redis://127.0.0.1:${port}`,
      nodes: [{ host: "127.0.0.1", port }],
      port,
      pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
      kill: async () => {
        if (child) await stopChild(child);
        child = undefined;
      },
      restart: async () => {
        if (child) throw new Error("redis-server is still running; kill() it first");
        // the port was ours a moment ago; a few tries cover a slow release
        let last: unknown;
        for (let i = 0; i < 10; i++) {
          try {
            child = (await startServer(bin, dir, [], port)).child;
            return;
          } catch (e) {
            last = e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        throw last;
      },
      stop: () =>
        (stopped ??= (async () => {
          if (child) await stopChild(child);
          child = undefined;
          rmSync(dir, { recursive: true, force: true });
        })()),
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A local Redis Cluster of three masters (no replicas) for tests: three
 * redis-server processes with --cluster-enabled on free ports (the cluster bus
 * on free ports too), joined with `redis-cli --cluster create`. Resolves once
 * every node reports cluster_state:ok. REDIS_CLUSTER_URL (redis+cluster://…)
 * is used instead when set.
 */
export async function redisClusterForTests(): Promise<TestRedis> {
  const env = process.env.REDIS_CLUSTER_URL;
  if (env) {
    const hosts = env.replace(/^[a-z+]+:\/\/([^@]*@)?/, "").split(",");
    const nodes = hosts.map((h) => {
      const u = new URL(`redis://${h}`);
      return { host: u.hostname, port: Number(u.port || 6379) };
    });
    return { url: env, nodes, stop: async () => {} };
  }
  const bin = redisServerBinary();
  const cli = findOnPath("redis-cli");
  if (!cli) throw new Error("no redis-cli on PATH to create a Redis Cluster: install the Debian package redis-tools");
  const dir = mkdtempSync(join(tmpdir(), "ds-redis-cluster-"));
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map(stopChild));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const bus = await freePort();
      const { child, port } = await startServer(bin, dir, [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        `nodes-${i}-${process.pid}.conf`,
        "--cluster-port",
        String(bus),
        "--cluster-node-timeout",
        "5000",
      ]);
      children.push(child);
      ports.push(port);
    }
    const create = spawnSync(
      cli,
      ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"],
      { encoding: "utf8", timeout: 30_000 },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    const deadline = Date.now() + 20_000;
    for (const port of ports) {
      for (;;) {
        const info = spawnSync(cli, ["-p", String(port), "cluster", "info"], { encoding: "utf8" });
        if (info.stdout.includes("cluster_state:ok")) break;
        if (Date.now() > deadline) throw new Error(`Redis Cluster node ${port} not ready: ${info.stdout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    let stopped: Promise<void> | undefined;
    return {
      url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
      nodes: ports.map((port) => ({ host: "127.0.0.1", port })),
      stop: () => (stopped ??= stop()),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
