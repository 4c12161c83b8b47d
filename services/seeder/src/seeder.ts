import * as grpc from "@grpc/grpc-js";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { RateLimiter, startDataPlane, type DataPlaneIdentity, type RunningDataPlane } from "@distribustream/data-plane";
import {
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  PeerRole,
  PublishStatus,
  TrackerClient,
  type PeerMessage,
  type PublishResult,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { Gauge, type Logger, type Registry } from "@distribustream/runtime";
import { MediaSource } from "./fileSource.js";
import { MediaLibrary, type MediaFile } from "./library.js";

export const SEEDER_AGENT = "dsseed/0.1.0";

export interface SeederOptions {
  /** "host:port" of the tracker's PDTP port. */
  tracker: string;
  /** Folder to publish; must exist. */
  media: string;
  /** Data-plane bind address (default "0.0.0.0"). */
  dataHost?: string;
  /** Data-plane port (default 8000, the original's listen_port); 0 = any free port. */
  dataPort?: number;
  /** Host name or IP to give viewers instead of the connection's address. */
  advertise?: string | undefined;
  /** Caps the bytes per second the data plane uploads, over all fetchers (undefined: no cap). */
  maxUploadRate?: number | undefined;
  /** Sent in Hello.credential: the seeder token the operator issued (dss_<id>_<secret>). */
  credential?: string | undefined;
  /**
   * Called once when the tracker refuses the credential (UNAUTHENTICATED or
   * PERMISSION_DENIED, at Hello or when the token is revoked later). The
   * seeder stops reconnecting (retrying cannot help) and its whenReady
   * promises reject with the same error; the caller decides how to exit.
   */
  onRefused?: (err: CredentialRefusedError) => void;
  /** Publish files added later and unpublish removed ones (default true). */
  watch?: boolean;
  /** How often the media folder is scanned (default 2 s). */
  scanIntervalMs?: number;
  log: Logger;
  registry: Registry;
}

export interface RunningSeeder {
  dataPort: number;
  /** Resolves with the stream id when `name` is READY on the tracker; rejects with the tracker's reason on REJECTED. */
  whenReady(name: string): Promise<string>;
  /** Ends the tracker session, stops watching, lets transfers in flight finish, closes the data plane. */
  drain(): Promise<void>;
}

/** The tracker refused this seeder's credential; the message reads "the tracker refused … (CODE: reason)". */
export class CredentialRefusedError extends Error {
  override name = "CredentialRefusedError";
  constructor(
    readonly code: grpc.status,
    readonly reason: string,
  ) {
    super(`the tracker refused this seeder's credential (${grpc.status[code]}: ${reason})`);
  }
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

type Waiter = { resolve: (streamId: string) => void; reject: (err: Error) => void };

/**
 * A seeder: a peer with role SEEDER that publishes every file of a media
 * folder and serves their chunks on its data plane, straight from disk.
 */
export async function startSeeder(opts: SeederOptions): Promise<RunningSeeder> {
  const log = opts.log;
  const scanEvery = opts.scanIntervalMs ?? 2_000;
  const library = await MediaLibrary.open(opts.media, 2 * scanEvery, log);
  const published =
    (opts.registry.getSingleMetric("pdtp_seeder_published_streams") as Gauge | undefined) ??
    new Gauge({
      name: "pdtp_seeder_published_streams",
      help: "Streams of the media folder the tracker has accepted as READY in the current session.",
      registers: [opts.registry],
    });

  // Files settled before start are published at once; later ones after settling.
  await library.scan();
  log.info({ media: library.root, files: library.files().length }, "media folder scanned");

  let identity: DataPlaneIdentity | undefined;
  const plane: RunningDataPlane = await startDataPlane({
    host: opts.dataHost ?? "0.0.0.0",
    port: opts.dataPort ?? 8000,
    source: new MediaSource(library),
    identity: () => identity,
    log,
    registry: opts.registry,
    uploadLimiter: opts.maxUploadRate ? new RateLimiter(opts.maxUploadRate) : undefined,
  });

  /** Tracker's answer per name, for the version currently published. */
  const results = new Map<string, PublishResult>();
  const waiters = new Map<string, Waiter[]>();
  let call: ClientDuplexStream<PeerMessage, TrackerMessage> | undefined;
  let welcomed = false;
  let stopped = false;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  const updateGauge = () => {
    let n = 0;
    for (const r of results.values()) if (r.status === PublishStatus.PUBLISH_STATUS_READY) n++;
    published.set(n);
  };

  const settle = (name: string) => {
    const r = results.get(name);
    const current = library.byNameOf(name);
    if (!r || !current || r.streamId !== current.streamId) return;
    const list = waiters.get(name);
    if (!list) return;
    if (r.status === PublishStatus.PUBLISH_STATUS_READY) {
      waiters.delete(name);
      for (const w of list) w.resolve(r.streamId);
    } else if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
      waiters.delete(name);
      for (const w of list) w.reject(new Error(`tracker rejected ${name}: ${r.detail || "no reason given"}`));
    }
  };

  const send = (msg: PeerMessage) => {
    if (call && welcomed) call.write(msg);
  };
  const publish = (f: MediaFile) => {
    results.delete(f.name);
    send({ body: { $case: "publish", value: { name: f.name, size: f.size, version: f.version } } });
  };

  const onMessage = (msg: TrackerMessage) => {
    const body = msg.body;
    switch (body?.$case) {
      case "welcome": {
        const w = body.value;
        identity = { peerId: w.peerId, ticketKeys: w.ticketKeys };
        welcomed = true;
        attempt = 0;
        results.clear();
        updateGauge();
        const files = library.files();
        log.info({ peerId: w.peerId, observedHost: w.observedHost, files: files.length }, "welcomed by the tracker");
        for (const f of files) publish(f);
        break;
      }
      case "publishResult": {
        const r = body.value;
        const current = library.byNameOf(r.name);
        if (!current || current.streamId !== r.streamId) {
          log.debug({ name: r.name, streamId: r.streamId }, "publish result for a version no longer published");
          break;
        }
        if (r.chunkSize >= MIN_CHUNK_SIZE && r.chunkSize <= MAX_CHUNK_SIZE)
          library.setChunkSize(r.streamId, r.chunkSize);
        results.set(r.name, r);
        updateGauge();
        const fields = { name: r.name, streamId: r.streamId, size: current.size };
        if (r.status === PublishStatus.PUBLISH_STATUS_READY) log.info(fields, "published: ready");
        else if (r.status === PublishStatus.PUBLISH_STATUS_ACCEPTED)
          log.info(fields, "published: manifest being computed");
        else if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
          log.warn({ ...fields, reason: r.detail }, "publish rejected");
        }
        settle(r.name);
        break;
      }
      case "keys":
        // a ticket key rotation: serve tickets of the new key from now on
        if (identity) identity = { peerId: identity.peerId, ticketKeys: body.value.ticketKeys };
        log.info({ ticketKeys: body.value.ticketKeys.map((k) => k.keyId) }, "ticket keys changed");
        break;
      case "notice":
        log.warn({ notice: body.value.message }, "tracker notice");
        break;
      default:
        log.debug({ message: body?.$case }, "ignored tracker message");
    }
  };

  // ---- tracker session, reconnected with exponential backoff and jitter ----
  const client = new TrackerClient(opts.tracker, grpc.credentials.createInsecure(), {
    // keepalive so that a tracker gone silent (not just closed) is noticed
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": BACKOFF_MAX_MS,
  });
  const connect = () => {
    if (stopped) return;
    welcomed = false;
    const c = client.session();
    call = c;
    let ended = false;
    const onEnd = (why: string, fields: object, refused?: CredentialRefusedError) => {
      if (ended) return;
      ended = true;
      if (call === c) {
        call = undefined;
        welcomed = false;
      }
      c.removeAllListeners("data");
      c.on("error", () => {});
      if (!c.writableEnded) c.end();
      results.clear();
      updateGauge();
      if (stopped) return;
      if (refused) {
        stopped = true;
        if (scanTimer) clearInterval(scanTimer);
        log.error({ tracker: opts.tracker, code: grpc.status[refused.code], reason: refused.reason }, refused.message);
        for (const [, list] of waiters) for (const w of list) w.reject(refused);
        waiters.clear();
        opts.onRefused?.(refused);
        return;
      }
      const delay = Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
      attempt = Math.min(attempt + 1, 16);
      log.warn({ ...fields, tracker: opts.tracker, retryInMs: Math.round(delay) }, why);
      retryTimer = setTimeout(connect, delay);
    };
    c.on("data", (m: TrackerMessage) => {
      try {
        onMessage(m);
      } catch (err) {
        log.error({ err }, "cannot handle tracker message");
      }
    });
    c.on("error", (err: grpc.ServiceError) => {
      const reason = err.details || err.message;
      const refused =
        err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED
          ? new CredentialRefusedError(err.code, reason)
          : undefined;
      onEnd("tracker session failed", { code: grpc.status[err.code] ?? err.code, reason }, refused);
    });
    c.on("end", () => onEnd("tracker ended the session", {}));
    c.write({
      body: {
        $case: "hello",
        value: {
          role: PeerRole.PEER_ROLE_SEEDER,
          dataPort: plane.port,
          agent: SEEDER_AGENT,
          credential: opts.credential ?? "",
          advertiseHost: opts.advertise ?? "",
          // a seeder only serves; it fetches nothing, so no ticket needs its key
          peerKey: Buffer.alloc(0),
        },
      },
    });
  };
  connect();

  // ---- media folder watching ----
  let scanTimer: NodeJS.Timeout | undefined;
  let scanning = false;
  const rescan = async () => {
    if (scanning || stopped) return;
    scanning = true;
    try {
      const { added, removed, replaced } = await library.scan();
      for (const f of replaced)
        log.info({ name: f.name, oldStreamId: f.streamId }, "file changed, publishing new version");
      for (const f of removed) {
        log.info({ name: f.name, streamId: f.streamId }, "file removed, unpublishing");
        results.delete(f.name);
        send({ body: { $case: "unpublish", value: { name: f.name } } });
      }
      for (const f of added) {
        log.info({ name: f.name, size: f.size, streamId: f.streamId }, "publishing");
        publish(f);
      }
      if (removed.length > 0) updateGauge();
    } catch (err) {
      log.error({ err }, "media folder scan failed");
    } finally {
      scanning = false;
    }
  };
  if (opts.watch ?? true) {
    scanTimer = setInterval(() => void rescan(), scanEvery);
    scanTimer.unref();
  }
  // Files that were still settling at start are picked up by the first rescan.

  let draining: Promise<void> | undefined;
  return {
    dataPort: plane.port,
    whenReady(name) {
      const current = library.byNameOf(name);
      const r = results.get(name);
      if (current && r && r.streamId === current.streamId) {
        if (r.status === PublishStatus.PUBLISH_STATUS_READY) return Promise.resolve(r.streamId);
        if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
          return Promise.reject(new Error(`tracker rejected ${name}: ${r.detail || "no reason given"}`));
        }
      }
      if (stopped) return Promise.reject(new Error("seeder stopped"));
      return new Promise<string>((resolve, reject) => {
        const list = waiters.get(name) ?? [];
        list.push({ resolve, reject });
        waiters.set(name, list);
      });
    },
    drain() {
      draining ??= (async () => {
        stopped = true;
        if (scanTimer) clearInterval(scanTimer);
        if (retryTimer) clearTimeout(retryTimer);
        const c = call;
        call = undefined;
        if (c) {
          c.removeAllListeners("data");
          c.on("error", () => {});
          c.end();
        }
        for (const [, list] of waiters) for (const w of list) w.reject(new Error("seeder stopped"));
        waiters.clear();
        await plane.close();
        client.close();
        published.set(0);
      })();
      return draining;
    },
  };
}
