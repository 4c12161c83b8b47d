import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { fetchChunks, fetchLiveChunks } from "@distribustream/data-plane";
import {
  issueTicket,
  LiveVerifier,
  sha256,
  signLiveAttestation,
  Signer,
  type ChunkRange,
  type LiveChunkClaim,
  type SignedLiveAttestation,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { startSeeder, type RunningSeeder } from "./index.js";
import { SequenceState } from "./live/sequenceState.js";
import { TestTracker } from "./testing/index.js";

const log = createLogger("test", { level: "silent" });
const trackerKey = Signer.generate();
const networkKey = Signer.generate();
const viewerKey = Signer.generate();
const hex = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const claimsOf = (t: TestTracker, streamId: string): LiveChunkClaim[] =>
  t.liveChunks.filter((m) => m.streamId === streamId).flatMap((m) => m.chunks);
const ticket = (streamId: string, range: ChunkRange, fetcherId: string, serverId: string, fetcherKey?: Signer) =>
  issueTicket(
    {
      streamId,
      range,
      fetcherId,
      serverId,
      expiresMs: Date.now() + 60_000,
      ...(fetcherKey ? { fetcherKey: fetcherKey.publicKey.ed25519 } : {}),
    },
    trackerKey,
  );

/** What the checksum service does for a claimed range: reads it raw from the seeder (ticket for "checksum"), and attests it. */
async function attestRaw(
  port: number,
  serverId: string,
  streamId: string,
  claims: readonly LiveChunkClaim[],
): Promise<{ bytes: Buffer[]; attestations: SignedLiveAttestation[] }> {
  const range = { first: claims[0]!.seq, last: claims[claims.length - 1]!.seq };
  const bytes: Buffer[] = [];
  await fetchChunks({
    host: "127.0.0.1",
    port,
    streamId,
    range,
    ticket: ticket(streamId, range, "checksum", serverId),
    layout: { lengths: claims.map((c) => c.length) },
    onChunk: (_i, data) => void bytes.push(Buffer.from(data)),
  });
  const attestations = claims.map((c, i) =>
    signLiveAttestation(
      {
        streamId,
        seq: c.seq,
        timestampMs: c.timestampMs,
        length: c.length,
        sha256: sha256(bytes[i]!),
        randomAccess: c.randomAccess,
      },
      networkKey,
    ),
  );
  return { bytes, attestations };
}

/** A viewer's /live/ fetch of `range`, every chunk checked by a LiveVerifier of the stream. */
async function fetchVerified(port: number, serverId: string, streamId: string, range: ChunkRange, firstSeq: number) {
  const verifier = new LiveVerifier(
    {
      streamId,
      name: "cam",
      maxChunkBytes: 4096,
      maxChunkMs: 10_000,
      bitrate: 0,
      windowChunks: 16,
      firstSeq,
      startMs: Date.now(),
      attestationKeyId: networkKey.keyId,
      version: 1,
    },
    { trusted: [networkKey.publicKey] },
  );
  const opened = new Map<number, ReturnType<LiveVerifier["open"]>>();
  const got: Buffer[] = [];
  await fetchLiveChunks({
    host: "127.0.0.1",
    port,
    streamId,
    range,
    sessionKey: viewerKey,
    ticket: ticket(streamId, range, "viewer", serverId, viewerKey),
    maxChunkBytes: 4096,
    onAttestation: (seq, signed) => {
      const att = verifier.open(signed, seq);
      opened.set(seq, att);
      return att.length;
    },
    onChunk: (seq, data) => {
      verifier.accept(opened.get(seq)!, data);
      got.push(Buffer.from(data));
    },
  });
  return Buffer.concat(got);
}

async function metric(registry: Registry, name: string, stream: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values as { value: number; labels: Record<string, string> }[] | undefined)?.find(
    (v) => v.labels.stream === stream,
  )?.value as number;
}

describe("seeder live broadcasts", () => {
  let root: string;
  let media: string;
  let stateDir: string;
  const policy = { maxChunkBytes: 4096, maxChunkMs: 10_000 };
  const first = 2 ** 32 - 2; // the numbers cross 2^32
  const clip = randomBytes(4096 * 5 + 100);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "seeder-live-"));
    media = join(root, "media");
    stateDir = join(root, "state");
    await mkdir(media);
    for (const name of ["cam", "a.bin"]) {
      await writeFile(join(media, name), randomBytes(1000));
      await utimes(join(media, name), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    }
    await writeFile(join(root, "clip.ts"), clip);
    // a broadcast that ran before: it continues at the saved number
    new SequenceState(stateDir, "cam").save(first);
  });
  after(() => rm(root, { recursive: true, force: true }));

  const startCam = (tracker: TestTracker, registry: Registry) =>
    startSeeder({
      tracker: `127.0.0.1:${tracker.port}`,
      media,
      live: [
        {
          name: "cam",
          input: { kind: "file", path: join(root, "clip.ts"), bitrate: 8_000_000, loop: false },
          policy,
          windowChunks: 16,
        },
      ],
      stateDir,
      dataHost: "127.0.0.1",
      dataPort: 0,
      log,
      registry,
    });

  it("publishes with its live fields, claims in order, serves raw and attested chunks, unpublishes at the end, and a restart continues the numbers", async () => {
    const tracker = new TestTracker(trackerKey);
    await tracker.start();
    const registry = new Registry();
    let seeder: RunningSeeder | undefined;
    try {
      seeder = await startCam(tracker, registry);
      const t0 = Date.now();
      const streamId = await seeder.whenReady("cam");
      assert.equal(streamId, tracker.liveStreamId("cam"));
      await seeder.whenReady("a.bin");
      const cams = tracker.publishes.filter((p) => p.name === "cam");
      assert.equal(cams.length, 1, "the live name hides the media file cam");
      assert.deepEqual(
        { size: cams[0]!.size, version: cams[0]!.version, live: cams[0]!.live },
        {
          size: 0,
          version: 0,
          live: { maxChunkBytes: 4096, maxChunkMs: 10_000, bitrate: 8_000_000, windowChunks: 16, nextSeq: first },
        },
      );

      await tracker.until(() => claimsOf(tracker, streamId).length === 6, "6 claims");
      const claims = claimsOf(tracker, streamId);
      assert.deepEqual(
        claims.map((c) => [c.seq, c.length]),
        [0, 1, 2, 3, 4, 5].map((i) => [first + i, i < 5 ? 4096 : 100]),
      );
      for (let i = 0; i < claims.length; i++) {
        const ts = claims[i]!.timestampMs;
        assert.ok(ts >= t0 && ts <= Date.now(), `chunk ${i} timestamped when it was cut`);
        if (i > 0) assert.ok(ts >= claims[i - 1]!.timestampMs, "timestamps do not go back");
      }
      assert.ok(tracker.liveChunks.length < claims.length, "chunks cut together are claimed in one message");
      assert.ok(!tracker.unpublishes.includes("cam"), "not ended before its last chunks are attested");

      // the checksum service's read: raw bytes on /chunks/ with the claimed lengths
      const peerId = tracker.peerIds[0]!;
      const { bytes, attestations } = await attestRaw(seeder.dataPort, peerId, streamId, claims);
      assert.equal(hex(Buffer.concat(bytes)), hex(clip));
      tracker.attestLive(streamId, attestations);
      await tracker.until(() => tracker.unpublishes.includes("cam"), "the Unpublish that ends the broadcast");

      // after the end the window is still served, framed with the attestations
      const all = { first, last: first + 5 };
      assert.equal(hex(await fetchVerified(seeder.dataPort, peerId, streamId, all, first)), hex(clip));
      assert.equal(await metric(registry, "pdtp_seeder_live_chunks_total", "cam"), 6);
      assert.equal(await metric(registry, "pdtp_seeder_live_bytes_total", "cam"), clip.length);
      assert.equal(await metric(registry, "pdtp_seeder_live_attested_chunks_total", "cam"), 6);
      assert.ok(!tracker.unpublishes.includes("a.bin"), "the files stay published");
    } finally {
      await seeder?.drain();
      tracker.stop();
    }

    // restarted on a tracker that knows nothing of it: its own next number
    const fresh = new TestTracker(trackerKey);
    await fresh.start();
    try {
      seeder = await startCam(fresh, new Registry());
      const streamId = await seeder.whenReady("cam");
      assert.equal(fresh.publishes.find((p) => p.name === "cam")!.live!.nextSeq, first + 6);
      await fresh.until(() => claimsOf(fresh, streamId).length === 6, "6 claims");
      assert.equal(claimsOf(fresh, streamId)[0]!.seq, first + 6);
    } finally {
      await seeder?.drain();
      fresh.stop();
    }
  });

  it("after a reconnect, claims again in order what was cut but not attested, from the tracker's edge + 1", async () => {
    const tracker = new TestTracker(trackerKey);
    await tracker.start();
    const input = new PassThrough();
    const dir = join(root, "state-resync");
    let seeder: RunningSeeder | undefined;
    try {
      seeder = await startSeeder({
        tracker: `127.0.0.1:${tracker.port}`,
        live: [{ name: "pipe", input: { kind: "stream", stream: input, label: "test pipe" }, policy, bitrate: 64_000 }],
        stateDir: dir,
        dataHost: "127.0.0.1",
        dataPort: 0,
        log,
        registry: new Registry(),
      });
      const streamId = await seeder.whenReady("pipe");
      assert.equal(tracker.publishes[0]!.live!.bitrate, 64_000, "a pipe's nominal bitrate is published");
      assert.equal(tracker.publishes[0]!.live!.windowChunks, 150, "the default window");
      const data = randomBytes(4096 * 4);
      input.write(data.subarray(0, 4096 * 3));
      await tracker.until(() => claimsOf(tracker, streamId).length === 3, "3 claims");
      const claims = claimsOf(tracker, streamId);
      assert.equal(claims[0]!.seq, 0);
      // only chunk 0 is attested before the session is lost
      const { attestations } = await attestRaw(seeder.dataPort, tracker.peerIds[0]!, streamId, claims.slice(0, 1));
      tracker.attestLive(streamId, attestations);
      await new Promise((r) => setTimeout(r, 100));
      tracker.liveChunks = [];
      tracker.kickAll();
      await tracker.until(() => tracker.publishes.length === 2, "the publish of the new session");
      assert.equal(tracker.publishes[1]!.live!.nextSeq, 1, "the first chunk not attested");
      await tracker.until(() => claimsOf(tracker, streamId).length === 2, "claims again");
      assert.deepEqual(
        claimsOf(tracker, streamId).map((c) => [c.seq, c.length, c.timestampMs]),
        claims.slice(1).map((c) => [c.seq, c.length, c.timestampMs]),
      );
      input.end(data.subarray(4096 * 3));
      await tracker.until(() => claimsOf(tracker, streamId).length === 3, "the last chunk");
      assert.equal(claimsOf(tracker, streamId)[2]!.seq, 3);
    } finally {
      await seeder?.drain();
      tracker.stop();
    }
  });

  it("on a tracker that does not take live broadcasts, logs the refusal and keeps serving its files", async () => {
    const tracker = new TestTracker(trackerKey, undefined, { live: "refuse" });
    await tracker.start();
    let seeder: RunningSeeder | undefined;
    try {
      seeder = await startSeeder({
        tracker: `127.0.0.1:${tracker.port}`,
        media,
        live: [{ name: "demo-live", input: { kind: "stream", stream: new PassThrough(), label: "test pipe" } }],
        stateDir: join(root, "state-refused"),
        dataHost: "127.0.0.1",
        dataPort: 0,
        log,
        registry: new Registry(),
      });
      await assert.rejects(
        seeder.whenReady("demo-live"),
        /tracker rejected demo-live: this tracker does not take live/,
      );
      await seeder.whenReady("a.bin");
      await seeder.whenReady("cam"); // no live of that name here: the media file is published
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(tracker.publishes.filter((p) => p.live).length, 1, "not published again");
      assert.equal(tracker.hellos.length, 2, "one reconnect, and the session stays up");
      await assert.rejects(seeder.whenReady("demo-live"), /does not take live/);
    } finally {
      await seeder?.drain();
      tracker.stop();
    }
  });
});
