export { startChecksum, CHECKSUM_SERVICE_NAME, type ChecksumOptions, type RunningChecksum } from "./checksum.js";
