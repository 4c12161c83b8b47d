import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, test } from "node:test";
import { fetchLiveChunks, startDataPlane, type ChunkSource } from "@distribustream/data-plane";
import {
  issueTicket,
  LiveVerifier,
  sha256,
  signLiveAttestation,
  Signer,
  type LiveChunkClaim,
  type LiveDescriptorBody,
} from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { LiveBroadcast } from "./broadcast.js";
import { SequenceState } from "./sequenceState.js";

const log = createLogger("test", { level: "silent" });
const network = Signer.generate();
const trackerKey = Signer.generate();
const viewerKey = Signer.generate();

describe("a live broadcast at its seeder", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-broadcast-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("cuts, claims, serves attested frames a viewer verifies, and a restart continues the numbers", async () => {
    const input = new PassThrough();
    const claims: LiveChunkClaim[] = [];
    let ended: ((last: number | undefined) => void) | undefined;
    const end = new Promise<number | undefined>((r) => (ended = r));
    const b = new LiveBroadcast({
      name: "cam",
      input,
      policy: { maxChunkBytes: 4096, maxChunkMs: 10_000 },
      windowChunks: 16,
      state: new SequenceState(dir, "cam"),
      onChunks: (c) => claims.push(...c),
      onEnd: (last) => ended!(last),
      log,
    });
    assert.equal(b.savedNextSeq(), 0);
    const first = 2 ** 32 - 2;
    b.start(first);
    const media = randomBytes(4096 * 5 + 100);
    input.end(media);
    assert.equal(await end, first + 5, "6 chunks: 5 full, 1 short");
    assert.deepEqual(
      claims.map((c) => [c.seq, c.length]),
      [0, 1, 2, 3, 4, 5].map((i) => [first + i, i < 5 ? 4096 : 100]),
    );
    // the tracker sends the checksum service's attestations back
    b.attested(
      claims.map((c, i) =>
        signLiveAttestation(
          {
            streamId: "live-cam",
            seq: c.seq,
            timestampMs: c.timestampMs,
            length: c.length,
            sha256: sha256(media.subarray(i * 4096, i * 4096 + c.length)),
            randomAccess: c.randomAccess,
          },
          network,
        ),
      ),
    );
    const layout = b.layout();
    const source: ChunkSource = {
      layout: () => layout,
      holds: (_id, r) => b.window.holds(r),
      read: (_id, s, e) => b.window.read(s, e),
    };
    const plane = await startDataPlane({
      host: "127.0.0.1",
      port: 0,
      source,
      identity: () => ({ peerId: "seeder", ticketKeys: [trackerKey.publicKey] }),
      log,
    });
    try {
      const descriptor: LiveDescriptorBody = {
        streamId: "live-cam",
        name: "cam",
        maxChunkBytes: 4096,
        maxChunkMs: 200,
        bitrate: 0,
        windowChunks: 16,
        firstSeq: first,
        startMs: Date.now(),
        attestationKeyId: network.keyId,
        version: 1,
      };
      const v = new LiveVerifier(descriptor, { trusted: [network.publicKey] });
      const range = { first, last: first + 5 };
      const got: Buffer[] = [];
      const atts = new Map<number, ReturnType<LiveVerifier["open"]>>();
      await fetchLiveChunks({
        host: "127.0.0.1",
        port: plane.port,
        streamId: "live-cam",
        range,
        sessionKey: viewerKey,
        ticket: issueTicket(
          {
            streamId: "live-cam",
            range,
            fetcherId: "viewer",
            serverId: "seeder",
            expiresMs: Date.now() + 60_000,
            fetcherKey: viewerKey.publicKey.ed25519,
          },
          trackerKey,
        ),
        maxChunkBytes: 4096,
        onAttestation: (seq, signed) => {
          const att = v.open(signed, seq);
          atts.set(seq, att);
          return att.length;
        },
        onChunk: (seq, data) => {
          v.accept(atts.get(seq)!, data);
          got.push(Buffer.from(data));
        },
      });
      const hex = (x: Buffer) => createHash("sha256").update(x).digest("hex");
      assert.equal(hex(Buffer.concat(got)), hex(media));
    } finally {
      await plane.close();
    }
    // a restart of the same broadcast continues after the last number used
    assert.equal(new SequenceState(dir, "cam").load(0), first + 6);
  });
});
