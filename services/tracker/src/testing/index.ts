/** Test helpers of the tracker, for its own tests and other packages' (`@distribustream/tracker/testing`). */
export { TestPeer } from "./testPeer.js";
export { doubleChunkHash, startChecksumDouble } from "./checksumDouble.js";
export { captureLog, type LogLine } from "./captureLog.js";
export { ProtocolFixture, startProtocolTracker } from "./protocolTracker.js";
