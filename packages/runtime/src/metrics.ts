import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** A registry with Node's default process metrics. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface HttpEndpoint {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** The label value that stands for every value past a LabelCap's limit. */
export const OTHER_LABEL = "other";

/**
 * The values of one label kind (stream names) a process exports, held to
 * `max` distinct ones: the first `max` seen keep their own value, later ones
 * are counted together as "other". A tracker or seeder with a stream per user
 * then cannot grow its /metrics, or Prometheus's series, without bound.
 */
export class LabelCap {
  private readonly seen = new Set<string>();
  constructor(readonly max = 200) {}

  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max) return OTHER_LABEL;
    this.seen.add(value);
    return value;
  }
}

/**
 * Serves GET /metrics (Prometheus text format), GET /healthz (readiness: 200
 * while `healthy()` is true, else 503) and GET /livez (liveness: 200 while the
 * process answers at all, whatever Redis or a drain says) on its own port.
 */
export async function startMetricsServer(
  registry: Registry,
  opts: { port: number; host: string; healthy?: () => boolean },
): Promise<HttpEndpoint> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
    } else if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (path === "/livez") {
      res.writeHead(200, { "content-type": "text/plain" }).end("alive\n");
    } else if (path === "/healthz") {
      const ok = opts.healthy?.() ?? true;
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not serving\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  await listen(server, opts.port, opts.host);
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => closeServer(server),
  };
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Stops accepting, ends idle keep-alive sockets, and resolves when all connections are gone. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
