export * from "./store.js";
export { MemorySwarmStore } from "./memory.js";
