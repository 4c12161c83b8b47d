import { isIP } from "node:net";

/** Per-address limits of the public port; 0 turns a limit off. */
export interface PeerLimitOptions {
  /** Sessions open at once from one address. */
  maxSessions: number;
  /** Sustained messages per second from one address: every session message and unary call of all its sessions. */
  messagesPerSecond: number;
  /** Messages one address may send at once on top of the sustained rate (the bucket's size). */
  messageBurst: number;
}

/** The burst an address may send at once: this many seconds of its sustained rate. */
export const BURST_SECONDS = 10;

/** Limits from the two operator settings (max_sessions_per_ip, max_messages_per_ip); the burst follows the rate. */
export function peerLimits(maxSessions: number, messagesPerSecond: number): PeerLimitOptions {
  return { maxSessions, messagesPerSecond, messageBurst: messagesPerSecond * BURST_SECONDS };
}

/**
 * 64 sessions: a household or office behind one NAT address, with room.
 * 1 000 messages/s with a burst of 10 000: a dsclient sends at most ~10 Have
 * and ~10 Position messages a second plus one Reports message per event-loop
 * turn in which transfers ended (tens a second at loopback speed); a seeder
 * sends one Publish per file when it connects, so the burst lets a folder of
 * 10 000 files be published at once.
 */
export const DEFAULT_PEER_LIMITS: PeerLimitOptions = peerLimits(64, 1000);

export type LimitName = "sessions" | "messages";

/** Addresses without a session the table keeps at most (about 100 bytes each). */
const MAX_ADDRESSES = 100_000;

/** A refusal: which limit, and the message for the caller (and the log). */
export interface Refusal {
  limit: LimitName;
  message: string;
}

interface AddressState {
  sessions: number;
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  refilledMs: number;
}

/**
 * Sessions and message rate per address, for one tracker process. An IPv4
 * address counts alone; IPv6 addresses count per /64 (one subscriber's
 * prefix, which hands a client as many addresses as it likes). An address
 * is kept while it has sessions, or until its bucket refilled after its
 * last message: `sweep` drops the others, so the table holds only addresses
 * that are active now. A spray of unary calls from more addresses than
 * `maxAddresses` evicts the oldest ones without a session (they start again
 * with a full bucket), so the table never grows past that plus the
 * addresses with open sessions.
 */
export class PeerLimits {
  private readonly table = new Map<string, AddressState>();

  constructor(
    readonly opts: PeerLimitOptions,
    private readonly now: () => number = Date.now,
    private readonly maxAddresses = MAX_ADDRESSES,
  ) {}

  /** Addresses tracked. */
  get size(): number {
    return this.table.size;
  }

  /**
   * Counts a new session of `ip` in. Returns its release (idempotent; call
   * it when the session ends, however it ends), or the refusal.
   */
  openSession(ip: string): { release: () => void } | Refusal {
    const key = limitKey(ip);
    const max = this.opts.maxSessions;
    const state = this.state(key);
    if (max > 0 && state.sessions >= max) {
      this.forgetIfIdle(key, state);
      return { limit: "sessions", message: `too many sessions from ${key} (limit ${max})` };
    }
    state.sessions++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        state.sessions--;
        this.forgetIfIdle(key, state);
      },
    };
  }

  /** Takes one message of `ip` from its bucket; the refusal when the bucket is empty. */
  message(ip: string): Refusal | undefined {
    const rate = this.opts.messagesPerSecond;
    if (rate <= 0) return undefined;
    const key = limitKey(ip);
    const state = this.state(key);
    this.refill(state);
    if (state.tokens >= 1) {
      state.tokens -= 1;
      return undefined;
    }
    return {
      limit: "messages",
      message: `too many messages from ${key} (limit ${rate}/s, burst ${this.burst})`,
    };
  }

  /** Sessions open from `ip`'s address (for tests and logs). */
  sessionsOf(ip: string): number {
    return this.table.get(limitKey(ip))?.sessions ?? 0;
  }

  /** Drops the addresses with no session whose bucket is full again: they carry nothing worth keeping. */
  sweep(): void {
    for (const [key, state] of this.table) this.forgetIfIdle(key, state);
  }

  private get burst(): number {
    return Math.max(1, this.opts.messageBurst);
  }

  private state(key: string): AddressState {
    let state = this.table.get(key);
    if (!state) {
      if (this.table.size >= this.maxAddresses) this.evictIdle();
      state = { sessions: 0, tokens: this.burst, refilledMs: this.now() };
      this.table.set(key, state);
    }
    return state;
  }

  /** Drops the oldest address without a session (Map order is insertion order). */
  private evictIdle(): void {
    for (const [key, state] of this.table) {
      if (state.sessions > 0) continue;
      this.table.delete(key);
      return;
    }
  }

  private refill(state: AddressState): void {
    const now = this.now();
    const elapsed = Math.max(0, now - state.refilledMs);
    state.tokens = Math.min(this.burst, state.tokens + (elapsed * this.opts.messagesPerSecond) / 1000);
    state.refilledMs = now;
  }

  private forgetIfIdle(key: string, state: AddressState): void {
    if (state.sessions > 0) return;
    if (this.opts.messagesPerSecond > 0) {
      this.refill(state);
      if (state.tokens < this.burst) return;
    }
    this.table.delete(key);
  }
}

/** The unit a limit counts: an IPv4 address, or an IPv6 address's /64 ("2001:db8:1:2::/64"). */
export function limitKey(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const groups = expandIpv6(ip);
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part counts as two). */
function expandIpv6(ip: string): number[] {
  const parse = (part: string): number[] =>
    part === ""
      ? []
      : part.split(":").flatMap((g) => {
          if (!g.includes(".")) return [parseInt(g, 16)];
          const [a, b, c, d] = g.split(".").map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head = "", tail] = ip.split("::");
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}

/**
 * At most one log line per key (a limit name) per `intervalMs`: `allow`
 * answers undefined while quiet, else how many were held back since the
 * last line. A flood of refusals costs a counter, not a log line each.
 */
export class LogThrottle {
  private readonly last = new Map<string, { atMs: number; held: number }>();

  constructor(
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  allow(key: string): number | undefined {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.atMs < this.intervalMs) {
      entry.held++;
      return undefined;
    }
    const held = entry?.held ?? 0;
    this.last.set(key, { atMs: now, held: 0 });
    return held;
  }
}
