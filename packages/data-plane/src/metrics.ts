import { Counter, type Registry } from "@distribustream/runtime";

export interface DataPlaneMetrics {
  sentBytes: Counter<"stream">;
  requests: Counter<"code">;
}

/**
 * The data-plane metrics on `registry`. A process may run more than one data
 * plane on one registry (the all-in-one `up`), so existing metrics are reused.
 */
export function dataPlaneMetrics(registry: Registry): DataPlaneMetrics {
  const sentBytes =
    (registry.getSingleMetric("pdtp_dataplane_sent_bytes_total") as Counter<"stream"> | undefined) ??
    new Counter({
      name: "pdtp_dataplane_sent_bytes_total",
      help: "Chunk payload bytes sent on the data plane, by stream id.",
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
  return { sentBytes, requests };
}
