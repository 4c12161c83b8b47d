import { connect, createServer, type Socket } from "node:net";

/** A TCP load balancer for tests: what a Kubernetes Service does in front of tracker replicas. */
export interface TcpProxy {
  port: number;
  /** Connections accepted, per backend index (skipped backends not counted). */
  accepted: number[];
  /** Closes the listener and every open connection. */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 (free port; `listen` chooses another address and
 * port, e.g. a seeder's advertised one) and forwards each accepted connection to
 * the next backend in round-robin order. A backend whose connect fails is
 * skipped for that connection (the next one is tried); when none answers the
 * client socket is destroyed. When either side of a forwarded connection ends
 * or fails, both are destroyed, so a client of a backend that died sees its
 * connection drop (as it would behind a real load balancer).
 *
 * With `localAddress` the connections to the backends come from that
 * address, e.g. 127.0.0.2 (Linux routes all of 127/8 to lo): a client
 * behind the proxy looks to the backend like another machine, which
 * grpc-js cannot do by itself.
 */
export async function startTcpProxy(
  backends: { host: string; port: number }[],
  opts: { localAddress?: string; listen?: { host: string; port: number } } = {},
): Promise<TcpProxy> {
  if (backends.length === 0) throw new Error("startTcpProxy: no backends");
  const open = new Set<Socket>();
  const accepted = backends.map(() => 0);
  let next = 0;

  const track = (s: Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
  };

  const server = createServer((client) => {
    track(client);
    client.pause();
    client.on("error", () => client.destroy());
    let tries = 0;
    const attempt = () => {
      if (client.destroyed) return;
      if (tries++ >= backends.length) {
        client.destroy();
        return;
      }
      const index = next;
      next = (next + 1) % backends.length;
      const backend = connect({
        ...backends[index]!,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      });
      track(backend);
      let connected = false;
      backend.once("connect", () => {
        connected = true;
        accepted[index]!++;
        if (client.destroyed) {
          backend.destroy();
          return;
        }
        const both = () => {
          client.destroy();
          backend.destroy();
        };
        backend.on("close", both);
        client.on("close", both);
        backend.pipe(client);
        client.pipe(backend);
        client.resume();
      });
      backend.on("error", () => {
        backend.destroy();
        if (!connected) attempt();
      });
    };
    attempt();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.listen?.port ?? 0, opts.listen?.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    port,
    accepted,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
}
