import assert from "node:assert/strict";
import { DISTRIBUSTREAM, startNode, type Proc } from "./procs.js";

/**
 * The separate services of one test system, started as real processes in
 * `dir` on loopback and stopped by PID, newest first.
 */
export class Services {
  readonly procs: Proc[] = [];

  constructor(readonly dir: string) {}

  /** `distribustream ARGS --log-level info` in the system's folder. */
  start(args: string[]): Proc {
    const p = startNode(DISTRIBUSTREAM, [...args, "--log-level", "info"], { cwd: this.dir });
    this.procs.push(p);
    return p;
  }

  /** `extra`: more flags, e.g. --tls-cert/--tls-key. */
  async checksum(port: number, metricsPort: number, extra: string[] = []): Promise<Proc> {
    const p = this.start(["checksum", "--port", `${port}`, "--metrics-port", `${metricsPort}`, ...extra]);
    await p.waitFor(/checksum service listening/);
    return p;
  }

  /** `seederTokens`: credentials file (relative to the system's folder) for --seeder-tokens. */
  async tracker(o: {
    port: number;
    checksum: number;
    metricsPort: number;
    redis?: string;
    seederTokens?: string;
    extra?: string[];
  }) {
    const p = this.start(
      ["tracker", "--host", "127.0.0.1", "--port", `${o.port}`, "--checksum", `127.0.0.1:${o.checksum}`].concat(
        ["--metrics-port", `${o.metricsPort}`],
        o.redis ? ["--redis", o.redis] : [],
        o.seederTokens ? ["--seeder-tokens", o.seederTokens] : ["--insecure-open-seeding"],
        o.extra ?? [],
      ),
    );
    await p.waitFor(/tracker listening/);
    return p;
  }

  /** A seeder of dir/media (with the seeder token in `tokenFile`, if given); resolves once a file is ready. */
  async seeder(o: {
    tracker: string;
    dataPort: number;
    metricsPort: number;
    tokenFile?: string;
    extra?: string[];
  }): Promise<Proc> {
    const p = this.start(
      ["seeder", "--tracker", o.tracker, "--media", "media", "--data-host", "127.0.0.1"].concat(
        ["--data-port", `${o.dataPort}`, "--metrics-port", `${o.metricsPort}`],
        o.tokenFile ? ["--token-file", o.tokenFile] : [],
        o.extra ?? [],
      ),
    );
    await p.waitFor(/published: ready/, 30_000);
    return p;
  }

  /** SIGTERM to each, newest first; each exits 0 (drained) except those in `crashed`. */
  /**
   * Stops every process (SIGTERM, newest first) and then asserts that each
   * one not in `crashed` exited 0: a failure never leaves the others running.
   */
  async stop(crashed: ReadonlySet<Proc> = new Set()): Promise<void> {
    const unclean: string[] = [];
    for (const p of [...this.procs].reverse()) {
      const code = await p.kill("SIGTERM");
      if (!crashed.has(p) && code !== 0) unclean.push(`exit ${code}:\n${p.stderr()}`);
    }
    assert.deepEqual(unclean, [], "every process stops cleanly on SIGTERM");
  }
}
