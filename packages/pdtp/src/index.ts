export * from "./gen/pdtp/v1/common.js";
export * from "./gen/pdtp/v1/tracker.js";
export * from "./gen/pdtp/v1/checksum.js";
export * from "./chunks.js";
export * from "./rangeSet.js";
export * from "./keys.js";
export * from "./manifest.js";
export * from "./ticket.js";
export * from "./dataPlane.js";
export * from "./url.js";
export * from "./wire.js";
export * from "./origin.js";
export * from "./live.js";
export {
  RANDOM_ACCESS_SPAN,
  RandomAccessScanner,
  startsAtRandomAccess,
  TS_PACKET_SIZE,
  type RandomAccessPoint,
} from "./randomAccess.js";
