import {
  RateLimiter,
  startDataPlane,
  type ChunkSource,
  type DataPlaneIdentity,
  type RunningDataPlane,
} from "@distribustream/data-plane";
import type { Logger, Registry } from "@distribustream/runtime";

export interface ServingOptions {
  /** Bind address. */
  host: string;
  /** 0 = any free port. */
  port: number;
  /** What is served: a stream by the source that knows it. */
  sources: readonly ChunkSource[];
  /** This peer's id and the ticket keys to accept, once the tracker welcomed it. */
  identity: () => DataPlaneIdentity | undefined;
  /** Caps the bytes per second uploaded, over all fetchers (undefined: no cap). */
  maxUploadRate?: number | undefined;
  log: Logger;
  registry: Registry;
}

/** The seeder's data plane: serves the chunks of every source to the viewers the tracker sends. */
export function startServing(o: ServingOptions): Promise<RunningDataPlane> {
  return startDataPlane({
    host: o.host,
    port: o.port,
    source: eitherSource(o.sources),
    identity: o.identity,
    log: o.log,
    registry: o.registry,
    uploadLimiter: o.maxUploadRate ? new RateLimiter(o.maxUploadRate) : undefined,
  });
}

/** One data-plane source over several: a stream is served by the part that knows it. */
function eitherSource(list: readonly ChunkSource[]): ChunkSource {
  const owner = (streamId: string) => list.find((p) => p.layout(streamId) !== undefined);
  return {
    layout: (streamId) => owner(streamId)?.layout(streamId),
    holds: (streamId, range) => owner(streamId)?.holds(streamId, range) ?? false,
    read: (streamId, start, end) => (owner(streamId) ?? list[0]!).read(streamId, start, end),
  };
}
