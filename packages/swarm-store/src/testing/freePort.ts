import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** Lowest port tried; below are the well-known and registered services a machine may run. */
const LOWEST = 10_000;

/**
 * The lowest of the ports the kernel hands out for outgoing connections and
 * `listen(0)` (Linux's ip_local_port_range); elsewhere the IANA range's.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    if (Number.isInteger(low)) return low;
  } catch {
    // not Linux
  }
  return 49_152;
}

function listenOnce(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.once("error", () => resolve(undefined));
    s.listen(port, "127.0.0.1", () => {
      const bound = (s.address() as { port: number }).port;
      s.close(() => resolve(bound));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a process that
 * will listen on it. It is picked below the ephemeral range: a port from
 * `listen(0)` comes from the range outgoing connections also take their
 * local ports from, so between the pick and the process's bind any
 * connection on the machine could take it (seen: a seeder's EADDRINUSE
 * while other tests ran). Falls back to `listen(0)` when no port there is
 * free after a few tries.
 */
export async function freePort(): Promise<number> {
  const span = ephemeralLow() - LOWEST;
  for (let i = 0; span > 0 && i < 20; i++) {
    const port = await listenOnce(LOWEST + Math.floor(Math.random() * span));
    if (port !== undefined) return port;
  }
  const port = await listenOnce(0);
  if (port === undefined) throw new Error("no free TCP port on 127.0.0.1");
  return port;
}
