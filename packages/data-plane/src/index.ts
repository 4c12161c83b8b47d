export {
  refusalStatusOf,
  type ChunkSource,
  type DataPlaneIdentity,
  type LiveStreamLayout,
  type StreamLayout,
} from "./source.js";
export { startDataPlane, type DataPlaneOptions, type RunningDataPlane } from "./server.js";
export {
  fetchChunks,
  FetchError,
  fetchLiveChunks,
  keepAliveAgent,
  type FetchOptions,
  type FetchRequestOptions,
  type LiveFetchOptions,
} from "./fetch.js";
export { FileRangeReadable, READ_PIECE_BYTES, type RangeFile } from "./fileRange.js";
export { DataPlaneAgent, type DataPlaneAgentOptions } from "./agent.js";
export { parseRate, RateLimiter, rateSetting } from "./rateLimiter.js";
export {
  confirmOrigin,
  conditionalHeaders,
  OriginError,
  originAgents,
  probeOrigin,
  readOrigin,
  type OriginAgents,
  type OriginRequestOptions,
  type OriginVersion,
} from "./origin.js";
export { LiveWindow } from "./liveWindow.js";
export { originPolicy, type OriginPolicy } from "./originPolicy.js";
