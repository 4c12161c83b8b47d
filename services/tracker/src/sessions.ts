import type { TrackerMessage } from "@distribustream/pdtp";
import type { TrackerMetrics } from "./metrics.js";
import type { SeederAuth, SeederTokens } from "./seederAuth.js";
import type { Session } from "./session.js";

/**
 * The sessions of this replica (those past Hello), by peer id, and which of
 * them still want chunks of which streams (the schedule tick replans those).
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  /** Sessions with streams they still want chunks of: peerId -> stream ids. */
  private readonly hungryStreams = new Map<string, Set<string>>();

  constructor(private readonly metrics: TrackerMetrics) {}

  get size(): number {
    return this.sessions.size;
  }

  add(s: Session): void {
    this.sessions.set(s.peerId, s);
    this.metrics.sessions.inc({ role: s.role! });
  }

  /** Takes a session out; false when it was not in (it never got past Hello, or was removed already). */
  remove(s: Session): boolean {
    if (!this.sessions.delete(s.peerId)) return false;
    this.hungryStreams.delete(s.peerId);
    this.metrics.sessions.dec({ role: s.role! });
    return true;
  }

  get(peerId: string): Session | undefined {
    return this.sessions.get(peerId);
  }

  /** Whether this peer's session is on this replica. */
  has(peerId: string): boolean {
    return this.sessions.has(peerId);
  }

  all(): IterableIterator<Session> {
    return this.sessions.values();
  }

  setHungry(s: Session, streamId: string, hungry: boolean): void {
    let set = this.hungryStreams.get(s.peerId);
    if (hungry && !s.closed) {
      if (!set) this.hungryStreams.set(s.peerId, (set = new Set()));
      set.add(streamId);
    } else if (set) {
      set.delete(streamId);
      if (set.size === 0) this.hungryStreams.delete(s.peerId);
    }
  }

  /** The sessions that want more of some streams, with those streams (entries of ended sessions are dropped). */
  *hungry(): Generator<[Session, ReadonlySet<string>]> {
    for (const [peerId, streams] of this.hungryStreams) {
      const s = this.sessions.get(peerId);
      if (s) yield [s, streams];
      else this.hungryStreams.delete(peerId);
    }
  }

  broadcast(msg: TrackerMessage): void {
    for (const s of this.sessions.values()) s.send(msg);
  }

  /** Ends every session with this status (draining). */
  async terminateAll(err: unknown): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.terminate(err)));
  }

  /** Ends the seeder sessions whose token the reloaded credentials file revoked or no longer has. */
  endRevokedSeeders(tokens: SeederTokens, auth: SeederAuth): void {
    for (const s of this.sessions.values()) {
      if (s.seederTokenId === undefined || tokens.valid(s.seederTokenId)) continue;
      void s.terminate(auth.revoked(s.seederTokenId, s.host, s.peerId));
    }
  }
}
