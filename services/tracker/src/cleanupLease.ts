import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "@distribustream/runtime";
import type { SwarmStore } from "@distribustream/swarm-store";
import type { TrackerMetrics } from "./metrics.js";

/** Name of the lease whose holder runs the expiry sweeps. */
const CLEANUP_LEASE = "cleanup";

/**
 * The cleanup lease: one replica at a time holds it (renewed every third of
 * its lifetime) and runs the expiry sweeps; when the holder dies, another
 * takes over within the lifetime.
 */
export class CleanupLease {
  /** Holder id of this replica for leases: unique per process and start. */
  readonly replicaId = `${hostname()}-${process.pid}-${randomBytes(6).toString("base64url")}`;
  /** This replica holds the lease (as of its last renewal). */
  private leader = false;
  /** When the lease we hold runs out if not renewed (local clock, taken before the renewal call). */
  private leaderUntil = 0;
  private renewing: Promise<void> | undefined;

  constructor(
    private readonly store: SwarmStore,
    readonly leaseMs: number,
    private readonly metrics: TrackerMetrics,
    private readonly log: Logger,
  ) {}

  /** Whether this replica runs the expiry sweeps now: it holds the lease and it has not run out. */
  get held(): boolean {
    return this.leader && Date.now() < this.leaderUntil;
  }

  /**
   * Takes or renews the lease. A failed renewal (store unreachable) counts
   * as lost: the sweeps stop until the lease is held again. Two replicas
   * may sweep at once only around a takeover after a stall; the sweeps are
   * atomic per stream, so that costs work, never correctness.
   */
  renew(): Promise<void> {
    return (this.renewing ??= this.tryLease().finally(() => (this.renewing = undefined)));
  }

  /** Hands the sweeps over at once (draining) instead of after the lease's lifetime. */
  async release(): Promise<void> {
    await this.renewing;
    if (!this.leader) return;
    this.leader = false;
    this.metrics.cleanupLeader.set(0);
    await this.store
      .releaseLease(CLEANUP_LEASE, this.replicaId)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "cleanup lease not released"));
  }

  private async tryLease(): Promise<void> {
    const asked = Date.now();
    let held = false;
    try {
      held = await this.store.acquireLease(CLEANUP_LEASE, this.replicaId, this.leaseMs);
    } catch (err) {
      if (this.leader) this.log.warn({ err: (err as Error).message }, "cleanup lease not renewed");
    }
    if (held !== this.leader) {
      this.log.info(
        { replica: this.replicaId },
        held ? "cleanup lease taken: running the expiry sweeps" : "cleanup lease lost",
      );
    }
    this.leader = held;
    this.leaderUntil = held ? asked + this.leaseMs : 0;
    this.metrics.cleanupLeader.set(held ? 1 : 0);
  }
}
