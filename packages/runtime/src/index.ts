export * from "./byteCache.js";
export * from "./config.js";
export * from "./errors.js";
export * from "./health.js";
export * from "./log.js";
export * from "./metrics.js";
export * from "./shutdown.js";
export * from "./tls.js";
