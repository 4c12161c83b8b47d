import { setTimeout as sleep } from "node:timers/promises";
import type { ChannelOptions } from "@grpc/grpc-js";
import type { Hello, PeerMessage, TrackerMessage } from "@distribustream/pdtp";
import type { ClientTls } from "@distribustream/runtime/tls";
import { backoffDelay, type Backoff } from "./backoff.js";
import { TrackerSession, type SessionEnd } from "./session.js";

/** Attempts and waits of one phase of a link. */
export interface Attempts {
  /** Failed attempts in a row after which the link gives up (Infinity: never). */
  attempts: number;
  backoff: Backoff;
}

/** What an end means: retried (`reason` says why it ended), or the end of the link. */
export type Verdict =
  | { retry: true; reason: string; giveUp?: Error }
  /** `error` undefined: the link ends quietly (its user is done with it). */
  | { retry: false; error?: Error };

/**
 * When a link reconnects and when it gives up. An attempt fails when its
 * session ends before the tracker took the resync in (see
 * TrackerLinkOptions.resync); it succeeds once it did.
 */
export interface LinkPolicy {
  /** Until an attempt first succeeds. */
  connect: Attempts;
  /** Once one did. */
  reconnect: Attempts;
  /** Whether an end is retried. */
  retryable(end: SessionEnd): Verdict;
  /**
   * The error to give up with after `failures` failed attempts in a row,
   * unless the last verdict carried its own `giveUp`.
   */
  exhausted(failures: number, last: { end: SessionEnd; reason: string }): Error;
}

export interface Retry {
  end: SessionEnd;
  reason: string;
  /** Failed attempts in a row so far. */
  failures: number;
  /** The wait before the next attempt. */
  delayMs: number;
}

export interface TrackerLinkOptions {
  /** "host:port" of the tracker's PDTP port. */
  target: string;
  /** Over TLS, trusting this CA or the system's roots; plaintext without. */
  tls?: ClientTls | undefined;
  /** Options of each attempt's channel, over the link's keepalive. */
  channelOptions?: ChannelOptions;
  /** The Hello of each session, asked at each attempt. */
  hello(): Hello;
  policy: LinkPolicy;
  /**
   * The tracker welcomed a session: re-send what it must know (joins,
   * holdings, publishes). Called before any later message of the session
   * reaches onMessage. The attempt succeeds once what it returns resolves (at
   * once for nothing); a throw or a rejection ends the link with that error.
   */
  resync(session: TrackerSession): void | Promise<void>;
  /** The messages after the Welcome, in arrival order. */
  onMessage(msg: TrackerMessage, session: TrackerSession): void;
  /** A welcomed session ended (before the verdict on it). */
  onSessionEnd?(session: TrackerSession, end: SessionEnd): void;
  /** The link will try again after `delayMs`. */
  onRetry?(retry: Retry): void;
  /**
   * Stops the link from connecting: an attempt waiting for its Welcome is
   * cancelled, a wait ends. A welcomed session stays until close or abort.
   */
  signal?: AbortSignal | undefined;
}

/**
 * The one connection of a peer to the tracker: connects, says Hello, lets
 * its user resync on every Welcome, and reconnects with jittered exponential
 * backoff after any end the policy retries (a tracker that restarts, drains
 * or goes away), the first attempt included, until the attempts run out.
 */
export class TrackerLink {
  /** The welcomed session, while there is one. */
  session: TrackerSession | undefined;
  /**
   * Settles when the link ends: resolves after close or abort (or a quiet
   * verdict), rejects with the error it gave up with.
   */
  readonly done: Promise<void>;
  private stopped = false;
  private readonly stopping = new AbortController();
  private generation = 0;

  constructor(private readonly o: TrackerLinkOptions) {
    const onAbort = () => this.stopping.abort();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    if (o.signal?.aborted) onAbort();
    this.done = this.run().finally(() => o.signal?.removeEventListener("abort", onAbort));
    this.done.catch(() => {}); // the user awaits it when it cares
  }

  /** Writes to the welcomed session; dropped when there is none (resync re-sends what matters). */
  send(msg: PeerMessage): void {
    this.session?.send(msg);
  }

  /** Stops reconnecting; half-closes the session and waits up to `graceMs` for the tracker to end it. */
  async close(graceMs = 1000): Promise<void> {
    this.stop();
    const s = this.session;
    this.session = undefined;
    await s?.close(graceMs);
    await this.done.catch(() => {});
  }

  /** Stops reconnecting and ends the session at once. */
  abort(): void {
    this.stop();
    const s = this.session;
    this.session = undefined;
    s?.abort();
  }

  private stop(): void {
    this.stopped = true;
    this.stopping.abort();
  }

  private get ending(): boolean {
    return this.stopped || this.stopping.signal.aborted;
  }

  private async run(): Promise<void> {
    const p = this.o.policy;
    let succeeded = false;
    let failures = 0;
    let delayMs = 0; // the first attempt goes at once
    for (;;) {
      if (delayMs > 0) await sleep(delayMs, undefined, { signal: this.stopping.signal }).catch(() => {});
      if (this.ending) return;
      let ok = false;
      const end = await this.attempt(() => {
        ok = succeeded = true;
        failures = 0;
      });
      if (this.ending || end === undefined) return;
      const verdict = p.retryable(end);
      if (!verdict.retry) {
        if (verdict.error) throw verdict.error;
        return;
      }
      if (!ok) failures++;
      const phase = succeeded ? p.reconnect : p.connect;
      if (failures >= phase.attempts) throw verdict.giveUp ?? p.exhausted(failures, { end, reason: verdict.reason });
      // Once a session was lost, even the first attempt waits (a step more than the
      // failures), so that peers that lost the tracker together do not come back together.
      delayMs = backoffDelay(phase.backoff, succeeded ? failures + 1 : failures);
      this.o.onRetry?.({ end, reason: verdict.reason, failures, delayMs });
    }
  }

  /**
   * One attempt: a session from Hello to its end. Resolves with how it ended,
   * or undefined when the link ended meanwhile; `succeeded` is called once
   * the tracker took the resync in.
   */
  private async attempt(succeeded: () => void): Promise<SessionEnd | undefined> {
    let resynced: Promise<void> = Promise.resolve();
    let session: TrackerSession;
    try {
      session = await TrackerSession.open({
        target: this.o.target,
        tls: this.o.tls,
        hello: this.o.hello(),
        channelOptions: this.o.channelOptions,
        generation: ++this.generation,
        signal: this.stopping.signal,
        onWelcome: (s) => {
          if (this.ending) return;
          this.session = s;
          try {
            resynced = Promise.resolve(this.o.resync(s));
          } catch (err) {
            resynced = Promise.reject(err as Error);
          }
        },
        onMessage: (msg, s) => {
          if (this.session === s) this.o.onMessage(msg, s);
        },
      });
    } catch (end) {
      return this.ending ? undefined : (end as SessionEnd);
    }
    if (this.ending) {
      if (this.session === session) this.session = undefined;
      session.abort();
      return undefined;
    }
    const first = await Promise.race([
      resynced.then(
        () => ({ ok: true as const }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
      session.ended.then((end) => ({ end })),
    ]);
    if ("ok" in first) {
      if (!first.ok) {
        if (this.session === session) this.session = undefined;
        session.abort();
        throw first.err;
      }
      succeeded();
    }
    const end = await session.ended;
    if (this.session === session) this.session = undefined;
    session.abort(); // closes its channel
    if (this.ending) return undefined;
    this.o.onSessionEnd?.(session, end);
    return end;
  }
}
