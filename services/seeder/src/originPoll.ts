import type { ChunkSource, OriginAgents } from "@distribustream/data-plane";
import type { Logger } from "@distribustream/runtime";
import type { OriginSpec } from "./originList.js";
import { OriginCatalog, type OriginCheck, type OriginFile } from "./origins.js";
import type { Published, PublishSink, PublishSource } from "./publishing.js";

export interface OriginPollOptions {
  origins: readonly OriginSpec[];
  /** How often every origin is checked for a new version (default 30 s). */
  pollMs?: number | undefined;
  /** Longest wait for an origin's next bytes (default 15 s). */
  timeoutMs?: number | undefined;
  agents: OriginAgents;
  log: Logger;
}

/**
 * HTTP(S) origins as a source: checked once at open, then every `pollMs`
 * and whenever a read finds an origin changed; a new validator or size is a
 * new version, published like a changed file. Their names hide media files
 * of the same name.
 */
export class OriginPoll implements PublishSource {
  /** Relays the origins on the data plane (range requests to the origin, streamed through). */
  readonly chunks: ChunkSource;
  private readonly catalog: OriginCatalog;
  private sink: PublishSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private again: Set<string> | "all" | undefined;
  private stopped = false;

  private constructor(private readonly o: OriginPollOptions) {
    this.catalog = new OriginCatalog(o.origins, {
      log: o.log,
      agents: o.agents,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      onChanged: (name) => {
        o.log.info({ name }, "origin changed under a read: checking it now");
        void this.check(new Set([name]));
      },
    });
    this.chunks = this.catalog;
  }

  static async open(o: OriginPollOptions): Promise<OriginPoll> {
    const poll = new OriginPoll(o);
    await poll.catalog.check();
    o.log.info({ origins: o.origins.length, available: poll.catalog.files().length }, "origins checked");
    return poll;
  }

  claims(name: string): boolean {
    return this.catalog.has(name);
  }

  byNameOf(name: string): OriginFile | undefined {
    return this.catalog.byNameOf(name);
  }

  files(): OriginFile[] {
    return this.catalog.files();
  }

  setChunkSize(streamId: string, chunkSize: number): void {
    this.catalog.setChunkSize(streamId, chunkSize);
  }

  rejected(file: Published): void {
    if (!("url" in file)) return;
    // e.g. the origin changed while it was hashed: the next poll publishes what it serves then
    this.catalog.forget(file.streamId);
    this.o.log.info({ name: file.name, url: file.url }, "origin will be published again at the next poll");
  }

  /** Hands changes to `sink` from now on, polling every `pollMs`. */
  start(sink: PublishSink): void {
    this.sink = sink;
    this.timer = setInterval(() => void this.check(), this.o.pollMs ?? 30_000);
    this.timer.unref();
  }

  /** Stops polling; resolves once a check under way is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.polling;
  }

  /** Checks the origins (all, or those named); one check at a time, what is asked meanwhile runs right after it. */
  private check(names?: ReadonlySet<string>): Promise<void> {
    if (this.stopped || !this.sink) return Promise.resolve();
    if (this.polling) {
      if (!names || this.again === "all") this.again = "all";
      else this.again = new Set([...(this.again ?? []), ...names]);
      return this.polling;
    }
    this.polling = this.catalog
      .check(names)
      .then(
        (c) => this.apply(c),
        (err: unknown) => this.o.log.error({ err }, "origin check failed"),
      )
      .finally(() => {
        this.polling = undefined;
        const again = this.again;
        this.again = undefined;
        if (again) void this.check(again === "all" ? undefined : again);
      });
    return this.polling;
  }

  private apply({ added, removed, replaced }: OriginCheck): void {
    const log = this.o.log;
    for (const f of replaced)
      log.info({ name: f.name, oldStreamId: f.streamId, url: f.url }, "origin changed, publishing new version");
    const sink = this.sink!;
    for (const f of removed) sink.unpublish(f.name);
    for (const f of added) {
      log.info({ name: f.name, size: f.size, streamId: f.streamId, url: f.url }, "publishing origin");
      sink.publish(f);
    }
  }
}
