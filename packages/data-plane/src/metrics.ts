import type { Counter, Registry } from "@distribustream/runtime/metrics";

export interface DataPlaneMetrics {
  sentBytes: Counter<"stream">;
  requests: Counter<"code">;
  /** The stream label of sentBytes: the first 200 stream ids, then "other". */
  streamLabel(streamId: string): string;
}

/**
 * The data-plane metrics on `registry`. A process may run more than one data
 * plane on one registry (the all-in-one `up`), so existing metrics are reused.
 */
export async function dataPlaneMetrics(registry: Registry): Promise<DataPlaneMetrics> {
  // Loaded only when metrics are wanted: dsclient runs a data plane without them
  // and stays lighter without prom-client.
  const { Counter, LabelCap } = await import("@distribustream/runtime/metrics");
  const sentBytes =
    (registry.getSingleMetric("pdtp_dataplane_sent_bytes_total") as Counter<"stream"> | undefined) ??
    new Counter({
      name: "pdtp_dataplane_sent_bytes_total",
      help: 'Chunk payload bytes sent on the data plane, by stream id (the first 200 a process sees; the rest as "other").',
      labelNames: ["stream"] as const,
      registers: [registry],
    });
  const requests =
    (registry.getSingleMetric("pdtp_dataplane_requests_total") as Counter<"code"> | undefined) ??
    new Counter({
      name: "pdtp_dataplane_requests_total",
      help: "Data-plane HTTP requests answered, by status code.",
      labelNames: ["code"] as const,
      registers: [registry],
    });
  const streams = new LabelCap(200);
  return { sentBytes, requests, streamLabel: (id) => streams.of(id) };
}
