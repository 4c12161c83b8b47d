import type { Registry } from "@distribustream/runtime";
import type { ChecksumRow } from "./api.js";

/** How often the checksum service is looked at. */
const PROBE_EVERY_MS = 2_000;
const PROBE_TIMEOUT_MS = 1_500;

interface Reading {
  up: boolean;
  bytesHashed: number | null;
  liveChunksAttested: number | null;
}

/**
 * The checksum service's health and hash rate, looked at every 2 s (never
 * per browser): from its metrics endpoint in a fleet (`fromUrl`), or from
 * the process's own registry in `up` (`fromRegistry`).
 */
export class ChecksumProbe {
  private timer: NodeJS.Timeout | undefined;
  private last: (Reading & { atMs: number }) | undefined;
  private row: Omit<ChecksumRow, "reachableFromReplicas"> = {
    configured: true,
    up: null,
    bytesHashedTotal: null,
    hashBytesPerSecond: null,
    liveChunksAttestedPerSecond: null,
  };
  private probing = false;

  private constructor(private readonly read: () => Promise<Reading>) {}

  /** The service at `baseUrl` (http://host:port of its metrics server): GET /healthz and /metrics. */
  static fromUrl(baseUrl: string): ChecksumProbe {
    const base = baseUrl.replace(/\/+$/, "");
    return new ChecksumProbe(async () => {
      const get = (path: string) => fetch(`${base}${path}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      const [health, metrics] = await Promise.all([get("/healthz"), get("/metrics")]);
      const text = await metrics.text();
      return {
        up: health.ok,
        bytesHashed: sample(text, "pdtp_checksum_bytes_hashed_total"),
        liveChunksAttested: sample(text, "pdtp_checksum_live_chunks_attested_total"),
      };
    });
  }

  /** The service in this process: its counters in `registry`, its health from `healthy`. */
  static fromRegistry(registry: Registry, healthy: () => boolean): ChecksumProbe {
    return new ChecksumProbe(async () => {
      const value = async (name: string) => {
        const m = registry.getSingleMetric(name);
        return m ? ((await m.get()).values[0]?.value ?? 0) : null;
      };
      return {
        up: healthy(),
        bytesHashed: await value("pdtp_checksum_bytes_hashed_total"),
        liveChunksAttested: await value("pdtp_checksum_live_chunks_attested_total"),
      };
    });
  }

  start(): void {
    void this.probe();
    this.timer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  current(): Omit<ChecksumRow, "reachableFromReplicas"> {
    return this.row;
  }

  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      const r = await this.read().catch((): Reading => ({ up: false, bytesHashed: null, liveChunksAttested: null }));
      const now = Date.now();
      const before = this.last;
      const seconds = before ? (now - before.atMs) / 1000 : 0;
      const rate = (a: number | null, b: number | null | undefined) =>
        a !== null && b !== null && b !== undefined && seconds > 0 ? Math.max(0, Math.round((a - b) / seconds)) : null;
      this.row = {
        configured: true,
        up: r.up,
        bytesHashedTotal: r.bytesHashed,
        hashBytesPerSecond: rate(r.bytesHashed, before?.bytesHashed),
        liveChunksAttestedPerSecond: rate(r.liveChunksAttested, before?.liveChunksAttested),
      };
      this.last = { ...r, atMs: now };
    } finally {
      this.probing = false;
    }
  }
}

/** Sum of a Prometheus metric's samples in a text exposition; null when absent. */
export function sample(text: string, name: string): number | null {
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([^ ]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}
