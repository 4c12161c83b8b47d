import { after, before } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { Signer, TrackerClient } from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import { startTracker, type RunningTracker, type TrackerOptions } from "../tracker.js";
import { startChecksumDouble } from "./checksumDouble.js";
import { TestPeer } from "./testPeer.js";

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

/**
 * A protocol tracker (startProtocolTracker) with a checksum double, started before the tests
 * of the describe block that creates it and stopped after them, with the test peers it made
 * cancelled; `peerKey`: the session key of those peers (a new one each by default).
 */
export class ProtocolFixture {
  private parts:
    | { checksum: Awaited<ReturnType<typeof startChecksumDouble>>; tracker: RunningTracker; client: TrackerClient }
    | undefined;
  private readonly peers: TestPeer[] = [];
  private readonly peerKey: Signer | undefined;

  constructor(chunkSize: number, o: { peerKey?: Signer; overrides?: Partial<TrackerOptions> } = {}) {
    before(async () => {
      const checksum = await startChecksumDouble(Signer.generate());
      const tracker = await startProtocolTracker(checksum.port, chunkSize, o.overrides);
      const client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
      this.parts = { checksum, tracker, client };
    });
    after(async () => {
      if (!this.parts) return;
      for (const p of this.peers) p.call.cancel();
      await this.parts.tracker.drain();
      this.parts.client.close();
      this.parts.checksum.close();
    });
    this.peerKey = o.peerKey;
  }

  private started() {
    if (!this.parts) throw new Error("the protocol tracker starts before the tests of its describe block");
    return this.parts;
  }

  get tracker(): RunningTracker {
    return this.started().tracker;
  }

  get client(): TrackerClient {
    return this.started().client;
  }

  get checksum(): Awaited<ReturnType<typeof startChecksumDouble>> {
    return this.started().checksum;
  }

  /** A new peer session on the tracker. */
  peer(): TestPeer {
    const p = new TestPeer(this.client, this.peerKey);
    this.peers.push(p);
    return p;
  }
}
