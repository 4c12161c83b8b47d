import { setTimeout as sleep } from "node:timers/promises";
import { z } from "@distribustream/runtime/config";

/**
 * A token bucket shared by every transfer of one direction of a peer. `take`
 * accounts bytes and resolves once the rate allows them; a caller that waits
 * keeps its socket paused, so the limit reaches the sender as TCP
 * backpressure and nothing is buffered.
 */
export class RateLimiter {
  private tokens: number;
  private last = performance.now();
  private readonly burst: number;

  /** `bytesPerSecond` > 0; bursts up to a quarter second's worth (at least 64 KiB). */
  constructor(readonly bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`rate must be positive, got ${bytesPerSecond}`);
    this.burst = Math.max(64 * 1024, bytesPerSecond / 4);
    this.tokens = this.burst;
  }

  async take(bytes: number): Promise<void> {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
    this.last = now;
    this.tokens -= bytes;
    if (this.tokens < 0) await sleep((-this.tokens / this.bytesPerSecond) * 1000);
  }
}

/**
 * Parses a rate such as "8M" (8 MiB/s), "500K", "1.5G" or "1048576" (bytes/s).
 * Returns undefined for "0" or "" (no limit); throws for anything else.
 */
export function parseRate(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(text.trim());
  if (!m) throw new RangeError(`"${text}" is not a rate (examples: 8M, 500K, 1048576)`);
  const scale = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G"];
  const rate = Math.round(Number(m[1]) * scale);
  return rate === 0 ? undefined : rate;
}

/** A rate setting: "8M", "500K", "1048576" (bytes/s); "0" or unset: no limit (undefined). */
export const rateSetting = z
  .union([z.string(), z.number()])
  .optional()
  .transform((v, ctx) => {
    if (v === undefined) return undefined;
    try {
      return parseRate(String(v));
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  });
