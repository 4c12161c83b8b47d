import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { issueTicket, Signer, type ChunkRange } from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { fetchChunks, FetchError, startDataPlane, type ChunkSource, type RunningDataPlane } from "./index.js";

// A live stream held from sequence number 2^32 - 2: chunks of the lengths their source cut them at.
const FIRST = 2 ** 32 - 2;
const chunks = [700, 4096, 1, 2500, 4096, 33].map((n) => randomBytes(n));
const LAST = FIRST + chunks.length - 1;
const tracker = Signer.generate();
const fetcher = Signer.generate();
let plane: RunningDataPlane;

/** Offsets of each held chunk in this peer's own numbering of the bytes it holds. */
const offsets: number[] = [];
for (let at = 0, i = 0; i < chunks.length; at += chunks[i]!.length, i++) offsets.push(at);
const all = Buffer.concat(chunks);

const source: ChunkSource = {
  layout: (id) =>
    id === "live-1"
      ? {
          kind: "live",
          name: "cam",
          span: (r) =>
            r.first >= FIRST && r.last <= LAST
              ? { start: offsets[r.first - FIRST]!, end: offsets[r.last - FIRST]! + chunks[r.last - FIRST]!.length }
              : undefined,
        }
      : undefined,
  holds: (_id, r) => r.first >= FIRST && r.last <= LAST,
  read: (_id, start, end) => Readable.from([all.subarray(start, end)]),
};

function fetch(range: ChunkRange, lengths: number[]) {
  const got: [number, Buffer][] = [];
  const ticket = issueTicket(
    {
      streamId: "live-1",
      range,
      fetcherId: "viewer",
      serverId: "seeder",
      expiresMs: Date.now() + 60_000,
      fetcherKey: fetcher.publicKey.ed25519,
    },
    tracker,
  );
  return fetchChunks({
    host: "127.0.0.1",
    port: plane.port,
    streamId: "live-1",
    range,
    ticket,
    sessionKey: fetcher,
    layout: { lengths },
    onChunk: (i, d) => void got.push([i, Buffer.from(d)]),
  }).then(() => got);
}

describe("live chunks on the data plane", () => {
  before(async () => {
    plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source,
      identity: () => ({ peerId: "seeder", ticketKeys: [tracker.publicKey] }),
      log: createLogger("test", { level: "silent" }),
    });
  });
  after(() => plane.close());

  it("a range of chunks of their own lengths arrives whole, one chunk at a time, across 2^32", async () => {
    const got = await fetch(
      { first: FIRST, last: LAST },
      chunks.map((c) => c.length),
    );
    assert.deepEqual(
      got.map(([i]) => i),
      chunks.map((_, k) => FIRST + k),
    );
    for (const [i, d] of got) assert.ok(d.equals(chunks[i - FIRST]!), `chunk ${i}`);
  });

  it("a chunk not held answers 416; lengths that do not fit the range are refused before any request", async () => {
    await assert.rejects(
      fetch({ first: LAST, last: LAST + 1 }, [33, 10]),
      (e) => e instanceof FetchError && e.status === 416,
    );
    await assert.rejects(fetch({ first: FIRST, last: FIRST + 1 }, [700]), /does not fit its 1 chunk lengths/);
    await assert.rejects(
      fetch({ first: FIRST + 1, last: FIRST + 2 }, [4096, 2]),
      (e) => e instanceof FetchError && /content-length/.test(e.message),
      "a peer whose chunk lengths differ from the attested ones is caught",
    );
  });
});
