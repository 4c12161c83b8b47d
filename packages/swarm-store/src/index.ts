export * from "./store.js";
export * from "./fleet.js";
export { MemorySwarmStore } from "./memory.js";
export { RedisSwarmStore, type RedisClient, type RedisSwarmStoreOptions } from "./redis.js";
export {
  openSwarmStore,
  parseStoreUrl,
  redisClientFor,
  redactUrl,
  type StoreUrl,
  type SwarmStoreOptions,
} from "./open.js";
