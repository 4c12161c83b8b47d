import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { fetchChunks } from "@distribustream/data-plane";
import {
  chunkCount,
  DEFAULT_CHUNK_SIZE,
  issueTicket,
  sha256,
  signLiveAttestation,
  Signer,
  type ChunkRange,
  type LiveChunkClaim,
  type PeerMessage,
  type Publish,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { startSeeder, type RunningSeeder } from "./index.js";
import { TestTracker } from "./testing/index.js";

const log = createLogger("test", { level: "silent" });
const trackerKey = Signer.generate();
const networkKey = Signer.generate();
const hex = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const policy = { maxChunkBytes: 4096, maxChunkMs: 10_000 };
const claimsOf = (t: TestTracker, streamId: string): LiveChunkClaim[] =>
  t.liveChunks.filter((m) => m.streamId === streamId).flatMap((m) => m.chunks);
const filePublishes = (t: TestTracker, name: string): Publish[] =>
  t.publishes.filter((p) => p.name === name && !p.live);
const ticket = (streamId: string, range: ChunkRange, serverId: string) =>
  issueTicket({ streamId, range, fetcherId: "checksum", serverId, expiresMs: Date.now() + 60_000 }, trackerKey);

/** The checksum service's part: reads the claimed chunks raw from the seeder, and the tracker sends back their attestations. */
async function attest(t: TestTracker, seeder: RunningSeeder, streamId: string, claims: readonly LiveChunkClaim[]) {
  const range = { first: claims[0]!.seq, last: claims[claims.length - 1]!.seq };
  const bytes: Buffer[] = [];
  await fetchChunks({
    host: "127.0.0.1",
    port: seeder.dataPort,
    streamId,
    range,
    ticket: ticket(streamId, range, t.peerIds.at(-1)!),
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
        randomAccess: false,
      },
      networkKey,
    ),
  );
  t.attestLive(streamId, attestations);
}

/** A published file's bytes, read from the seeder's data plane as the checksum service and viewers do. */
async function fetchFile(t: TestTracker, seeder: RunningSeeder, streamId: string, size: number): Promise<Buffer> {
  const count = chunkCount(size, DEFAULT_CHUNK_SIZE);
  const range = { first: 0, last: count - 1 };
  const parts: Buffer[] = [];
  await fetchChunks({
    host: "127.0.0.1",
    port: seeder.dataPort,
    streamId,
    range,
    ticket: ticket(streamId, range, t.peerIds.at(-1)!),
    layout: { size, chunkSize: DEFAULT_CHUNK_SIZE },
    onChunk: (_i, data) => void parts.push(Buffer.from(data)),
  });
  return Buffer.concat(parts);
}

describe("seeder live recordings (--live-record)", () => {
  let root: string;
  let media: string;
  let recordDir: string;
  let stateDir: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "seeder-record-"));
    media = join(root, "media");
    recordDir = join(root, "rec");
    stateDir = join(root, "state");
    await mkdir(media);
    await writeFile(join(media, "cam"), "a media file the live name hides");
    await utimes(join(media, "cam"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  });
  after(() => rm(root, { recursive: true, force: true }));

  /** One run of a seeder broadcasting `input` as "cam", recorded. */
  const run = (tracker: TestTracker, input: PassThrough) =>
    startSeeder({
      tracker: `127.0.0.1:${tracker.port}`,
      media,
      live: [{ name: "cam", input: { kind: "stream", stream: input, label: "test pipe" }, policy }],
      stateDir,
      recordDir,
      dataHost: "127.0.0.1",
      dataPort: 0,
      log,
      registry: new Registry(),
    });

  /** Attests what `tracker` was claimed of the stream until `n` chunks, then waits for the end. */
  const attestUntilEnd = async (tracker: TestTracker, seeder: RunningSeeder, streamId: string, n: number) => {
    await tracker.until(() => claimsOf(tracker, streamId).length === n, `${n} claims`);
    await attest(tracker, seeder, streamId, claimsOf(tracker, streamId));
    await tracker.until(() => tracker.unpublishes.includes("cam"), "the Unpublish that ends the broadcast");
  };

  const first = randomBytes(4096 * 3 + 500);

  it("once the broadcast ended, publishes its recording as a file under its name, after the Unpublish", async () => {
    const tracker = new TestTracker(trackerKey);
    await tracker.start();
    const input = new PassThrough();
    let seeder: RunningSeeder | undefined;
    try {
      seeder = await run(tracker, input);
      const liveId = await seeder.whenReady("cam");
      const order: string[] = [];
      tracker.sessions[0]!.on("data", (m: PeerMessage) => {
        if (m.body?.$case === "unpublish") order.push("unpublish");
        if (m.body?.$case === "publish" && m.body.value.name === "cam") order.push(m.body.value.live ? "live" : "file");
      });
      input.end(first);
      await attestUntilEnd(tracker, seeder, liveId, 4);
      await tracker.until(() => filePublishes(tracker, "cam").length === 1, "the recording's publish");
      const p = filePublishes(tracker, "cam")[0]!;
      assert.equal(p.size, first.length);
      assert.deepEqual(order, ["unpublish", "file"], "the broadcast ends at the tracker before the name is a file");
      const fileId = await seeder.whenReady("cam");
      assert.notEqual(fileId, liveId);
      // what the checksum service and viewers read of it: the broadcast's bytes, as the source sent them
      assert.equal(hex(await fetchFile(tracker, seeder, fileId, first.length)), hex(first));
      assert.equal(hex(await readFile(join(recordDir, "cam"))), hex(first));
      // the ended broadcast's window is still served to the viewers finishing it
      await attest(tracker, seeder, liveId, claimsOf(tracker, liveId));
      assert.equal(
        tracker.publishes.filter((x) => x.name === "cam").length,
        2,
        "one live publish, one of the recording: the media file cam stays hidden",
      );

      // a reconnect publishes the recording again, not the ended broadcast
      tracker.kickAll();
      await tracker.until(() => filePublishes(tracker, "cam").length === 2, "the recording published again");
      assert.equal(tracker.publishes.filter((x) => x.name === "cam" && x.live).length, 1);
    } finally {
      await seeder?.drain();
      tracker.stop();
    }
  });

  const second = [randomBytes(4096 * 2), randomBytes(4096 + 77)];

  it("the next run is a new broadcast: the finished recording is kept aside, and a seeder stopped mid-broadcast appends when it runs again", async () => {
    const tracker = new TestTracker(trackerKey);
    await tracker.start();
    let seeder: RunningSeeder | undefined;
    try {
      const input = new PassThrough();
      seeder = await run(tracker, input);
      const liveId = await seeder.whenReady("cam");
      const kept = (await readdir(recordDir)).filter((f) => f !== "cam");
      assert.equal(kept.length, 1, `the first recording kept aside: ${kept.join(", ")}`);
      assert.match(kept[0]!, /^cam\.\d{8}T\d{6}Z$/);
      assert.equal(hex(await readFile(join(recordDir, kept[0]!))), hex(first));
      input.write(second[0]);
      await tracker.until(() => claimsOf(tracker, liveId).length === 2, "2 claims");
      const before = claimsOf(tracker, liveId);
      await attest(tracker, seeder, liveId, before);
      await new Promise((r) => setTimeout(r, 100));
      await seeder.drain(); // stopped mid-broadcast: the input has not ended
      seeder = undefined;
      assert.equal(hex(await readFile(join(recordDir, "cam"))), hex(second[0]!), "what was cut is on disk");
      assert.equal(filePublishes(tracker, "cam").length, 0, "not published: the broadcast goes on");

      const again = new PassThrough();
      seeder = await run(tracker, again);
      assert.equal(await seeder.whenReady("cam"), liveId, "the same broadcast continues");
      again.end(second[1]);
      await tracker.until(() => claimsOf(tracker, liveId).length === 4, "4 claims");
      assert.equal(claimsOf(tracker, liveId)[2]!.seq, before[1]!.seq + 1, "the numbers continue");
      await attest(tracker, seeder, liveId, claimsOf(tracker, liveId).slice(2));
      await tracker.until(() => tracker.unpublishes.includes("cam"), "the end");
      await tracker.until(() => filePublishes(tracker, "cam").length === 1, "the recording's publish");
      const whole = Buffer.concat(second);
      assert.equal(filePublishes(tracker, "cam")[0]!.size, whole.length);
      const fileId = await seeder.whenReady("cam");
      assert.equal(hex(await fetchFile(tracker, seeder, fileId, whole.length)), hex(whole));
      assert.deepEqual((await readdir(recordDir)).sort(), ["cam", kept[0]!]);
    } finally {
      await seeder?.drain();
      tracker.stop();
    }
  });
});
