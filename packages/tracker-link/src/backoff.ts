/**
 * How long to wait between tracker connection attempts: exponential from
 * `baseMs`, capped at `maxMs`, jittered so that peers that lost the tracker
 * together do not come back together.
 */
export interface Backoff {
  /** The wait of the first step; each further step doubles it. */
  baseMs: number;
  /** No step waits longer than this before jitter. */
  maxMs: number;
  /**
   * "full": uniform in [0, d); "spread": uniform in [d/2, 3d/2); "none": d,
   * where d is the step's unjittered wait.
   */
  jitter: "full" | "spread" | "none";
}

/** Doubling stops here: 2^30 times any base is past every cap. */
const MAX_DOUBLINGS = 30;

/** The wait of step `step` (1, 2, …); `random` in [0, 1). */
export function backoffDelay(b: Backoff, step: number, random: () => number = Math.random): number {
  if (step < 1) return 0;
  const d = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(step - 1, MAX_DOUBLINGS));
  switch (b.jitter) {
    case "full":
      return random() * d;
    case "spread":
      return d / 2 + random() * d;
    case "none":
      return d;
  }
}
