import { connect } from "node:net";

/**
 * Whether a viewer's data port accepts a TCP connection from the tracker
 * (a connect-back probe). A viewer behind NAT or a firewall that drops
 * incoming connections still downloads, but is never directed to as a
 * source: every fetcher sent to it would lose a download slot until its
 * connect timed out, three times before the strikes ban it.
 *
 * The tracker must not become a port scanner for whoever reaches PDTP: it
 * probes only the address a session connected from and the data port that
 * session gave, one session's Hello at a time (the per-address session and
 * message limits bound how often), each address:port at most once per TTL
 * whatever the answer (cached, and concurrent asks share one probe), at most
 * `concurrency` probes at once (beyond that a peer waits for a slot, and
 * past `maxQueued` it counts as unreachable without a probe), each a bare
 * connect closed at once without a byte written, given up after
 * `timeoutMs`. So all an attacker learns is whether its own address's port
 * accepts connections from the tracker, which it knew.
 */
export interface PeerProbeOptions {
  /** Give up a connect after this long: the port counts as unreachable. */
  timeoutMs: number;
  /** How long an answer is reused for the same address and port. */
  ttlMs: number;
  /** Probes in progress at once. */
  concurrency: number;
  /** Peers waiting for a probe slot; beyond that they count as unreachable without a probe. */
  maxQueued: number;
  /** Answers remembered at most (the oldest are forgotten first). */
  maxCached: number;
}

export const DEFAULT_PEER_PROBE: PeerProbeOptions = {
  timeoutMs: 2_000,
  ttlMs: 60_000,
  concurrency: 16,
  maxQueued: 256,
  maxCached: 10_000,
};

/** How a probe's answer came about, for the metrics. */
export type ProbeResult = "reachable" | "unreachable" | "busy";

/** Connects to host:port; resolves true once it accepts, false on refusal, error or timeout. */
export type Connector = (host: string, port: number, timeoutMs: number) => Promise<boolean>;

export const tcpConnect: Connector = (host, port, timeoutMs) =>
  new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });

interface Cached {
  answer: Promise<boolean>;
  /** Date.now() after which it is probed again (Infinity while in progress). */
  expiresMs: number;
}

export class PeerProbe {
  private readonly cache = new Map<string, Cached>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly o: PeerProbeOptions = DEFAULT_PEER_PROBE,
    private readonly connector: Connector = tcpConnect,
    private readonly onResult: (r: ProbeResult) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether host:port accepts a connection: the cached answer while fresh, else one probe. */
  reachable(host: string, port: number): Promise<boolean> {
    const key = `${host}|${port}`;
    const hit = this.cache.get(key);
    if (hit && hit.expiresMs > this.now()) return hit.answer;
    this.cache.delete(key);
    if (this.running >= this.o.concurrency && this.waiting.length >= this.o.maxQueued) {
      // a flood of new addresses: not probed, not cached (asked again later)
      this.onResult("busy");
      return Promise.resolve(false);
    }
    const entry: Cached = { answer: this.probe(host, port), expiresMs: Infinity };
    entry.answer = entry.answer.then((ok) => {
      entry.expiresMs = this.now() + this.o.ttlMs;
      return ok;
    });
    this.cache.set(key, entry);
    while (this.cache.size > this.o.maxCached) this.cache.delete(this.cache.keys().next().value!);
    return entry.answer;
  }

  /** Answers cached now (in progress included). */
  get size(): number {
    return this.cache.size;
  }

  private async probe(host: string, port: number): Promise<boolean> {
    // a finished probe hands its slot straight to the next in line
    if (this.running >= this.o.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      const ok = await this.connector(host, port, this.o.timeoutMs);
      this.onResult(ok ? "reachable" : "unreachable");
      return ok;
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
