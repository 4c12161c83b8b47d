import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  MAX_CHUNK_MS,
  MAX_CHUNK_SIZE,
  MAX_LIVE_SEQ,
  MAX_WINDOW_CHUNKS,
  MIN_CHUNK_SIZE,
  openLiveDescriptor,
  LiveAttestationBody,
  PublishStatus,
  SignedLiveDescriptor,
  type ChecksumClient,
  type LiveChunkClaim,
  type LiveChunks,
  type LivePublish,
  type LiveWindow,
  type Publish,
  type SignedLiveAttestation,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { failedPrecondition, invalidArgument, type Logger } from "@distribustream/runtime";
import type { LiveStreamMeta, SwarmStore } from "@distribustream/swarm-store";
import { MAX_RANDOM_ACCESS, type LiveDescriptorOf, type LiveWindows } from "./liveWindows.js";
import { LiveIngest } from "./liveIngest.js";
import type { TrackerMetrics } from "./metrics.js";
import type { NetworkKey } from "./networkKey.js";
import { httpBase } from "./peerAddress.js";
import { internalFailure } from "./peerErrors.js";
import type { Planner } from "./planner.js";
import type { ReplicaEvents } from "./replicaEvents.js";
import { joinAsSeeder, StreamGoneError } from "./seederSwarm.js";
import type { Session } from "./session.js";
import type { TicketKeys } from "./ticketKeys.js";

const SIGN_TIMEOUT_MS = 10_000;
/**
 * Lifetime of a live name's broadcaster lease in the store, renewed every
 * third of it: after a tracker replica dies, a seeder at another data
 * address can take the name this long after the last renewal (the same
 * seeder, reconnecting elsewhere, takes it back at once).
 */
export const BROADCASTER_LEASE_MS = 10_000;
/** Weight of a new sample in a stream's chunk_ms moving average. */
const CHUNK_MS_WEIGHT = 0.2;

export interface PublishLiveOptions {
  store: SwarmStore;
  events: ReplicaEvents;
  windows: LiveWindows;
  planner: Planner;
  networkKey: NetworkKey;
  checksum: ChecksumClient;
  ticketKeys: TicketKeys;
  metrics: TrackerMetrics;
  log: Logger;
}

/** A live stream's ingest on this replica: the seeder session feeding it. */
interface Broadcast {
  session: Session;
  /** The broadcaster lease's holder: the seeder's data address. */
  holder: string;
  name: string;
  ingest: LiveIngest;
  meta: LiveStreamMeta;
  descriptor: LiveDescriptorOf;
}

/**
 * The id of a live stream: stable for a name and its chunk policy and
 * window, so that a seeder restarted with the same settings continues the
 * same stream (and its viewers keep watching); other settings make another
 * stream, to which the name then points. This is the first broadcast's id;
 * one that starts after it ended has nextBroadcastId's.
 */
export function liveStreamIdFor(name: string, live: LivePublish): string {
  return createHash("sha256")
    .update(`live\0${name}\0${live.maxChunkBytes}\0${live.maxChunkMs}\0${live.bitrate}\0${live.windowChunks}`)
    .digest()
    .subarray(0, 16)
    .toString("base64url");
}

/** The id of the broadcast of a name and settings that starts after the one of `ended` ended. */
export function nextBroadcastId(ended: string): string {
  return createHash("sha256").update(`live-next\0${ended}`).digest().subarray(0, 16).toString("base64url");
}

/** What is wrong with a LivePublish (the bounds of pdtp's openLiveDescriptor), or undefined. */
export function livePublishProblem(p: Publish, live: LivePublish): string | undefined {
  if (p.size !== 0 || p.version !== 0) return "a live broadcast has size 0 and version 0";
  if (p.originUrl) return "a live broadcast has no origin URL";
  if (!(live.maxChunkBytes >= MIN_CHUNK_SIZE && live.maxChunkBytes <= MAX_CHUNK_SIZE)) {
    return `live.max_chunk_bytes ${live.maxChunkBytes} is outside [${MIN_CHUNK_SIZE}, ${MAX_CHUNK_SIZE}]`;
  }
  if (!(live.maxChunkMs >= 1 && live.maxChunkMs <= MAX_CHUNK_MS)) {
    return `live.max_chunk_ms ${live.maxChunkMs} is outside [1, ${MAX_CHUNK_MS}]`;
  }
  if (!(live.windowChunks >= 2 && live.windowChunks <= MAX_WINDOW_CHUNKS)) {
    return `live.window_chunks ${live.windowChunks} is outside [2, ${MAX_WINDOW_CHUNKS}]`;
  }
  if (!Number.isSafeInteger(live.nextSeq) || live.nextSeq < 0 || live.nextSeq > MAX_LIVE_SEQ) {
    return `live.next_seq ${live.nextSeq} is beyond the last sequence number, 2^53 - 2`;
  }
  if (!Number.isSafeInteger(live.bitrate) || live.bitrate < 0) return `live.bitrate ${live.bitrate} is not a bitrate`;
  return undefined;
}

/**
 * The publish flow of a live broadcast: a seeder publishes a name with a
 * chunk policy, the checksum service signs the stream's descriptor (kept in
 * the store in the manifest slot: `markReady` stores the encoded
 * SignedLiveDescriptor, `getManifest` reads it back), and the seeder's claims
 * of new chunks become attestations (LiveIngest) that move the stream's
 * window: its high bound (the edge) rises, its low bound follows at
 * `window_chunks` behind, and every replica tells its viewers (a "live"
 * event, see LiveEdges). One ingest per stream on this replica, fed by the
 * seeder session that published it last.
 */
export class PublishLive {
  private readonly broadcasts = new Map<string, Broadcast>();
  private readonly renewals: NodeJS.Timeout;

  constructor(private readonly o: PublishLiveOptions) {
    this.renewals = setInterval(() => void this.renewLeases(), BROADCASTER_LEASE_MS / 3).unref();
  }

  /** A seeder publishes a live name (Publish.live set; the session checked the name and role). */
  async publish(s: Session, p: Publish, retried = false): Promise<void> {
    const live = p.live!;
    const problem = livePublishProblem(p, live);
    if (problem) throw invalidArgument(`Publish of "${p.name.slice(0, 64)}": ${problem}`);
    const { store, events, log } = this.o;
    const streamId = await this.broadcastStreamId(p.name, live);
    const result = (status: PublishStatus, detail = "", window?: LiveWindow) =>
      publishResult(p.name, streamId, status, detail, live.maxChunkBytes, window);
    // One broadcaster per name across every replica: the seeder at this data
    // address (the same seeder after a reconnect or a restart takes it back).
    const holder = `${s.dataHost}:${s.dataPort}`;
    if (!(await store.acquireLease(broadcasterLease(p.name), holder, BROADCASTER_LEASE_MS))) {
      const detail = `"${p.name.slice(0, 64)}" is being broadcast by another seeder; it is published again in the next session`;
      log.warn({ peerId: s.peerId, name: p.name, holder }, "live publish refused: another seeder broadcasts the name");
      s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, detail));
      return;
    }
    const before = s.publishing(p.name, streamId);
    await events.useStream(s.peerId, streamId, true);
    if (before !== undefined && before !== streamId) await this.leave(s, before);
    let meta = await store.getStream(streamId);
    if (meta && meta.kind !== "live") throw failedPrecondition(`"${p.name.slice(0, 64)}" is not a live stream`);
    if (!meta || meta.status !== "ready") {
      try {
        meta = await this.create(s, p, live, streamId);
      } catch (err) {
        s.unpublishing(p.name);
        await events.useStream(s.peerId, streamId, false);
        await this.releaseLease({ name: p.name, holder });
        const internal = err instanceof ChecksumAnswer ? undefined : internalFailure();
        const detail = `live descriptor not signed: ${internal?.message ?? (err as Error).message}`;
        log[internal ? "error" : "warn"](
          { peerId: s.peerId, name: p.name, streamId, detail, ...(internal ? { err, errorId: internal.errorId } : {}) },
          "live publish rejected",
        );
        s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, detail));
        return;
      }
    }
    const descriptor = await this.o.windows.descriptor(meta);
    if (!descriptor) throw failedPrecondition(`"${p.name.slice(0, 64)}" has no live descriptor`);
    let added: boolean;
    try {
      added = await this.addSeeder(s, p.name, meta);
    } catch (err) {
      // retired between the read and the join (nobody was in it): published afresh, once
      if (!(err instanceof StreamGoneError) || retried) throw err;
      log.info(
        { peerId: s.peerId, name: p.name, streamId },
        "live publish: the stream retired meanwhile, publishing it afresh",
      );
      return this.publish(s, p, true);
    }
    if (!added) return;
    const started = meta.high >= meta.low && meta.high >= 0;
    // a restarted seeder continues at the edge + 1, or at its next_seq when that is higher (chunks it cut
    // that were never attested: their numbers are not used again, viewers skip them); a stream not
    // started yet, at the seeder's next_seq
    const nextSeq = Math.max(started ? meta.high + 1 : descriptor.body.firstSeq, live.nextSeq);
    this.broadcasts.get(streamId)?.ingest.close();
    const b: Broadcast = {
      session: s,
      holder,
      name: p.name,
      meta,
      descriptor,
      ingest: new LiveIngest({
        streamId,
        checksum: this.o.checksum,
        ticketSigner: () => this.o.ticketKeys.signer,
        maxChunkBytes: descriptor.body.maxChunkBytes,
        source: { url: httpBase(s.internalHost, s.internalPort), peerId: s.peerId },
        nextSeq,
        edgeTimestampMs: this.o.windows.edge(streamId).edgeTimestampMs,
        onAttested: (atts, claims) => this.attested(b, atts, claims),
        onLost: (claims, reason) => this.lost(b, claims, reason),
        log,
      }),
    };
    this.broadcasts.set(streamId, b);
    const window = this.o.windows.window(meta, descriptor.body.bitrate);
    s.send(result(PublishStatus.PUBLISH_STATUS_READY, "", window));
    log.info({ peerId: s.peerId, name: p.name, streamId, nextSeq, started }, "live publish: ready");
  }

  /** LiveChunks from a seeder: queued for attestation, or a Notice saying what is wrong with them. */
  claims(s: Session, m: LiveChunks): void {
    const b = this.broadcasts.get(m.streamId);
    if (!b || b.session !== s) {
      throw invalidArgument("LiveChunks for a stream this session does not broadcast");
    }
    const problem = b.ingest.claim(m.chunks);
    if (problem) {
      this.o.metrics.liveClaimsRefused.inc({ stream: this.o.metrics.streamLabel(b.name) });
      s.send(notice(`LiveChunks of "${b.name}" refused: ${problem}; next expected ${b.ingest.expected}`));
    }
  }

  /**
   * The seeder unpublished the name: when it is this session's broadcast, the
   * chunks claimed so far are attested, then the stream ends (its edge is its
   * last chunk) and its viewers are told. Resolves true when it was live.
   */
  async unpublished(s: Session, streamId: string): Promise<boolean> {
    const b = this.broadcasts.get(streamId);
    if (!b || b.session !== s) return false;
    await b.ingest.finish();
    this.broadcasts.delete(streamId);
    await this.releaseLease(b);
    const meta = await this.o.store.getStream(streamId);
    if (meta?.kind !== "live") return true;
    await this.o.store.raiseHigh(streamId, meta.high, true);
    const edge = this.o.windows.edge(streamId);
    this.o.events.announce(streamId, { type: "live", low: meta.low, high: meta.high, ended: true, ...edge });
    this.o.log.info({ peerId: s.peerId, streamId, edge: meta.high }, "live broadcast ended");
    return true;
  }

  /** A seeder session ended: its broadcasts stop here, not ended (it may come back and continue them). */
  sessionEnded(s: Session): void {
    for (const [streamId, b] of this.broadcasts) {
      if (b.session !== s) continue;
      b.ingest.close();
      this.broadcasts.delete(streamId);
      void this.releaseLease(b);
    }
  }

  /** Stops every ingest (the tracker drains); the leases are left to expire, so the seeders, reconnecting elsewhere, keep their names. */
  close(): void {
    clearInterval(this.renewals);
    for (const b of this.broadcasts.values()) b.ingest.close();
    this.broadcasts.clear();
  }

  /**
   * Renews the broadcaster lease of every broadcast fed here. One that another
   * seeder took meanwhile (this replica could not renew for the lease's
   * lifetime) stops here: its seeder is told and its claims are refused.
   */
  private async renewLeases(): Promise<void> {
    for (const [streamId, b] of this.broadcasts) {
      let held: boolean;
      try {
        held = await this.o.store.acquireLease(broadcasterLease(b.name), b.holder, BROADCASTER_LEASE_MS);
      } catch (err) {
        this.o.log.warn({ name: b.name, err: (err as Error).message }, "broadcaster lease not renewed");
        continue;
      }
      if (held || this.broadcasts.get(streamId) !== b) continue;
      b.ingest.close();
      this.broadcasts.delete(streamId);
      this.o.log.error({ peerId: b.session.peerId, name: b.name }, "another seeder took the live name");
      b.session.send(notice(`"${b.name}" is now broadcast by another seeder: chunks claimed from now on are refused`));
    }
  }

  private async releaseLease(b: { name: string; holder: string }): Promise<void> {
    // the same seeder, reconnected, may hold it again under a new session here
    for (const other of this.broadcasts.values()) if (other.name === b.name && other.holder === b.holder) return;
    await this.o.store
      .releaseLease(broadcasterLease(b.name), b.holder)
      .catch((err: unknown) =>
        this.o.log.warn({ name: b.name, err: (err as Error).message }, "broadcaster lease not released"),
      );
  }

  /**
   * The stream a live publish feeds: the broadcast of this name and these
   * settings that has not ended (a restarted seeder continues it, its viewers
   * keep watching), else a new one. Broadcasts that ended (the seeder's input
   * ended; the name may point at its recording since) are passed over, each
   * one's successor id derived from its own, so every replica finds the same
   * stream: at once when the name points at the latest, else by walking from
   * the first.
   */
  private async broadcastStreamId(name: string, live: LivePublish): Promise<string> {
    const { store, windows } = this.o;
    let id = liveStreamIdFor(name, live);
    const current = await store.streamIdByName(name);
    const meta = current === undefined ? undefined : await store.getStream(current);
    if (meta?.kind === "live" && meta.name === name) {
      const d = (await windows.descriptor(meta))?.body;
      const same =
        d !== undefined &&
        d.maxChunkBytes === live.maxChunkBytes &&
        d.maxChunkMs === live.maxChunkMs &&
        d.bitrate === live.bitrate &&
        d.windowChunks === live.windowChunks;
      if (same) id = meta.streamId;
    }
    for (;;) {
      const m = await store.getStream(id);
      if (m?.kind !== "live" || !m.ended) return id;
      id = nextBroadcastId(id);
    }
  }

  /** Creates the stream, has its descriptor signed and marks it ready; resolves its meta. */
  private async create(s: Session, p: Publish, live: LivePublish, streamId: string): Promise<LiveStreamMeta> {
    const { store, events } = this.o;
    await store.createStream({
      streamId,
      name: p.name,
      kind: "live",
      chunkSize: live.maxChunkBytes,
      version: 0,
      windowChunks: live.windowChunks,
      createdMs: Date.now(),
    });
    const now = Date.now();
    const signed = await this.sign({
      streamId,
      name: p.name,
      maxChunkBytes: live.maxChunkBytes,
      maxChunkMs: live.maxChunkMs,
      bitrate: live.bitrate,
      windowChunks: live.windowChunks,
      firstSeq: live.nextSeq,
      startMs: now,
      attestationKeyId: "",
      version: now,
    });
    const body = openLiveDescriptor(signed, [await this.o.networkKey.get()]);
    if (body.streamId !== streamId || body.firstSeq !== live.nextSeq || body.windowChunks !== live.windowChunks) {
      throw new Error("the checksum service signed another descriptor than the one asked for");
    }
    const ready = await store.getStream(streamId);
    if (ready?.status !== "ready") {
      const { replaced } = await store.markReady(streamId, SignedLiveDescriptor.encode(signed).finish(), now);
      events.announce(streamId, { type: "published", name: p.name });
      if (replaced) events.announce(replaced, { type: "retired", name: p.name, by: streamId });
      this.o.log.info({ peerId: s.peerId, name: p.name, streamId, replaced }, "live publish: stream created");
    }
    const meta = await store.getStream(streamId);
    if (meta?.kind !== "live") throw new Error("the live stream vanished while it was created");
    return meta;
  }

  private sign(body: Parameters<ChecksumClient["signLiveDescriptor"]>[0]): Promise<SignedLiveDescriptor> {
    return new Promise((resolve, reject) =>
      this.o.checksum.signLiveDescriptor(
        body,
        new grpc.Metadata(),
        { deadline: Date.now() + SIGN_TIMEOUT_MS },
        (err, res) => {
          if (err) {
            // the service's own refusals are for the seeder; a failed call stays internal
            return reject(err.code === grpc.status.INVALID_ARGUMENT ? new ChecksumAnswer(err.details) : err);
          }
          resolve(res!);
        },
      ),
    );
  }

  /** Puts the seeder in the stream's swarm (credited with chunks as they are attested). False when it left meanwhile. */
  private addSeeder(s: Session, name: string, meta: LiveStreamMeta): Promise<boolean> {
    return joinAsSeeder(this.o.store, this.o.events, s, name, meta.streamId, []);
  }

  /** The seeder's older stream of the name (other settings): it leaves that swarm. */
  private async leave(s: Session, streamId: string): Promise<void> {
    const b = this.broadcasts.get(streamId);
    if (b?.session === s) {
      b.ingest.close();
      this.broadcasts.delete(streamId);
    }
    await this.o.events.useStream(s.peerId, streamId, false);
    s.leftSwarm(streamId);
    this.o.planner.forget(streamId, s.peerId);
    await this.o.events.leaveSwarm(streamId, s.peerId);
  }

  /**
   * Chunks attested: the edge rises to the last, the low end follows at
   * window_chunks behind it (transfers wholly below are withdrawn), the
   * seeder holds them and gets their attestations, and every replica hears
   * the new window (with the chunks attested as random access points).
   */
  private async attested(b: Broadcast, atts: SignedLiveAttestation[], claims: LiveChunkClaim[]): Promise<void> {
    const { store, events, metrics, windows } = this.o;
    const streamId = b.meta.streamId;
    const first = claims[0]!.seq;
    const last = claims[claims.length - 1]!.seq;
    await store.raiseHigh(streamId, last);
    const low = Math.max(b.descriptor.body.firstSeq, last - b.descriptor.body.windowChunks + 1);
    const { dropped } = await store.raiseLow(streamId, low);
    events.withdraw(dropped, undefined);
    await store.addHoldings(streamId, b.session.peerId, [{ first, last }]);
    const before = windows.edge(streamId);
    const edge = {
      ...edgeTimeAfter(before, claims, b.descriptor.body.maxChunkMs),
      randomAccess: randomAccessAfter(before.randomAccess, atts, low),
    };
    windows.setEdge(streamId, edge);
    b.session.send({ body: { $case: "liveAttested", value: { streamId, attestations: atts } } });
    metrics.liveChunksAttested.inc({ stream: b.name }, atts.length);
    metrics.liveEdge.set({ stream: metrics.streamLabel(b.name) }, last);
    events.announce(streamId, { type: "live", low, high: last, ended: false, ...edge });
  }

  private lost(b: Broadcast, claims: LiveChunkClaim[], reason: string): void {
    this.o.metrics.liveChunksLost.inc({ stream: this.o.metrics.streamLabel(b.name) }, claims.length);
    const first = claims[0]!.seq;
    const last = claims[claims.length - 1]!.seq;
    b.session.send(notice(`live chunks ${first}-${last} of "${b.name}" were not attested: ${reason}`));
  }
}

/**
 * The edge's source time after `claims`, and chunk_ms folded in as a moving
 * average of their spacing. Each sample is held to the descriptor's chunk
 * time: no chunk holds more media than that, so a longer spacing is a gap
 * (the source stalled, or was killed and restarted) and not what a chunk
 * lasts. Counted in, one such gap would make viewers estimate the source
 * time of a chunk not yet announced seconds too early (edge time less the
 * chunks between times chunk_ms), and skip it as overdue while it is on its
 * way.
 */
export function edgeTimeAfter(
  before: { edgeTimestampMs: number; chunkMs: number },
  claims: readonly LiveChunkClaim[],
  maxChunkMs: number,
): { edgeTimestampMs: number; chunkMs: number } {
  const lastTs = claims[claims.length - 1]!.timestampMs;
  const fromTs = before.edgeTimestampMs > 0 ? before.edgeTimestampMs : claims[0]!.timestampMs;
  const spans = before.edgeTimestampMs > 0 ? claims.length : claims.length - 1;
  const sample = spans > 0 ? Math.min(maxChunkMs, Math.max(0, lastTs - fromTs) / spans) : maxChunkMs;
  const avg = before.chunkMs > 0 ? before.chunkMs * (1 - CHUNK_MS_WEIGHT) + sample * CHUNK_MS_WEIGHT : sample;
  return { edgeTimestampMs: lastTs, chunkMs: Math.max(0, Math.round(avg)) };
}

/** The store lease naming the one seeder that broadcasts a live name (names may hold any character; lease names not). */
function broadcasterLease(name: string): string {
  return `live:${createHash("sha256").update(name).digest().subarray(0, 16).toString("base64url")}`;
}

/**
 * The random access points within the window after `attestations`: those
 * before at `low` or above, and the chunks these attest as random access
 * points (the checksum service checked their bytes), the newest
 * MAX_RANDOM_ACCESS.
 */
export function randomAccessAfter(
  before: readonly number[],
  attestations: readonly SignedLiveAttestation[],
  low: number,
): number[] {
  const out = before.filter((seq) => seq >= low);
  for (const a of attestations) {
    const body = LiveAttestationBody.decode(a.body);
    if (body.randomAccess && body.seq >= low && !(out.length > 0 && body.seq <= out[out.length - 1]!))
      out.push(body.seq);
  }
  return out.slice(-MAX_RANDOM_ACCESS);
}

/** The checksum service refused the descriptor: its message is for the seeder. */
class ChecksumAnswer extends Error {}

function notice(message: string): TrackerMessage {
  return { body: { $case: "notice", value: { message } } };
}

function publishResult(
  name: string,
  streamId: string,
  status: PublishStatus,
  detail: string,
  chunkSize: number,
  live: LiveWindow | undefined,
): TrackerMessage {
  return { body: { $case: "publishResult", value: { name, streamId, status, detail, chunkSize, live } } };
}
