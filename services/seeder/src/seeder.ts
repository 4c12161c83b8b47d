import * as grpc from "@grpc/grpc-js";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import {
  originAgents,
  RateLimiter,
  startDataPlane,
  type ChunkSource,
  type DataPlaneIdentity,
  type RunningDataPlane,
} from "@distribustream/data-plane";
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
import { channelCredentials, Gauge, type ClientTls, type Logger, type Registry } from "@distribustream/runtime";
import { MediaSource } from "./fileSource.js";
import { MediaLibrary, type MediaFile } from "./library.js";
import type { OriginSpec } from "./originList.js";
import { OriginCatalog, type OriginCheck, type OriginFile } from "./origins.js";

export const SEEDER_AGENT = "dsseed/0.1.0";

export interface SeederOptions {
  /** "host:port" of the tracker's PDTP port. */
  tracker: string;
  /** Reach the tracker over TLS (pdtps://), trusting this CA or the system's roots. Plaintext without. */
  trackerTls?: ClientTls | undefined;
  /** Folder to publish; must exist. Optional when origins are given. */
  media?: string | undefined;
  /** HTTP(S) origins to relay (see OriginCatalog); their names hide media files of the same name. */
  origins?: readonly OriginSpec[];
  /** How often every origin is checked for a new version (default 30 s). */
  originPollMs?: number;
  /** Longest wait for an origin's next bytes (default 15 s). */
  originTimeoutMs?: number;
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
/** A published file of either kind. */
type Published = MediaFile | OriginFile;

/**
 * A seeder: a peer with role SEEDER that publishes every file of a media
 * folder and serves their chunks on its data plane, straight from disk, and
 * relays HTTP(S) origins (range requests to the origin, streamed through).
 */
export async function startSeeder(opts: SeederOptions): Promise<RunningSeeder> {
  const log = opts.log;
  const scanEvery = opts.scanIntervalMs ?? 2_000;
  if (opts.media === undefined && !opts.origins?.length)
    throw new Error("nothing to publish: no media folder and no origin");
  const library = opts.media === undefined ? undefined : await MediaLibrary.open(opts.media, 2 * scanEvery, log);
  const agents = originAgents();
  let checkOrigins: (names?: ReadonlySet<string>) => Promise<void> = async () => {};
  const origins = opts.origins?.length
    ? new OriginCatalog(opts.origins, {
        log,
        agents,
        ...(opts.originTimeoutMs !== undefined ? { timeoutMs: opts.originTimeoutMs } : {}),
        onChanged: (name) => {
          log.info({ name }, "origin changed under a read: checking it now");
          void checkOrigins(new Set([name]));
        },
      })
    : undefined;
  /** The published version of a name: an origin's, else the media folder's. */
  const lookup = (name: string): Published | undefined => origins?.byNameOf(name) ?? library?.byNameOf(name);
  const allFiles = (): Published[] => [
    ...(origins?.files() ?? []),
    ...(library?.files().filter((f) => !origins?.has(f.name)) ?? []),
  ];
  const published =
    (opts.registry.getSingleMetric("pdtp_seeder_published_streams") as Gauge | undefined) ??
    new Gauge({
      name: "pdtp_seeder_published_streams",
      help: "Streams of the media folder the tracker has accepted as READY in the current session.",
      registers: [opts.registry],
    });

  // Files settled before start are published at once; later ones after settling.
  if (library) {
    await library.scan();
    log.info({ media: library.root, files: library.files().length }, "media folder scanned");
  }
  if (origins) {
    await origins.check();
    log.info({ origins: opts.origins!.length, available: origins.files().length }, "origins checked");
  }

  let identity: DataPlaneIdentity | undefined;
  const plane: RunningDataPlane = await startDataPlane({
    host: opts.dataHost ?? "0.0.0.0",
    port: opts.dataPort ?? 8000,
    source: eitherSource([origins, library && new MediaSource(library)]),
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
    const current = lookup(name);
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
  const publish = (f: Published) => {
    results.delete(f.name);
    const origin =
      "url" in f ? { originUrl: f.url, originEtag: f.etag ?? "", originLastModified: f.lastModified ?? "" } : {};
    send({ body: { $case: "publish", value: { name: f.name, size: f.size, version: f.version, ...origin } } });
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
        const files = allFiles();
        log.info({ peerId: w.peerId, observedHost: w.observedHost, files: files.length }, "welcomed by the tracker");
        for (const f of files) publish(f);
        break;
      }
      case "publishResult": {
        const r = body.value;
        const current = lookup(r.name);
        if (!current || current.streamId !== r.streamId) {
          log.debug({ name: r.name, streamId: r.streamId }, "publish result for a version no longer published");
          break;
        }
        if (r.chunkSize >= MIN_CHUNK_SIZE && r.chunkSize <= MAX_CHUNK_SIZE) {
          library?.setChunkSize(r.streamId, r.chunkSize);
          origins?.setChunkSize(r.streamId, r.chunkSize);
        }
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
        if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED && "url" in current) {
          // e.g. the origin changed while it was hashed: the next poll publishes what it serves then
          origins?.forget(current.streamId);
          log.info({ name: r.name, url: current.url }, "origin will be published again at the next poll");
        }
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
  const client = new TrackerClient(opts.tracker, channelCredentials(opts.trackerTls), {
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
        if (pollTimer) clearInterval(pollTimer);
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
    if (scanning || stopped || !library) return;
    scanning = true;
    try {
      const { added, removed, replaced } = await library.scan();
      for (const f of replaced)
        log.info({ name: f.name, oldStreamId: f.streamId }, "file changed, publishing new version");
      for (const f of removed) {
        if (origins?.has(f.name)) continue; // never published: the origin of that name is
        log.info({ name: f.name, streamId: f.streamId }, "file removed, unpublishing");
        results.delete(f.name);
        send({ body: { $case: "unpublish", value: { name: f.name } } });
      }
      for (const f of added) {
        if (origins?.has(f.name)) {
          log.warn({ name: f.name }, "media file has the name of an origin, not published (the origin is)");
          continue;
        }
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
  if ((opts.watch ?? true) && library) {
    scanTimer = setInterval(() => void rescan(), scanEvery);
    scanTimer.unref();
  }

  // ---- origin polling: a new validator or size is a new version, published like a changed file ----
  let pollTimer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let pollAgain: Set<string> | "all" | undefined;
  const applyOriginCheck = ({ added, removed, replaced }: OriginCheck) => {
    for (const f of replaced)
      log.info({ name: f.name, oldStreamId: f.streamId, url: f.url }, "origin changed, publishing new version");
    for (const f of removed) {
      results.delete(f.name);
      send({ body: { $case: "unpublish", value: { name: f.name } } });
    }
    for (const f of added) {
      log.info({ name: f.name, size: f.size, streamId: f.streamId, url: f.url }, "publishing origin");
      publish(f);
    }
    if (removed.length > 0) updateGauge();
  };
  checkOrigins = (names) => {
    if (!origins || stopped) return Promise.resolve();
    if (polling) {
      // one check at a time; what is asked meanwhile runs right after it
      if (!names || pollAgain === "all") pollAgain = "all";
      else pollAgain = new Set([...(pollAgain ?? []), ...names]);
      return polling;
    }
    polling = origins
      .check(names)
      .then(applyOriginCheck, (err: unknown) => log.error({ err }, "origin check failed"))
      .finally(() => {
        polling = undefined;
        const again = pollAgain;
        pollAgain = undefined;
        if (again) void checkOrigins(again === "all" ? undefined : again);
      });
    return polling;
  };
  if (origins) {
    pollTimer = setInterval(() => void checkOrigins(), opts.originPollMs ?? 30_000);
    pollTimer.unref();
  }
  // Files that were still settling at start are picked up by the first rescan.

  let draining: Promise<void> | undefined;
  return {
    dataPort: plane.port,
    whenReady(name) {
      const current = lookup(name);
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
        if (pollTimer) clearInterval(pollTimer);
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
        await polling;
        agents.destroy();
        client.close();
        published.set(0);
      })();
      return draining;
    },
  };
}

/** One data-plane source over several: a stream is served by the part that knows it. */
function eitherSource(parts: ReadonlyArray<ChunkSource | undefined>): ChunkSource {
  const list = parts.filter((p): p is ChunkSource => p !== undefined);
  const owner = (streamId: string) => list.find((p) => p.layout(streamId) !== undefined);
  return {
    layout: (streamId) => owner(streamId)?.layout(streamId),
    holds: (streamId, range) => owner(streamId)?.holds(streamId, range) ?? false,
    read: (streamId, start, end) => (owner(streamId) ?? list[0]!).read(streamId, start, end),
  };
}
