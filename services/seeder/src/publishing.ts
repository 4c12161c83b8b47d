import {
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  PublishStatus,
  type PeerMessage,
  type PublishResult,
} from "@distribustream/pdtp";
import { Gauge, type Logger, type Registry } from "@distribustream/runtime";
import type { MediaFile } from "./library.js";
import type { OriginFile } from "./origins.js";

/** A published file of any kind. */
export type Published = MediaFile | OriginFile;

/**
 * What publishing asks of a source of published files: the media folder,
 * HTTP origins (a live input next). Sources are given in priority order: a
 * name claimed by one hides the files of that name of the later ones.
 */
export interface PublishSource {
  /** True when it claims `name`, published now or not (an origin that is down still hides a media file). */
  claims(name: string): boolean;
  /** The version of `name` it publishes now. */
  byNameOf(name: string): Published | undefined;
  files(): Published[];
  /** The tracker chose the chunk size of a stream (of this source or not). */
  setChunkSize(streamId: string, chunkSize: number): void;
  /** The tracker rejected `file`, a version this source publishes. */
  rejected?(file: Published): void;
}

/** How the sources hand their changes to publishing. */
export interface PublishSink {
  publish(f: Published): void;
  unpublish(name: string): void;
}

export interface PublishingOptions {
  sources: readonly PublishSource[];
  /** Writes to the tracker's current session; dropped without one (resync publishes everything again). */
  send(msg: PeerMessage): void;
  log: Logger;
  registry: Registry;
}

type Waiter = { resolve: (streamId: string) => void; reject: (err: Error) => void };

/**
 * The seeder's publications: what the tracker said of each name in the
 * current session, publish and unpublish, the waits for READY, and the
 * published-streams gauge.
 */
export class Publishing implements PublishSink {
  /** Tracker's answer per name, for the version currently published. */
  private readonly results = new Map<string, PublishResult>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly gauge: Gauge;
  private stopped = false;

  constructor(private readonly o: PublishingOptions) {
    this.gauge =
      (o.registry.getSingleMetric("pdtp_seeder_published_streams") as Gauge | undefined) ??
      new Gauge({
        name: "pdtp_seeder_published_streams",
        help: "Streams of the media folder the tracker has accepted as READY in the current session.",
        registers: [o.registry],
      });
  }

  /** The published version of a name: that of the first source that has one. */
  lookup(name: string): Published | undefined {
    return this.owner(name)?.file;
  }

  private owner(name: string): { source: PublishSource; file: Published } | undefined {
    for (const source of this.o.sources) {
      const file = source.byNameOf(name);
      if (file) return { source, file };
    }
    return undefined;
  }

  /** Every published file, those hidden by an earlier source's name left out. */
  files(): Published[] {
    return this.o.sources.flatMap((s, i) => {
      const earlier = this.o.sources.slice(0, i);
      return s.files().filter((f) => !earlier.some((e) => e.claims(f.name)));
    });
  }

  /** True when a source before `source` claims `name`: its file of that name is not published. */
  hidden(name: string, source: PublishSource): boolean {
    const i = this.o.sources.indexOf(source);
    return this.o.sources.slice(0, i < 0 ? undefined : i).some((s) => s.claims(name));
  }

  publish(f: Published): void {
    this.results.delete(f.name);
    const origin =
      "url" in f ? { originUrl: f.url, originEtag: f.etag ?? "", originLastModified: f.lastModified ?? "" } : {};
    this.o.send({
      body: { $case: "publish", value: { name: f.name, size: f.size, version: f.version, ...origin } },
    });
  }

  unpublish(name: string): void {
    this.results.delete(name);
    this.o.send({ body: { $case: "unpublish", value: { name } } });
    this.updateGauge();
  }

  /** A new session was welcomed: the tracker knows nothing of this seeder, so everything is published again. */
  resync(files = this.files()): void {
    this.results.clear();
    this.updateGauge();
    for (const f of files) this.publish(f);
  }

  /** The session ended: what its tracker said no longer holds. */
  sessionLost(): void {
    this.results.clear();
    this.updateGauge();
  }

  /** The tracker's answer to a publish. */
  onResult(r: PublishResult): void {
    const log = this.o.log;
    const owner = this.owner(r.name);
    if (!owner || owner.file.streamId !== r.streamId) {
      log.debug({ name: r.name, streamId: r.streamId }, "publish result for a version no longer published");
      return;
    }
    const current = owner.file;
    if (r.chunkSize >= MIN_CHUNK_SIZE && r.chunkSize <= MAX_CHUNK_SIZE)
      for (const s of this.o.sources) s.setChunkSize(r.streamId, r.chunkSize);
    this.results.set(r.name, r);
    this.updateGauge();
    const fields = { name: r.name, streamId: r.streamId, size: current.size };
    if (r.status === PublishStatus.PUBLISH_STATUS_READY) log.info(fields, "published: ready");
    else if (r.status === PublishStatus.PUBLISH_STATUS_ACCEPTED) log.info(fields, "published: manifest being computed");
    else if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
      log.warn({ ...fields, reason: r.detail }, "publish rejected");
    }
    this.settle(r.name);
    if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) owner.source.rejected?.(current);
  }

  /** Resolves with the stream id when `name` is READY on the tracker; rejects with the tracker's reason on REJECTED. */
  whenReady(name: string): Promise<string> {
    const current = this.lookup(name);
    const r = this.results.get(name);
    if (current && r && r.streamId === current.streamId) {
      if (r.status === PublishStatus.PUBLISH_STATUS_READY) return Promise.resolve(r.streamId);
      if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
        return Promise.reject(new Error(`tracker rejected ${name}: ${r.detail || "no reason given"}`));
      }
    }
    if (this.stopped) return Promise.reject(new Error("seeder stopped"));
    return new Promise<string>((resolve, reject) => {
      const list = this.waiters.get(name) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(name, list);
    });
  }

  /** No more publications: the waits reject with `reason`, later ones with "seeder stopped". */
  stop(reason: Error): void {
    this.stopped = true;
    for (const [, list] of this.waiters) for (const w of list) w.reject(reason);
    this.waiters.clear();
  }

  /** The gauge reads 0 (the seeder drained). */
  clearGauge(): void {
    this.gauge.set(0);
  }

  private updateGauge(): void {
    let n = 0;
    for (const r of this.results.values()) if (r.status === PublishStatus.PUBLISH_STATUS_READY) n++;
    this.gauge.set(n);
  }

  private settle(name: string): void {
    const r = this.results.get(name);
    const current = this.lookup(name);
    if (!r || !current || r.streamId !== current.streamId) return;
    const list = this.waiters.get(name);
    if (!list) return;
    if (r.status === PublishStatus.PUBLISH_STATUS_READY) {
      this.waiters.delete(name);
      for (const w of list) w.resolve(r.streamId);
    } else if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
      this.waiters.delete(name);
      for (const w of list) w.reject(new Error(`tracker rejected ${name}: ${r.detail || "no reason given"}`));
    }
  }
}
