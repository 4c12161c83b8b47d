import { dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { originAgents } from "@distribustream/data-plane";
import type { DataAddress } from "@distribustream/pdtp";
import type { ClientTls, Logger, Registry } from "@distribustream/runtime";
import { FolderWatch } from "./folderWatch.js";
import { LiveBroadcasts } from "./liveBroadcasts.js";
import { checkLiveSpecs, type LiveSpec } from "./liveSpec.js";
import { CredentialRefusedError, SeederLink } from "./trackerLink.js";
import type { OriginSpec } from "./originList.js";
import { OriginPoll } from "./originPoll.js";
import { Publishing } from "./publishing.js";
import { startServing } from "./serving.js";

export { CredentialRefusedError, SEEDER_AGENT } from "./trackerLink.js";

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
  /**
   * Live broadcasts (see LiveSpec), checked at start with checkLiveSpecs (a
   * name also given to an origin is refused); their names hide media files
   * of the same name.
   */
  live?: readonly LiveSpec[];
  /**
   * Folder of the live broadcasts' sequence state, so that a restart
   * continues their numbers. Default: `.distribustream/live` beside the media
   * folder (in its parent, not in the folder the seeder publishes), or in the
   * working directory without a media folder.
   */
  stateDir?: string | undefined;
  /**
   * Folder where each live broadcast is recorded whole (`<name>`, the name
   * URI-encoded); once a broadcast ended, its recording is published as a
   * file under its name. None by default.
   */
  recordDir?: string | undefined;
  /** Standard input, for a live input `-` (default process.stdin). */
  stdin?: Readable | undefined;
  /** Longest wait for an origin's next bytes (default 15 s). */
  originTimeoutMs?: number;
  /** Data-plane bind address (default "0.0.0.0"). */
  dataHost?: string;
  /** Data-plane port (default 8000, the original's listen_port); 0 = any free port. */
  dataPort?: number;
  /**
   * The data plane's address as other peers (viewers, outside) reach it,
   * when that is not the connection's address and the data port: a public
   * name, a published or NodePort port. Default: what the tracker sees.
   */
  advertise?: DataAddress | undefined;
  /**
   * The data plane's address as the checksum service reaches it (inside
   * the cluster or compose network), when that is not the connection's
   * address and the data port. Default: what the tracker sees.
   */
  internalAddress?: DataAddress | undefined;
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

/** Where the live sequence state is kept when SeederOptions.stateDir is not given. */
export function defaultStateDir(media: string | undefined): string {
  return join(media === undefined ? resolve() : dirname(resolve(media)), ".distribustream", "live");
}

/**
 * A seeder: a peer with role SEEDER that publishes every file of a media
 * folder and serves their chunks on its data plane, straight from disk,
 * relays HTTP(S) origins (range requests to the origin, streamed through)
 * and broadcasts live inputs (cut into chunks, served from memory). Its
 * stages, wired here: the sources (live first, then origins: their names
 * hide the later ones'), publishing, serving and the tracker link; drained
 * in reverse.
 */
export async function startSeeder(opts: SeederOptions): Promise<RunningSeeder> {
  const log = opts.log;
  if (opts.media === undefined && !opts.origins?.length && !opts.live?.length)
    throw new Error("nothing to publish: no media folder, no origin and no live input");

  // throws LiveSpecError: two broadcasts of one name, or of an origin's name, a file that is not there…
  checkLiveSpecs(opts.live ?? [], new Set(opts.origins?.map((o) => o.name)));
  // `link` is made once the data plane has its port; nothing calls `send` before (no await between).
  const live = opts.live?.length
    ? LiveBroadcasts.open({
        specs: opts.live,
        stateDir: opts.stateDir ?? defaultStateDir(opts.media),
        recordDir: opts.recordDir,
        stdin: opts.stdin,
        send: (msg) => link.send(msg),
        log,
        registry: opts.registry,
      })
    : undefined;

  // Files settled before start are published at once; later ones after settling.
  const folder =
    opts.media === undefined
      ? undefined
      : await FolderWatch.open({ folder: opts.media, watch: opts.watch, scanIntervalMs: opts.scanIntervalMs, log });
  const agents = originAgents();
  const origins = opts.origins?.length
    ? await OriginPoll.open({
        origins: opts.origins,
        pollMs: opts.originPollMs,
        timeoutMs: opts.originTimeoutMs,
        agents,
        log,
      })
    : undefined;
  const sources = [live, origins, folder].filter(
    (s): s is LiveBroadcasts | OriginPoll | FolderWatch => s !== undefined,
  );

  const publishing = new Publishing({
    sources,
    send: (msg) => link.send(msg),
    log,
    registry: opts.registry,
  });

  const plane = await startServing({
    host: opts.dataHost ?? "0.0.0.0",
    port: opts.dataPort ?? 8000,
    sources: sources.map((s) => s.chunks),
    identity: () => link.identity(),
    maxUploadRate: opts.maxUploadRate,
    log,
    registry: opts.registry,
  });

  const stopSources = async () => {
    folder?.stop();
    await Promise.all([live?.stop(), origins?.stop()]);
  };
  const link = new SeederLink({
    tracker: opts.tracker,
    trackerTls: opts.trackerTls,
    credential: opts.credential,
    advertise: opts.advertise,
    internalAddress: opts.internalAddress,
    dataPort: plane.port,
    onWelcome: (w) => {
      const files = publishing.files();
      log.info({ peerId: w.peerId, observedHost: w.observedHost, files: files.length }, "welcomed by the tracker");
      publishing.resync(files);
    },
    onPublishResult: (r) => publishing.onResult(r),
    onLiveAttested: (a) => live?.attested(a),
    onSessionLost: (end) => {
      publishing.sessionLost(end);
      live?.sessionLost();
    },
    onRefused: (err) => {
      void stopSources();
      publishing.stop(err);
      opts.onRefused?.(err);
    },
    log,
  });
  live?.start(publishing);
  folder?.start(publishing, (name) => publishing.hidden(name, folder));
  origins?.start(publishing);

  let draining: Promise<void> | undefined;
  return {
    dataPort: plane.port,
    whenReady: (name) => publishing.whenReady(name),
    drain() {
      draining ??= (async () => {
        const stopping = stopSources();
        const closing = link.close();
        publishing.stop(new Error("seeder stopped"));
        await plane.close();
        await stopping;
        agents.destroy();
        await closing;
        publishing.clearGauge();
      })();
      return draining;
    },
  };
}
