import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import express, { type NextFunction, type Request, type Response } from "express";
import helmet from "helmet";
import { Counter, Gauge, Histogram, listen, type Logger, type Registry } from "@distribustream/runtime";
import type { SwarmStore } from "@distribustream/swarm-store";
import { isLoopback, requireAccess, type AccessControl } from "./access.js";
import type { ChecksumProbe } from "./checksumProbe.js";
import { EventHub, frame } from "./eventHub.js";
import { FleetView } from "./fleetView.js";
import { MAX_STREAM_ROWS, Snapshots } from "./snapshots.js";

export interface DashboardOptions {
  /** Bind address; without `access`, only a loopback address is accepted. */
  host: string;
  /** 6087 by default; 0 = any free port. */
  port: number;
  /** The swarm store the trackers share: read only, and its fleet channel heard. */
  store: SwarmStore;
  registry: Registry;
  log: Logger;
  /** Who may read it; none = anyone who reaches the port (loopback only). */
  access?: AccessControl | undefined;
  /** The checksum service's health and hash rate; not shown without. */
  checksum?: ChecksumProbe | undefined;
  /** Time between updates (default 1000 ms; never less). */
  updateMs?: number;
}

export interface RunningDashboard {
  port: number;
  /** http://host:port/ as bound. */
  url: string;
  close(): Promise<void>;
}

/** Browsers listening at once, and distinct streams watched at once, at most. */
const MAX_CLIENTS = 1000;
const MAX_WATCHED_STREAMS = 32;
const PEERS_DEFAULT = 50;
const PEERS_MAX = 200;
const STREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;

const here = dirname(fileURLToPath(import.meta.url));
/** Where the pages, the compiled page scripts and uPlot are. */
const PUBLIC_DIR = join(here, "../public");
const WEB_DIR = join(here, "web/web");
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve("uplot"));

/** A caller's mistake: a 4xx with a message. */
class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The operators' dashboard: pages of swarm state kept live over
 * Server-Sent Events, /api/stats.json, /metrics and /healthz. It hears the
 * trackers' stats summaries on the store's fleet channel (one subscription)
 * and reads the store read-only; once per update it computes one snapshot
 * and writes the same text to every browser, so its cost does not grow with
 * the number of browsers.
 */
export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  if (!o.access?.token && !o.access?.basic && !isLoopback(o.host)) {
    throw new Error(
      `the dashboard would serve ${o.host} to anyone: set an access token or a basic-auth user, or bind it to 127.0.0.1`,
    );
  }
  const { log, store } = o;
  const updateMs = Math.max(1000, o.updateMs ?? 1000);
  const metrics = dashboardMetrics(o.registry);
  const fleet = new FleetView();
  const subscription = store.subscribeEvents({
    event: () => undefined,
    fleet: (e) => {
      fleet.heard(e.stats, Date.now());
      metrics.summaries.inc();
    },
    // summaries come every second: nothing to catch up on
    resync: () => undefined,
  });
  await subscription.watchFleet();
  const snapshots = new Snapshots(store, fleet, o.checksum, log);
  const hub = new EventHub(MAX_CLIENTS, MAX_WATCHED_STREAMS);
  let statsJson = "";

  // ---- one update for every browser ------------------------------------------------
  const update = async () => {
    const stop = metrics.updateSeconds.startTimer();
    const snap = await snapshots.refresh();
    statsJson = JSON.stringify(snap);
    hub.sendOverview("stats", statsJson);
    await Promise.all(
      hub.watchedStreams().map(async (streamId) => {
        const detail = await snapshots.detail(streamId, PEERS_DEFAULT, false);
        if (detail) hub.sendStream(streamId, "stream", JSON.stringify(detail));
      }),
    );
    const rows = snap.fleet.replicas;
    metrics.replicas.set({ state: "alive" }, rows.filter((r) => r.alive).length);
    metrics.replicas.set({ state: "gone" }, rows.filter((r) => !r.alive).length);
    metrics.clients.set(hub.size);
    metrics.updates.inc();
    stop();
  };
  // one update a second at most: the next starts a second after this one started, or at once if it took longer
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const run = async () => {
    const started = Date.now();
    await update().catch((err: unknown) => log.error({ err }, "dashboard update failed"));
    if (closed) return;
    timer = setTimeout(() => void run(), Math.max(0, updateMs - (Date.now() - started)));
    timer.unref();
  };
  await run();
  o.checksum?.start();

  // ---- routes ---------------------------------------------------------------------
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", "data:"],
          connectSrc: ["'self'"],
          fontSrc: ["'self'"],
          objectSrc: ["'none'"],
          baseUri: ["'none'"],
          formAction: ["'none'"],
          frameAncestors: ["'none'"],
        },
      },
      // plain HTTP is the common case inside a cluster: never tell browsers to switch to HTTPS
      strictTransportSecurity: false,
    }),
  );
  app.use((req, res, next) => {
    if (req.method === "GET" || req.method === "HEAD") return next();
    res.setHeader("allow", "GET, HEAD");
    res.status(405).type("text/plain").send("the dashboard is read-only: GET and HEAD only\n");
  });
  app.get("/healthz", (_req, res) => {
    res.type("text/plain").send("ok\n");
  });
  if (o.access?.token || o.access?.basic)
    app.use(requireAccess(o.access, () => metrics.refused.inc({ reason: "unauthorized" })));

  const page = (file: string) => (req: Request, res: Response) => {
    noParams(req, file === "stream.html" ? ["id"] : []);
    res.setHeader("cache-control", "no-cache");
    res.sendFile(join(PUBLIC_DIR, file));
  };
  app.get("/", page("index.html"));
  app.get("/stream", page("stream.html"));
  app.get("/fleet", page("fleet.html"));
  const assets = { index: false, fallthrough: false, maxAge: 60_000 } as const;
  app.use("/assets/vendor/uPlot.iife.min.js", (_req, res) => res.sendFile(join(UPLOT_DIR, "uPlot.iife.min.js")));
  app.use("/assets/vendor/uPlot.min.css", (_req, res) => res.sendFile(join(UPLOT_DIR, "uPlot.min.css")));
  app.use("/assets/style.css", (_req, res) => res.sendFile(join(PUBLIC_DIR, "style.css")));
  app.use("/assets", express.static(WEB_DIR, assets));

  app.get("/metrics", (_req, res, next) => {
    o.registry.metrics().then((text) => res.type(o.registry.contentType).send(text), next);
  });
  app.get("/api/stats.json", (req, res) => {
    noParams(req, ["streams"]);
    const rows = intParam(req, "streams", 1, MAX_STREAM_ROWS, MAX_STREAM_ROWS);
    res.setHeader("cache-control", "no-store");
    if (rows === MAX_STREAM_ROWS) return void res.type("application/json").send(statsJson);
    const snap = snapshots.current!;
    res.json({ ...snap, streams: snap.streams.slice(0, rows) });
  });
  app.get("/api/streams/:file", async (req, res) => {
    const file = String(req.params.file);
    const streamId = file.endsWith(".json") ? file.slice(0, -5) : "";
    checkStreamId(streamId);
    noParams(req, ["peers"]);
    const peers = intParam(req, "peers", 1, PEERS_MAX, PEERS_DEFAULT);
    const detail = await snapshots.detail(streamId, peers, true);
    if (!detail) throw new BadRequest(404, `no stream with id ${streamId}`);
    res.setHeader("cache-control", "no-store");
    res.json(detail);
  });
  app.get("/api/events", async (req, res) => {
    noParams(req, ["stream"]);
    const streamId = req.query.stream === undefined ? undefined : String(req.query.stream);
    let first = statsJson;
    if (streamId !== undefined) {
      checkStreamId(streamId);
      const detail = await snapshots.detail(streamId, PEERS_DEFAULT, true);
      if (!detail) throw new BadRequest(404, `no stream with id ${streamId}`);
      first = JSON.stringify(detail);
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const added = hub.add(res, streamId);
    if (added !== "ok") {
      metrics.refused.inc({ reason: "busy" });
      // the page shows it and tries again later
      res.end(frame("busy", JSON.stringify({ error: added })));
      return;
    }
    res.write(`retry: 1000\n${frame(streamId === undefined ? "stats" : "stream", first)}`);
    metrics.clients.set(hub.size);
  });

  app.use((req, _res, next) => next(new BadRequest(404, `no such page: ${req.path.slice(0, 200)}`)));
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    void next;
    const status =
      (err as { status?: number; statusCode?: number }).status ?? (err as { statusCode?: number }).statusCode;
    if (res.headersSent) return void res.end();
    if (typeof status === "number" && status >= 400 && status < 500) {
      if (status !== 404 || req.path.startsWith("/api/")) metrics.refused.inc({ reason: "bad_request" });
      const message = err instanceof BadRequest ? err.message : (err as Error).message || "bad request";
      return void res.status(status).json({ error: message });
    }
    const id = randomBytes(6).toString("hex");
    log.error({ err, errorId: id, path: req.path }, "dashboard request failed");
    res.status(500).json({ error: `internal error (error id ${id})` });
  });

  // not app.listen: runtime's listen rejects on a bind error (a port in use) instead of emitting it
  const http = createServer(app);
  await listen(http, o.port, o.host);
  const port = (http.address() as AddressInfo).port;
  const shown = o.host.includes(":") ? `[${o.host}]` : o.host;
  log.info(
    { host: o.host, port, access: o.access?.token ? "token" : o.access?.basic ? "basic" : "none" },
    "dashboard listening",
  );
  return {
    port,
    url: `http://${shown}:${port}/`,
    async close() {
      closed = true;
      clearTimeout(timer);
      o.checksum?.stop();
      hub.closeAll();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await subscription.close();
    },
  };
}

/** Refuses query parameters other than `allowed`, naming the first. */
function noParams(req: Request, allowed: readonly string[]): void {
  for (const key of Object.keys(req.query)) {
    if (key === "token" || allowed.includes(key)) continue;
    throw new BadRequest(400, `unknown query parameter "${key.slice(0, 64)}" (known: ${allowed.join(", ") || "none"})`);
  }
}

/** An integer query parameter in [min, max], or `def` when absent. */
function intParam(req: Request, name: string, min: number, max: number, def: number): number {
  const v = req.query[name];
  if (v === undefined) return def;
  if (typeof v !== "string" || !/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new BadRequest(400, `query parameter ${name} must be an integer from ${min} to ${max}`);
  }
  return Number(v);
}

function checkStreamId(id: string): void {
  if (!STREAM_ID.test(id)) throw new BadRequest(400, `"${id.slice(0, 64)}" is not a stream id`);
}

function dashboardMetrics(registry: Registry) {
  const registers = [registry];
  return {
    clients: new Gauge({
      name: "pdtp_dashboard_sse_clients",
      help: "Browsers listening for live updates (Server-Sent Events)",
      registers,
    }),
    updates: new Counter({ name: "pdtp_dashboard_updates_total", help: "Updates computed and sent", registers }),
    updateSeconds: new Histogram({
      name: "pdtp_dashboard_update_seconds",
      help: "Time to compute one update (store reads included) and write it to every browser",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    summaries: new Counter({
      name: "pdtp_dashboard_replica_summaries_total",
      help: "Stats summaries heard from the tracker replicas",
      registers,
    }),
    replicas: new Gauge({
      name: "pdtp_dashboard_replicas",
      help: "Tracker replicas heard from lately, alive or gone (silent for 3 of their intervals)",
      labelNames: ["state"],
      registers,
    }),
    refused: new Counter({
      name: "pdtp_dashboard_requests_refused_total",
      help: "Requests refused: unauthorized (401), bad_request (4xx), busy (too many browsers or watched streams)",
      labelNames: ["reason"],
      registers,
    }),
  };
}
