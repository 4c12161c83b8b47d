export * from "./store.js";
export { MemorySwarmStore } from "./memory.js";
export { swarmStoreContract } from "./contract.js";
