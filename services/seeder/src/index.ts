export {
  CredentialRefusedError,
  defaultStateDir,
  startSeeder,
  SEEDER_AGENT,
  type SeederOptions,
  type RunningSeeder,
} from "./seeder.js";
export { originPolicy, parseRate, rateSetting, type OriginPolicy } from "@distribustream/data-plane";
export {
  checkOriginNames,
  defaultStreamName,
  OriginListError,
  parseOriginEntry,
  parseOriginList,
  type OriginSpec,
} from "./originList.js";
export {
  checkLiveSpecs,
  DEFAULT_LIVE_WINDOW_CHUNKS,
  LiveSpecError,
  parseBitrate,
  parseLiveEntry,
  type LiveEntryDefaults,
  type LiveSpec,
} from "./liveSpec.js";
export { DEFAULT_CHUNK_POLICY, type ChunkPolicy } from "./live/chunker.js";
export { SequenceStateError } from "./live/sequenceState.js";
export type { LiveInput } from "./live/sources.js";
