export { startTracker, type TrackerOptions, type RunningTracker } from "./tracker.js";
export { MAX_PEER_MESSAGE_BYTES, TRACKER_SERVICE_NAME } from "./server.js";
export { DEFAULT_PEER_LIMITS, PeerLimits, limitKey, peerLimits, type PeerLimitOptions } from "./limits.js";
export {
  TicketKeys,
  TicketKeyFileError,
  parseTicketKeyFile,
  readTicketKeyFile,
  type TicketKeysOptions,
} from "./ticketKeys.js";
export { schedule, wantWindow, limitsFor, DEFAULT_LIMITS, type SchedulerLimits, type Assignment } from "./scheduler.js";
export {
  SeederTokens,
  TokenFileError,
  issueToken,
  parseToken,
  readTokenFile,
  verifyToken,
  writeTokenFile,
  type TokenEntry,
} from "./seederAuth.js";
