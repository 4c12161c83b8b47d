import { Cluster, Redis, type RedisOptions } from "ioredis";
import { MemorySwarmStore } from "./memory.js";
import { RedisSwarmStore, type RedisSwarmStoreOptions } from "./redis.js";
import type { SwarmStore } from "./store.js";

/** How `openSwarmStore` connects, beside the store's own options. */
export interface SwarmStoreOptions extends RedisSwarmStoreOptions {
  /**
   * PEM CA certificate(s) that signed the Redis server certificates, for a
   * private CA (rediss:// URLs only). When given, only these are trusted for
   * Redis; without it Node's default roots and NODE_EXTRA_CA_CERTS are.
   */
  tlsCa?: string | Buffer;
  /**
   * Called with a connection error (WRONGPASS, refused, a bad certificate…),
   * its message naming the redacted URL: once per distinct error until the
   * connection is ready again, not at every reconnection attempt. Without it
   * such errors show only in failed commands and `ping`.
   */
  onConnectionError?: (err: Error) => void;
}

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
 * The Redis client connects in the background and retries with backoff (a
 * wrong password too: it is reported to `onConnectionError` and by `ping`);
 * commands queue until it is connected.
 */
export async function openSwarmStore(url?: string, options: SwarmStoreOptions = {}): Promise<SwarmStore> {
  const { tlsCa, onConnectionError, ...storeOptions } = options;
  if (url === undefined || url === "") {
    if (tlsCa !== undefined) throw new Error("a TLS CA is given but no Redis URL: the memory store does not use it");
    return new MemorySwarmStore();
  }
  const client = redisClientFor(url, { tlsCa });
  if (client instanceof Cluster) nameClusterErrorCauses(client);
  if (onConnectionError) reportConnectionErrors(client, redactUrl(url), onConnectionError);
  return new RedisSwarmStore(client, storeOptions);
}

/** What a store URL says, parsed without connecting (see `parseStoreUrl`). */
export type StoreUrl =
  | { cluster: false; url: string; tls: boolean }
  | {
      cluster: true;
      tls: boolean;
      nodes: { host: string; port: number }[];
      username: string;
      password: string;
    };

/**
 * Parses and checks a swarm store URL (see `openSwarmStore`) without
 * connecting: throws an Error naming the redacted URL when it is no store
 * URL, a node of a cluster URL is bad, or a TLS CA is given for a plaintext
 * URL. `redisClientFor` builds its client from this; `--check-config`
 * checks a URL with it alone.
 */
export function parseStoreUrl(url: string, options: Pick<SwarmStoreOptions, "tlsCa"> = {}): StoreUrl {
  const m = /^(rediss?)(\+cluster)?:\/\/(.*)$/.exec(url);
  if (!m)
    throw new Error(
      `swarm store URL ${redactUrl(url)} must start with redis://, rediss://, redis+cluster:// or rediss+cluster://`,
    );
  const [, scheme, cluster, rest] = m;
  if (options.tlsCa !== undefined && scheme !== "rediss")
    throw new Error(`a TLS CA is given but the swarm store URL ${redactUrl(url)} does not use TLS (rediss://)`);
  const tls = scheme === "rediss";
  if (!cluster) {
    let host = "";
    try {
      host = new URL(url).hostname;
    } catch {
      // reported below
    }
    if (!host)
      throw new Error(`swarm store URL ${redactUrl(url)}: expected ${scheme}://[[USER]:PASSWORD@]HOST[:PORT][/DB]`);
    return { cluster: false, url, tls };
  }
  const at = rest!.lastIndexOf("@");
  const auth = at >= 0 ? rest!.slice(0, at) : "";
  const hosts = (at >= 0 ? rest!.slice(at + 1) : rest!).replace(/\/.*$/, "");
  const colon = auth.indexOf(":");
  const username = colon >= 0 ? decodeURIComponent(auth.slice(0, colon)) : "";
  const password = colon >= 0 ? decodeURIComponent(auth.slice(colon + 1)) : decodeURIComponent(auth);
  const nodes = hosts.split(",").map((hp) => {
    let p: URL | undefined;
    try {
      p = new URL(`redis://${hp}`);
    } catch {
      // reported below
    }
    if (!p?.hostname) throw new Error(`swarm store URL ${redactUrl(url)}: bad node ${JSON.stringify(hp)}`);
    return { host: p.hostname.replace(/^\[(.*)\]$/, "$1"), port: p.port ? Number(p.port) : 6379 };
  });
  return { cluster: true, tls, nodes, username, password };
}

/** The ioredis client (Redis or Cluster) for a store URL; see `openSwarmStore`. */
export function redisClientFor(url: string, options: Pick<SwarmStoreOptions, "tlsCa"> = {}): Redis | Cluster {
  const parsed = parseStoreUrl(url, options);
  const tls = options.tlsCa !== undefined ? { ca: options.tlsCa } : {};
  if (!parsed.cluster) return parsed.tls ? new Redis(url, { tls }) : new Redis(url);
  const redisOptions: RedisOptions = {};
  if (parsed.username) redisOptions.username = parsed.username;
  if (parsed.password) redisOptions.password = parsed.password;
  // Every node connection, seeds and discovered ones, is TLS with the same
  // trust. Nodes announce IP addresses, so their certificates must name those
  // IPs (subjectAltName IP:…); Node checks IPs against the certificate itself.
  if (parsed.tls) redisOptions.tls = tls;
  // sharded pub/sub: each stream's event channel lives on its stream's shard
  return new Cluster(parsed.nodes, { redisOptions, shardedSubscribers: true });
}

/**
 * A Cluster that reaches no node says only "Failed to refresh slots cache.";
 * the reason (WRONGPASS…) is in its `lastNodeError`. This puts it in the
 * message, for the store's `ping` and the logs. Registered before the store's
 * own listener, which keeps the message.
 */
function nameClusterErrorCauses(client: Cluster): void {
  client.on("error", (err: Error & { lastNodeError?: Error | null }) => {
    const cause = err.lastNodeError?.message;
    if (cause && !err.message.includes(cause)) err.message = `${err.message} (last node error: ${cause})`;
  });
}

/** Hands each distinct connection error to `report` once, until the client is ready again. */
function reportConnectionErrors(client: Redis | Cluster, redacted: string, report: (err: Error) => void): void {
  let last = "";
  client.on("ready", () => (last = ""));
  client.on("error", (err: Error) => {
    if (err.message === last) return;
    last = err.message;
    report(new Error(`swarm store ${redacted}: ${err.message}`, { cause: err }));
  });
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*):[^@/]*@/, "//$1:***@");
}
