import { Signer } from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { startTracker, type RunningTracker, type TrackerOptions } from "../tracker.js";

/**
 * A tracker for protocol tests, on 127.0.0.1 (any free port), giving new streams `chunkSize`:
 * a fresh memory store, ticket key and metrics registry, silent logs, and no connect-back probe
 * (the test peers are protocol doubles with no data plane, which the probe would never find).
 * `overrides` replace any of it.
 */
export function startProtocolTracker(
  checksumPort: number,
  chunkSize: number,
  overrides: Partial<TrackerOptions> = {},
): Promise<RunningTracker> {
  const defaults: TrackerOptions = {
    peerProbe: false,
    host: "127.0.0.1",
    port: 0,
    checksum: `127.0.0.1:${checksumPort}`,
    store: new MemorySwarmStore(),
    chunkSize,
    ticketSigner: Signer.generate(),
    log: createLogger("tracker-test", { level: "silent" }),
    registry: new Registry(),
  };
  return startTracker(Object.assign(defaults, overrides));
}
