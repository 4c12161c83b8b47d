export {
  TrackerLink,
  type Attempts,
  type LinkPolicy,
  type Retry,
  type TrackerLinkOptions,
  type Verdict,
} from "./link.js";
export { TrackerSession, KEEPALIVE_OPTIONS, type SessionEnd } from "./session.js";
export { backoffDelay, type Backoff } from "./backoff.js";
export { speaksTlsAt, tlsProblem, type TlsProblem } from "./tlsProblem.js";
