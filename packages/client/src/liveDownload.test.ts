import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { Server, ServerCredentials, status, type ServerDuplexStream } from "@grpc/grpc-js";
import {
  issueTicket,
  LIVE_REJECTIONS,
  liveFrameHead,
  LiveVerifier,
  sha256,
  signLiveAttestation,
  signLiveDescriptor,
  Signer,
  StreamKind,
  TrackerService,
  TransferOutcome,
  type ChunkRange,
  type Directive,
  type Join,
  type LiveDescriptorBody,
  type LiveRejection,
  type LiveWindow as LiveWindowMessage,
  type PeerMessage,
  type Position,
  type TrackerMessage,
  type TransferReport,
} from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { fetchLiveChunks, LiveWindow, startDataPlane } from "@distribustream/data-plane";
import { download, DownloadError } from "./index.js";

/**
 * A live viewer against a scripted tracker (real gRPC: Joined with a signed
 * live descriptor, LiveEdge, Directives) and real data planes serving
 * attested frames, some of them hostile: an altered chunk, a replayed one,
 * a reordered one. Sequence numbers cross 2^32.
 */
const log = createLogger("test", { level: "silent" });
const network = Signer.generate();
const ticketKey = Signer.generate();
const streamId = "live-7f3a";
const name = "live/cam";
const FIRST = 2 ** 32 - 4;
const COUNT = 14;
const LAST = FIRST + COUNT - 1;
const CHUNK_MS = 100;
/** Source times: recent (the verifier refuses stale ones), one chunk per CHUNK_MS. */
const T0 = Date.now() - 4_000;
const ts = (seq: number) => T0 + (seq - FIRST) * CHUNK_MS;
const chunks = new Map<number, Buffer>();
for (let seq = FIRST; seq <= LAST; seq++) chunks.set(seq, randomBytes(700 + (seq - FIRST) * 97));
/** `randomAccess`: the attestation says the chunk begins at a random access point. */
const attestation = (seq: number, randomAccess = false) =>
  signLiveAttestation(
    {
      streamId,
      seq,
      timestampMs: ts(seq),
      length: chunks.get(seq)!.length,
      sha256: sha256(chunks.get(seq)!),
      randomAccess,
    },
    network,
  );

const descriptorBody: LiveDescriptorBody = {
  streamId,
  name,
  maxChunkBytes: 64 * 1024,
  maxChunkMs: CHUNK_MS,
  bitrate: 0,
  windowChunks: 64,
  firstSeq: FIRST - 100,
  startMs: T0 - 10_000,
  attestationKeyId: network.keyId,
  version: 1,
};

/** The window the tracker announces: [FIRST, edge], edge's source time, chunk time, random access points. */
function liveWindow(edge: number, ended = false, low = FIRST, randomAccess: number[] = []): LiveWindowMessage {
  return {
    low,
    edge,
    started: true,
    edgeTimestampMs: ts(edge),
    chunkMs: CHUNK_MS,
    windowChunks: descriptorBody.windowChunks,
    bitrate: 0,
    ended,
    randomAccess: randomAccess.filter((seq) => seq >= low && seq <= edge),
  };
}

function joined(window: LiveWindowMessage, signer = network): TrackerMessage {
  return {
    body: {
      $case: "joined",
      value: {
        descriptor: {
          streamId,
          name,
          kind: StreamKind.STREAM_KIND_LIVE,
          size: 0,
          chunkSize: 0,
          chunkCount: 0,
          version: 0,
          peers: 0,
          seeders: 1,
          live: window,
          manifestSha256: "",
          networkKeyId: "",
        },
        live: signLiveDescriptor(descriptorBody, signer),
      },
    },
  };
}

const edgeMsg = (window: LiveWindowMessage): TrackerMessage => ({
  body: { $case: "liveEdge", value: { streamId, window } },
});

/** What a source puts in place of chunk `seq`'s frame: its head and bytes. */
type Frames = (seq: number) => [Buffer, Buffer];
const honest: Frames = (seq) => [liveFrameHead(attestation(seq)), chunks.get(seq)!];

/**
 * A data plane serving the stream's chunks framed with their attestations,
 * from a LiveWindow as a seeder keeps them; `frames` may swap in bad ones.
 * `randomAccess`: the chunks attested as random access points.
 */
async function liveSource(
  peerId: string,
  frames: Frames = honest,
  holds = (_r: ChunkRange) => true,
  randomAccess: ReadonlySet<number> = new Set(),
) {
  const window = new LiveWindow(descriptorBody.windowChunks);
  for (let seq = FIRST; seq <= LAST; seq++) {
    window.push(seq, chunks.get(seq)!, ts(seq));
    window.attest(seq, liveFrameHead(attestation(seq, randomAccess.has(seq))));
  }
  const plane = await startDataPlane({
    host: "127.0.0.1",
    port: 0,
    log,
    identity: () => ({ peerId, ticketKeys: [ticketKey.publicKey] }),
    source: {
      layout: (id) =>
        id === streamId
          ? {
              kind: "live",
              name,
              span: (r) => window.span(r),
              attested: (r) =>
                frames === honest
                  ? window.attested(r)
                  : Array.from({ length: r.last - r.first + 1 }, (_, i) => frames(r.first + i)).flat(),
            }
          : undefined,
      holds: (_id, r) => holds(r) && window.holds(r),
      read: (_id, start, end) => window.read(start, end),
    },
  });
  return { plane, peerId };
}
type Source = Awaited<ReturnType<typeof liveSource>>;

let nextTransfer = 1;
function directive(source: Source, viewer: Viewer, range: ChunkRange): Directive {
  return {
    transferId: nextTransfer++,
    streamId,
    range,
    source: { peerId: source.peerId, host: "127.0.0.1", port: source.plane.port, seeder: true },
    ticket: issueTicket(
      {
        streamId,
        range,
        fetcherId: viewer.peerId,
        serverId: source.peerId,
        expiresMs: Date.now() + 60_000,
        fetcherKey: viewer.peerKey,
      },
      ticketKey,
    ),
  };
}

type Call = ServerDuplexStream<PeerMessage, TrackerMessage>;
/** The viewer as the tracker knows it. */
interface Viewer {
  call: Call;
  peerId: string;
  peerKey: Uint8Array;
  dataPort: number;
  send(msg: TrackerMessage): void;
  direct(source: Source, range: ChunkRange): void;
}
interface Script {
  /** `session`: 0 for the first session, 1 for the one after a reconnect, … */
  onJoin(v: Viewer, join: Join, session: number): void;
  onPosition?(v: Viewer, p: Position): void;
  onReports?(v: Viewer, reports: TransferReport[]): void;
}

/** A gRPC Tracker that follows a script; records every message it receives. */
async function scriptedTracker(script: Script) {
  const received: PeerMessage[] = [];
  const server = new Server();
  let sessions = 0;
  server.addService(TrackerService, {
    session: (call: Call) => {
      const session = sessions++;
      const peerId = `viewer-${session}`;
      let viewer: Viewer | undefined;
      call.on("data", (m: PeerMessage) => {
        received.push(m);
        const body = m.body;
        if (body?.$case === "hello") {
          viewer = {
            call,
            peerId,
            peerKey: body.value.peerKey,
            dataPort: body.value.dataPort,
            send: (msg) => void call.write(msg),
            direct: (source, range) =>
              call.write({ body: { $case: "directives", value: { directives: [directive(source, viewer!, range)] } } }),
          };
          call.write({
            body: {
              $case: "welcome",
              value: {
                peerId,
                observedHost: "127.0.0.1",
                ticketKeys: [ticketKey.publicKey],
                networkKeys: [network.publicKey],
              },
            },
          });
        } else if (body?.$case === "join") script.onJoin(viewer!, body.value, session);
        else if (body?.$case === "position") script.onPosition?.(viewer!, body.value);
        else if (body?.$case === "reports") script.onReports?.(viewer!, body.value.reports);
      });
      call.on("end", () => call.end());
      call.on("error", () => {});
    },
    describeStream: (_c: unknown, cb: (e: { code: status }) => void) => cb({ code: status.UNIMPLEMENTED }),
    listStreams: (_c: unknown, cb: (e: { code: status }) => void) => cb({ code: status.UNIMPLEMENTED }),
    getHashPieces: (_c: unknown, cb: (e: { code: status }) => void) => cb({ code: status.UNIMPLEMENTED }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const of = <K extends string>(k: K) =>
    received.flatMap((m) => (m.body?.$case === k ? [(m.body as { value: unknown }).value] : []));
  return {
    port,
    received,
    url: `pdtp://127.0.0.1:${port}/${name}`,
    reports: () => of("reports").flatMap((r) => (r as { reports: TransferReport[] }).reports),
    positions: () => of("position") as Position[],
    have: () => of("have").flatMap((h) => (h as { ranges: ChunkRange[] }).ranges),
    close: () => server.forceShutdown(),
  };
}

const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** The bytes of chunks [first, last], skipping `missing`. */
function expected(first: number, last: number, missing: number[] = []): Buffer {
  const out: Buffer[] = [];
  for (let seq = first; seq <= last; seq++) if (!missing.includes(seq)) out.push(chunks.get(seq)!);
  return Buffer.concat(out);
}
const noRejections = Object.fromEntries(LIVE_REJECTIONS.map((r) => [r, 0])) as Record<LiveRejection, number>;

/** With a 300 ms prebuffer and 100 ms chunks, a viewer tunes in three chunks behind the edge. */
const PREBUFFER_MS = 300;
const tuneIn = (edge: number) => edge - 3;

const dir = mkdtempSync(join(tmpdir(), "dsclient-live-"));
let good: Source;
before(async () => {
  good = await liveSource("seeder-1");
});
after(async () => {
  await good.plane.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The tracker's part for a healthy broadcast: the window starts with its edge
 * at `edge0` and moves one chunk every `stepMs` to LAST, then ends; each
 * Position and each move directs what the viewer lacks from its position to
 * the edge (to `source`).
 */
function broadcast(edge0: number, stepMs = 30, source = () => good): Script & { done: Promise<void> } {
  let edge = edge0;
  let directedTo: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let finished!: () => void;
  const done = new Promise<void>((r) => (finished = r));
  const direct = (v: Viewer) => {
    if (directedTo === undefined || directedTo >= edge) return;
    v.direct(source(), { first: directedTo + 1, last: edge });
    directedTo = edge;
  };
  return {
    done,
    onJoin: (v) => {
      v.send(joined(liveWindow(edge)));
      timer = setInterval(() => {
        if (edge === LAST) {
          clearInterval(timer);
          v.send(edgeMsg(liveWindow(LAST, true)));
          return finished();
        }
        edge++;
        v.send(edgeMsg(liveWindow(edge)));
        direct(v);
      }, stepMs);
    },
    onPosition: (v, p) => {
      if (directedTo !== undefined) return;
      directedTo = p.nextChunk - 1;
      direct(v);
    },
  };
}

function watch(url: string, output: string, extra: Partial<Parameters<typeof download>[0]> = {}) {
  return download({ url, output, log, listenHost: "127.0.0.1", prebufferMs: PREBUFFER_MS, stallSeconds: 20, ...extra });
}

describe("a live stream with a scripted tracker", () => {
  test("tunes in a prebuffer behind the edge, writes exactly the chunks from there on across 2^32, ends with the broadcast", async () => {
    const script = broadcast(FIRST + 5);
    const tracker = await scriptedTracker(script);
    const out = join(dir, "cam.ts");
    const progress: number[] = [];
    const r = await watch(tracker.url, out, { onProgress: (p) => p.live && progress.push(p.live.chunksWritten) });
    tracker.close();
    const want = expected(tuneIn(FIRST + 5), LAST);
    assert.equal(digest(readFileSync(out)), digest(want), "the chunks from the tune-in point (edge - 3) on, in order");
    const live = r.live!;
    assert.deepEqual(
      { written: live.chunksWritten, skipped: live.skipped, bytes: live.bytesWritten, size: r.size, ended: live.ended },
      { written: LAST - FIRST - 1, skipped: 0, bytes: want.length, size: want.length, ended: true },
    );
    assert.deepEqual(live.rejected, noRejections);
    assert.ok(live.tuneInMs! > 0 && live.delayP50Ms! > 0 && live.delayP95Ms! >= live.delayP50Ms!, JSON.stringify(live));
    assert.equal(progress.at(-1), LAST - FIRST - 1);
    assert.equal(r.streamId, streamId);
    // What the tracker heard: the position from the tune-in point on, playback figures, holdings, reports.
    const positions = tracker.positions();
    assert.equal(positions[0]!.nextChunk, tuneIn(FIRST + 5), "the first Position is the tune-in point");
    assert.equal(positions.at(-1)!.nextChunk, LAST + 1);
    const delays = positions.flatMap((p) => p.live?.delaysMs ?? []);
    assert.equal(delays.length, LAST - FIRST - 1, "one delay per chunk written");
    assert.ok(
      delays.every((d) => d >= 2_000 && d < 60_000),
      `delays ${delays.join(",")}`,
    );
    assert.equal(
      positions.reduce((n, p) => n + (p.live?.skipped ?? 0), 0),
      0,
    );
    assert.deepEqual(tracker.have().at(-1), { first: LAST, last: LAST });
    const reports = tracker.reports();
    assert.ok(reports.length > 1);
    for (const rep of reports) assert.equal(rep.outcome, TransferOutcome.TRANSFER_OUTCOME_OK, JSON.stringify(rep));
    assert.equal(tracker.received.at(-1)?.body?.$case, "leave");
  });

  test("an MPEG-TS stream: tunes in at the newest random access point before the prebuffer point, from the window's list", async () => {
    const points = [FIRST + 1, FIRST + 5, FIRST + 9];
    const source = await liveSource("ts-seeder", honest, () => true, new Set(points));
    const edge = FIRST + 10;
    const start = FIRST + 5; // the newest point at or before the prebuffer point, edge - 3
    assert.equal(tuneIn(edge), FIRST + 7);
    const tracker = await scriptedTracker({
      onJoin: (v) => v.send(joined(liveWindow(edge, false, FIRST, points))),
      onPosition: (v, p) => {
        if (p.nextChunk === start) v.direct(source, { first: start, last: LAST });
      },
      onReports: (v, reports) => {
        if (reports.some((x) => x.outcome === TransferOutcome.TRANSFER_OUTCOME_OK)) {
          v.send(edgeMsg(liveWindow(LAST, true, FIRST, points)));
        }
      },
    });
    const out = join(dir, "points.ts");
    const r = await watch(tracker.url, out);
    tracker.close();
    await source.plane.close();
    assert.equal(tracker.positions()[0]!.nextChunk, start, "the first Position is the random access point");
    assert.equal(digest(readFileSync(out)), digest(expected(start, LAST)), "the output starts with it");
    assert.equal(r.live!.skipped, 0);
  });

  test("an altered, a replayed and a reordered chunk are each rejected with its reason, reported BAD_DATA; the output stays exact", async () => {
    const edge = FIRST + 9;
    const start = tuneIn(edge);
    const bad = start + 2;
    const altered = await liveSource("altered", (seq) => {
      const [head, data] = honest(seq);
      if (seq !== bad) return [head, data];
      const copy = Buffer.from(data);
      copy[10]! ^= 0xff;
      return [head, copy];
    });
    // chunk bad - 1's valid frame in place of chunk bad, and chunk bad + 1's
    const replaying = await liveSource("replaying", (seq) => honest(seq === bad ? seq - 1 : seq));
    const reordering = await liveSource("reordering", (seq) => honest(seq === bad ? seq + 1 : seq));
    const sources = [altered, replaying, reordering, good];
    let tried = 0;

    const tracker = await scriptedTracker({
      onJoin: (v) => v.send(joined(liveWindow(edge))),
      onPosition: (v, p) => {
        if (tried === 0 && p.nextChunk === start) v.direct(sources[tried++]!, { first: start, last: edge });
      },
      onReports: (v, reports) => {
        for (const rep of reports) {
          if (rep.outcome === TransferOutcome.TRANSFER_OUTCOME_BAD_DATA) {
            v.direct(sources[tried++]!, { first: bad, last: edge });
          } else if (rep.outcome === TransferOutcome.TRANSFER_OUTCOME_OK) {
            v.send(edgeMsg(liveWindow(edge, true)));
          }
        }
      },
    });
    const out = join(dir, "bad.ts");
    const r = await watch(tracker.url, out);
    tracker.close();
    await Promise.all([altered, replaying, reordering].map((s) => s.plane.close()));
    assert.equal(digest(readFileSync(out)), digest(expected(start, edge)), "nothing bad written, nothing skipped");
    assert.deepEqual(r.live!.rejected, { ...noRejections, "bad-data": 1, replayed: 1, reordered: 1 });
    const badReports = tracker.reports().filter((x) => x.outcome === TransferOutcome.TRANSFER_OUTCOME_BAD_DATA);
    assert.deepEqual(
      badReports.map((x) => x.detail.split(":")[0]),
      ["bad-data", "replayed", "reordered"],
    );
    assert.deepEqual(badReports[0]!.verified, [{ first: start, last: bad - 1 }], "the good prefix counts");
    assert.match(badReports[1]!.detail, new RegExp(`chunk ${bad - 1} came in place of chunk ${bad}`));
    assert.equal(r.live!.skipped, 0);
  });

  test("a chunk missing past its deadline is skipped when later ones are there; the end is exit 0", async () => {
    const edge = FIRST + 11;
    const missing = tuneIn(edge) + 1;
    let directed = false;
    const tracker = await scriptedTracker({
      onJoin: (v) => v.send(joined(liveWindow(edge))),
      onPosition: (v, p) => {
        if (!directed) {
          directed = true;
          v.direct(good, { first: p.nextChunk, last: missing - 1 });
          v.direct(good, { first: missing + 1, last: edge });
        }
        if ((p.live?.skipped ?? 0) > 0) v.send(edgeMsg(liveWindow(edge, true)));
      },
    });
    const out = join(dir, "skip.ts");
    const r = await watch(tracker.url, out);
    tracker.close();
    assert.equal(digest(readFileSync(out)), digest(expected(tuneIn(edge), edge, [missing])));
    assert.equal(r.live!.skipped, 1);
    assert.equal(r.live!.chunksWritten, 3);
    assert.equal(
      tracker.positions().reduce((n, p) => n + (p.live?.skipped ?? 0), 0),
      1,
      "the skip was told to the tracker",
    );
  });

  test("--from-start replays what the window holds", async () => {
    const script = broadcast(FIRST + 9, 20);
    const tracker = await scriptedTracker(script);
    const out = join(dir, "start.ts");
    const r = await watch(tracker.url, out, { fromStart: true });
    tracker.close();
    assert.equal(digest(readFileSync(out)), digest(expected(FIRST, LAST)));
    assert.equal(tracker.positions()[0]!.nextChunk, FIRST);
    assert.equal(r.live!.skipped, 0);
  });

  test("serves the chunks it holds to other peers, framed with their attestations", async () => {
    let served!: (v: Viewer) => void;
    const held = new Promise<Viewer>((r) => (served = r));
    const edge = FIRST + 7;
    const tracker = await scriptedTracker({
      onJoin: (v) => v.send(joined(liveWindow(edge))),
      onPosition: (v, p) => {
        if (p.nextChunk === tuneIn(edge)) v.direct(good, { first: tuneIn(edge), last: edge });
      },
      onReports: (v, reports) => {
        if (reports.some((x) => x.outcome === TransferOutcome.TRANSFER_OUTCOME_OK)) served(v);
      },
    });
    const done = watch(tracker.url, join(dir, "serve.ts"));
    const viewer = await held;
    // Another peer fetches from the viewer as the tracker would direct it, and verifies every chunk.
    const other = Signer.generate();
    const range = { first: tuneIn(edge), last: edge };
    const verifier = new LiveVerifier(descriptorBody, { trusted: [network.publicKey] });
    verifier.advance(edge, FIRST);
    const got: Buffer[] = [];
    let att: ReturnType<LiveVerifier["open"]> | undefined;
    await fetchLiveChunks({
      host: "127.0.0.1",
      port: viewer.dataPort,
      streamId,
      range,
      ticket: issueTicket(
        {
          streamId,
          range,
          fetcherId: "other",
          serverId: viewer.peerId,
          expiresMs: Date.now() + 60_000,
          fetcherKey: other.publicKey.ed25519,
        },
        ticketKey,
      ),
      sessionKey: other,
      maxChunkBytes: descriptorBody.maxChunkBytes,
      onAttestation: (seq, signed) => (att = verifier.open(signed, seq)).length,
      onChunk: (_seq, data) => {
        verifier.accept(att!, data);
        got.push(Buffer.from(data));
      },
    });
    assert.equal(digest(Buffer.concat(got)), digest(expected(tuneIn(edge), edge)));
    viewer.send(edgeMsg(liveWindow(edge, true)));
    await done;
    tracker.close();
  });

  test("after a tracker restart (UNAVAILABLE) the viewer re-joins with its position and what it holds, and goes on", async () => {
    const edge = FIRST + 9;
    const start = tuneIn(edge);
    const joins: Join[] = [];
    const tracker = await scriptedTracker({
      onJoin: (v, join, session) => {
        joins.push(join);
        if (session === 0) v.send(joined(liveWindow(edge)));
        else {
          v.send(joined(liveWindow(LAST)));
          v.direct(good, { first: join.position, last: LAST });
        }
      },
      onPosition: (v, p) => {
        if (v.peerId === "viewer-0" && p.nextChunk === start) v.direct(good, { first: start, last: start + 2 });
      },
      onReports: (v, reports) => {
        if (!reports.some((x) => x.outcome === TransferOutcome.TRANSFER_OUTCOME_OK)) return;
        if (v.peerId === "viewer-0") {
          setTimeout(() => v.call.emit("error", { code: status.UNAVAILABLE, details: "tracker restarting" }), 20);
        } else v.send(edgeMsg(liveWindow(LAST, true)));
      },
    });
    const out = join(dir, "restart.ts");
    const r = await watch(tracker.url, out);
    tracker.close();
    assert.equal(digest(readFileSync(out)), digest(expected(start, LAST)));
    assert.equal(joins.length, 2, "two sessions");
    assert.deepEqual(
      { position: joins[1]!.position, have: joins[1]!.have },
      { position: start + 3, have: [{ first: start, last: start + 2 }] },
    );
    assert.equal(r.live!.skipped, 0);
  });

  test("a live descriptor signed by another key is exit 6", async () => {
    const tracker = await scriptedTracker({
      onJoin: (v) => v.send(joined(liveWindow(FIRST + 5), Signer.generate())),
    });
    await assert.rejects(
      watch(tracker.url, join(dir, "forged.ts")),
      (err: unknown) =>
        err instanceof DownloadError &&
        err.exitCode === 6 &&
        /live descriptor of "live\/cam" rejected: .*unknown key/.test(err.message),
    );
    tracker.close();
  });

  test("dsclient -o - writes the live chunks to stdout and logs a live summary", async () => {
    const tracker = await scriptedTracker(broadcast(FIRST + 5));
    const cli = fileURLToPath(new URL("./cli.js", import.meta.url));
    const child = spawn(
      process.execPath,
      [
        cli,
        tracker.url,
        "-o",
        "-",
        "--listen-host",
        "127.0.0.1",
        "--prebuffer",
        String(PREBUFFER_MS),
        "--log-level",
        "info",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    tracker.close();
    assert.equal(code, 0, err);
    assert.equal(digest(Buffer.concat(out)), digest(expected(tuneIn(FIRST + 5), LAST)));
    const summary = err
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === "live summary");
    assert.ok(summary, err);
    assert.equal(summary.chunksWritten, LAST - FIRST - 1);
    assert.equal(summary.skipped, 0);
    assert.equal(typeof summary.delayP95Ms, "number");
    assert.equal(typeof summary.tuneInMs, "number");
    assert.deepEqual(summary.rejected, noRejections);
  });

  test("dsclient -o - into a reader that goes away mid-broadcast stops cleanly with 0", async () => {
    const tracker = await scriptedTracker(broadcast(FIRST + 5, 300));
    const cli = fileURLToPath(new URL("./cli.js", import.meta.url));
    const child = spawn(
      process.execPath,
      [cli, tracker.url, "-o", "-", "--listen-host", "127.0.0.1", "--log-level", "info"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d));
    child.stdout.once("data", () => child.stdout.destroy());
    const code = await new Promise<number | null>((r) => child.on("close", r));
    tracker.close();
    assert.equal(code, 0, err);
    const lines = err
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; reason?: string; ended?: boolean });
    const stopped = lines.find((l) => l.msg === "stopped");
    assert.match(stopped?.reason ?? "", /standard output was closed by its reader/, err);
    assert.equal(lines.find((l) => l.msg === "live summary")?.ended, false, "stopped before the broadcast ended");
    assert.ok(!err.includes("dsclient:"), "no error message");
  });
});
