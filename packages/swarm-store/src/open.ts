import { Cluster, Redis, type RedisOptions } from "ioredis";
import { MemorySwarmStore } from "./memory.js";
import { RedisSwarmStore, type RedisSwarmStoreOptions } from "./redis.js";
import type { SwarmStore } from "./store.js";

/**
 * Opens the swarm store a URL names:
 *
 * - none: a `MemorySwarmStore`, which serves exactly one tracker process;
 * - `redis://[[user]:password@]host[:port][/db]`: Redis standalone;
 * - `rediss://…`: the same over TLS;
 * - `redis+cluster://[[user]:password@]host1:port1,host2:port2,…` (or
 *   `rediss+cluster://…` for TLS): a Redis Cluster reached through these seed
 *   nodes (any subset of the masters; the rest is discovered).
 *
 * The Redis client connects in the background and retries with backoff;
 * commands queue until it is connected.
 */
export async function openSwarmStore(url?: string, options: RedisSwarmStoreOptions = {}): Promise<SwarmStore> {
  if (url === undefined || url === "") return new MemorySwarmStore();
  return new RedisSwarmStore(redisClientFor(url), options);
}

/** The ioredis client (Redis or Cluster) for a store URL; see `openSwarmStore`. */
export function redisClientFor(url: string): Redis | Cluster {
  const m = /^(rediss?)(\+cluster)?:\/\/(.*)$/.exec(url);
  if (!m)
    throw new Error(
      `swarm store URL ${redactUrl(url)} must start with redis://, rediss://, redis+cluster:// or rediss+cluster://`,
    );
  const [, scheme, cluster, rest] = m;
  if (!cluster) return new Redis(url);
  const at = rest!.lastIndexOf("@");
  const auth = at >= 0 ? rest!.slice(0, at) : "";
  const hosts = (at >= 0 ? rest!.slice(at + 1) : rest!).replace(/\/.*$/, "");
  const colon = auth.indexOf(":");
  const username = colon >= 0 ? decodeURIComponent(auth.slice(0, colon)) : "";
  const password = colon >= 0 ? decodeURIComponent(auth.slice(colon + 1)) : decodeURIComponent(auth);
  const nodes = hosts.split(",").map((hp) => {
    const p = new URL(`redis://${hp}`);
    if (!p.hostname) throw new Error(`swarm store URL ${redactUrl(url)}: bad node ${JSON.stringify(hp)}`);
    return { host: p.hostname.replace(/^\[(.*)\]$/, "$1"), port: p.port ? Number(p.port) : 6379 };
  });
  const redisOptions: RedisOptions = {};
  if (username) redisOptions.username = username;
  if (password) redisOptions.password = password;
  if (scheme === "rediss") redisOptions.tls = {};
  // sharded pub/sub: each stream's event channel lives on its stream's shard
  return new Cluster(nodes, { redisOptions, shardedSubscribers: true });
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*):[^@/]*@/, "//$1:***@");
}
