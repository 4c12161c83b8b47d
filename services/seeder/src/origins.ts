import { Readable } from "node:stream";
import {
  OriginError,
  probeOrigin,
  readOrigin,
  type ChunkSource,
  type OriginAgents,
  type OriginVersion,
  type StreamLayout,
} from "@distribustream/data-plane";
import { chunkCount, originVersion, rangeWithin, streamIdFor, type ChunkRange } from "@distribustream/pdtp";
import type { Logger } from "@distribustream/runtime";
import type { OriginSpec } from "./originList.js";

/** One version of one origin, as published. */
export interface OriginFile extends OriginVersion {
  name: string;
  /** originVersion(url, validator): a new validator is a new version. */
  version: number;
  streamId: string;
  /** Set from the tracker's PublishResult; 0 until then (the stream is not served before). */
  chunkSize: number;
  chunkCount: number;
}

/** What a check of the origins changed. */
export interface OriginCheck {
  /** Origins to publish: new ones and new versions of changed ones. */
  added: OriginFile[];
  /** Origins gone (404/410): to unpublish. */
  removed: OriginFile[];
  /** Old versions replaced by an entry of `added`: no longer served. */
  replaced: OriginFile[];
}

export interface OriginCatalogOptions {
  log: Logger;
  agents: OriginAgents;
  /** Longest wait for the origin's next bytes (default 15 s). */
  timeoutMs?: number;
  /** A read found that an origin changed before its poll did: check it again soon. */
  onChanged?: (name: string) => void;
}

/**
 * The HTTP(S) origins a seeder relays, and the data-plane source serving
 * them. Each check probes every origin (a ranged GET of its first byte) and
 * publishes what changed; a version is served only while it is the current
 * one, and every read is a range request conditional on its validator, so
 * that the seeder never sends bytes of another version: once the origin
 * changed, the old stream is unknown here (404), and a read that raced the
 * change fails instead of sending new bytes.
 */
export class OriginCatalog implements ChunkSource {
  private readonly byName = new Map<string, OriginFile>();
  private readonly byStream = new Map<string, OriginFile>();
  /** Last problem logged per origin name, so a lasting one is logged once. */
  private readonly problems = new Map<string, string>();

  constructor(
    private readonly specs: readonly OriginSpec[],
    private readonly opts: OriginCatalogOptions,
  ) {}

  /** True when `name` is an origin's stream name (it hides a media file of that name). */
  has(name: string): boolean {
    return this.specs.some((s) => s.name === name);
  }

  get(streamId: string): OriginFile | undefined {
    return this.byStream.get(streamId);
  }

  byNameOf(name: string): OriginFile | undefined {
    return this.byName.get(name);
  }

  files(): OriginFile[] {
    return [...this.byName.values()];
  }

  /** Records the chunk size the tracker gave a published stream. */
  setChunkSize(streamId: string, chunkSize: number): void {
    const f = this.byStream.get(streamId);
    if (!f) return;
    f.chunkSize = chunkSize;
    f.chunkCount = chunkCount(f.size, chunkSize);
  }

  /** Forgets a published version (its publish was rejected): the next check publishes the origin afresh. */
  forget(streamId: string): void {
    const f = this.byStream.get(streamId);
    if (f) this.drop(f);
  }

  /** Probes the origins (all, or those named) once, in parallel, and updates what is published. */
  async check(names?: ReadonlySet<string>): Promise<OriginCheck> {
    const result: OriginCheck = { added: [], removed: [], replaced: [] };
    const specs = this.specs.filter((s) => !names || names.has(s.name));
    await Promise.all(specs.map((s) => this.checkOne(s, result)));
    return result;
  }

  private async checkOne(spec: OriginSpec, result: OriginCheck): Promise<void> {
    const current = this.byName.get(spec.name);
    let now: OriginVersion;
    try {
      now = await probeOrigin(spec.url, { agents: this.opts.agents, timeoutMs: this.opts.timeoutMs ?? 15_000 });
    } catch (err) {
      const e = err instanceof OriginError ? err : new OriginError("failed", (err as Error).message);
      if (e.kind === "gone" && current) {
        this.drop(current);
        result.removed.push(current);
      }
      const what = current
        ? e.kind === "gone"
          ? "origin gone, unpublishing"
          : "origin check failed, still serving the version published"
        : "origin not published";
      this.problem(spec, `${what}: ${e.message}`, { name: spec.name, url: spec.url, kind: e.kind, reason: e.message });
      return;
    }
    this.problems.delete(spec.name);
    if (current && current.size === now.size && current.etag === now.etag && current.lastModified === now.lastModified)
      return;
    const validator = now.etag ? { etag: now.etag } : { lastModified: now.lastModified };
    const version = originVersion(spec.url, validator);
    const file: OriginFile = {
      url: spec.url,
      size: now.size,
      ...validator,
      name: spec.name,
      version,
      streamId: streamIdFor(spec.name, now.size, version),
      chunkSize: 0,
      chunkCount: 0,
    };
    if (current) {
      this.drop(current);
      result.replaced.push(current);
    }
    this.byName.set(file.name, file);
    this.byStream.set(file.streamId, file);
    result.added.push(file);
  }

  private drop(f: OriginFile): void {
    this.byStream.delete(f.streamId);
    if (this.byName.get(f.name) === f) this.byName.delete(f.name);
  }

  private problem(spec: OriginSpec, text: string, fields: object): void {
    if (this.problems.get(spec.name) === text) return;
    this.problems.set(spec.name, text);
    this.opts.log.warn(fields, text.slice(0, text.indexOf(":")));
  }

  // ---- ChunkSource ----

  layout(streamId: string): StreamLayout | undefined {
    const f = this.byStream.get(streamId);
    if (!f || f.chunkSize === 0) return undefined;
    return { size: f.size, chunkSize: f.chunkSize, chunkCount: f.chunkCount, name: f.name };
  }

  holds(streamId: string, range: ChunkRange): boolean {
    const f = this.byStream.get(streamId);
    return f !== undefined && f.chunkSize > 0 && rangeWithin(range, f.chunkCount);
  }

  read(streamId: string, start: number, end: number): Readable {
    const f = this.byStream.get(streamId);
    if (!f) return Readable.from([]).destroy(new Error(`stream ${streamId} is no longer published`));
    const r = readOrigin(f, start, end, { agents: this.opts.agents, timeoutMs: this.opts.timeoutMs ?? 15_000 });
    r.once("error", (err) => {
      if (err instanceof OriginError && err.kind === "changed" && this.byStream.get(streamId) === f) {
        this.opts.onChanged?.(f.name);
      }
    });
    return r;
  }
}
