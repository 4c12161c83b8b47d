import * as grpc from "@grpc/grpc-js";
import {
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  PublishStatus,
  type LivePublish,
  type PeerMessage,
  type PublishResult,
} from "@distribustream/pdtp";
import { Gauge, type Logger, type Registry } from "@distribustream/runtime";
import type { MediaFile } from "./library.js";
import type { OriginFile } from "./origins.js";

/**
 * A live broadcast as published: size and version 0, the stream id the
 * tracker gave ("" until its first READY), and the Publish.live fields of
 * its next publish.
 */
export interface LiveFile {
  name: string;
  size: 0;
  version: 0;
  streamId: string;
  live: LivePublish;
}

/** A published file of any kind. */
export type Published = MediaFile | OriginFile | LiveFile;

/**
 * True when a tracker's answer naming `streamId` is about `file`: the same
 * version of a file or origin; any answer for a live broadcast's name (the
 * tracker chooses its stream id).
 */
function answers(file: Published, streamId: string): boolean {
  return "live" in file || file.streamId === streamId;
}

/** How the tracker ended a session, as the link reports it. */
export interface SessionEnd {
  code: grpc.status;
  details: string;
}

/**
 * What publishing asks of a source of published files: live broadcasts, HTTP
 * origins, the media folder. Sources are given in priority order: a name
 * claimed by one hides the files of that name of the later ones.
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
  /** The tracker answered READY for `file` (a live broadcast starts then). */
  ready?(file: Published, result: PublishResult): void;
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
  /**
   * Versions whose Publish the tracker answered by ending the session
   * (INVALID_ARGUMENT, e.g. a live broadcast on a tracker that takes none):
   * not published again in this run, or every session would end the same
   * way and the other files would never stay published.
   */
  private readonly refused = new Map<string, { file: Published; reason: string }>();
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

  /** Every published file, those hidden by an earlier source's name and those refused left out. */
  files(): Published[] {
    return this.o.sources.flatMap((s, i) => {
      const earlier = this.o.sources.slice(0, i);
      return s.files().filter((f) => !earlier.some((e) => e.claims(f.name)) && !this.refusal(f));
    });
  }

  /** Why the tracker refused `file` by ending a session, when it did. */
  private refusal(file: Published): string | undefined {
    const r = this.refused.get(file.name);
    return r && answers(file, r.file.streamId) ? r.reason : undefined;
  }

  /** True when a source before `source` claims `name`: its file of that name is not published. */
  hidden(name: string, source: PublishSource): boolean {
    const i = this.o.sources.indexOf(source);
    return this.o.sources.slice(0, i < 0 ? undefined : i).some((s) => s.claims(name));
  }

  publish(f: Published): void {
    this.results.delete(f.name);
    const kind =
      "url" in f
        ? { originUrl: f.url, originEtag: f.etag ?? "", originLastModified: f.lastModified ?? "" }
        : "live" in f
          ? { live: f.live }
          : {};
    this.o.send({
      body: { $case: "publish", value: { name: f.name, size: f.size, version: f.version, ...kind } },
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

  /**
   * The session ended: what its tracker said no longer holds. A tracker that
   * ended it over a Publish (INVALID_ARGUMENT `Publish of "NAME": reason`)
   * refused that name: it is left out of the next sessions, and its waits
   * reject with the reason.
   */
  sessionLost(end?: SessionEnd): void {
    this.results.clear();
    this.updateGauge();
    const m = end?.code === grpc.status.INVALID_ARGUMENT ? /^Publish of "(.*?)": (.*)$/s.exec(end.details) : null;
    if (!m) return;
    // the tracker quotes at most 64 characters of the name
    const quoted = m[1]!;
    const reason = m[2]!;
    const file = this.files().find((f) => f.name === quoted || (quoted.length === 64 && f.name.startsWith(quoted)));
    if (!file) return;
    this.refused.set(file.name, { file, reason });
    this.o.log.warn(
      { name: file.name, reason },
      "publish rejected: the tracker ended the session over it; not published again until the seeder restarts",
    );
    this.rejectWaiters(file.name, new Error(`tracker rejected ${file.name}: ${reason}`));
  }

  /** The tracker's answer to a publish. */
  onResult(r: PublishResult): void {
    const log = this.o.log;
    const owner = this.owner(r.name);
    if (!owner || !answers(owner.file, r.streamId)) {
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
    if (r.status === PublishStatus.PUBLISH_STATUS_READY) owner.source.ready?.(current, r);
  }

  /** Resolves with the stream id when `name` is READY on the tracker; rejects with the tracker's reason on REJECTED. */
  whenReady(name: string): Promise<string> {
    const current = this.lookup(name);
    const refusal = current && this.refusal(current);
    if (refusal) return Promise.reject(new Error(`tracker rejected ${name}: ${refusal}`));
    const r = this.results.get(name);
    if (current && r && answers(current, r.streamId)) {
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
    if (!r || !current || !answers(current, r.streamId)) return;
    const list = this.waiters.get(name);
    if (!list) return;
    if (r.status === PublishStatus.PUBLISH_STATUS_READY) {
      this.waiters.delete(name);
      for (const w of list) w.resolve(r.streamId);
    } else if (r.status === PublishStatus.PUBLISH_STATUS_REJECTED) {
      this.rejectWaiters(name, new Error(`tracker rejected ${name}: ${r.detail || "no reason given"}`));
    }
  }

  private rejectWaiters(name: string, err: Error): void {
    const list = this.waiters.get(name);
    this.waiters.delete(name);
    for (const w of list ?? []) w.reject(err);
  }
}
