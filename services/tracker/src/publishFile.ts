import * as grpc from "@grpc/grpc-js";
import {
  chunkCount,
  issueTicket,
  openManifest,
  PublishStatus,
  SignedHashPiece,
  SignedManifest,
  streamIdFor,
  type ChecksumClient,
  type Manifest,
  type ManifestPart,
  type Publish,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { failedPrecondition, PublicError, type Logger } from "@distribustream/runtime";
import { boundsRange, type StreamMeta, type SwarmStore } from "@distribustream/swarm-store";
import type { Catalog } from "./catalog.js";
import type { NetworkKey } from "./networkKey.js";
import { httpBase } from "./peerAddress.js";
import { internalFailure } from "./peerErrors.js";
import type { Planner } from "./planner.js";
import type { ReplicaEvents } from "./replicaEvents.js";
import { joinAsSeeder, StreamGoneError } from "./seederSwarm.js";
import type { Session } from "./session.js";
import type { SessionRegistry } from "./sessions.js";
import type { TicketKeys } from "./ticketKeys.js";

/** Ticket lifetime of a manifest computation, and the least time it may take. */
const MANIFEST_TIMEOUT_MS = 10 * 60_000;
/** Slowest hashing rate waited for: a computation's deadline grows with the file (10 GiB: +21 min). */
const MIN_HASH_BYTES_PER_SECOND = 8 * 1024 * 1024;

export interface PublishFileOptions {
  store: SwarmStore;
  sessions: SessionRegistry;
  events: ReplicaEvents;
  catalog: Catalog;
  planner: Planner;
  networkKey: NetworkKey;
  checksum: ChecksumClient;
  ticketKeys: TicketKeys;
  /** Chunk size given to newly published streams. */
  chunkSize: number;
  /** Chunks per hash piece of newly published streams. */
  pieceChunks: number;
  log: Logger;
}

/**
 * The publish flow of a file (an on-demand stream): a seeder offers a file,
 * the checksum service hashes it from the seeder's data plane (or its
 * origin), the hash pieces are stored as they come, and the seeder joins the
 * stream's swarm as the holder of everything once the first piece is in.
 */
export class PublishFile {
  /** Manifest computations in progress by stream id: resolve undefined once joinable, else the reason. */
  private readonly pending = new Map<string, Promise<string | undefined>>();

  constructor(private readonly o: PublishFileOptions) {}

  /**
   * A seeder offers a file. When the stream is ready already, the seeder joins
   * its swarm at once (READY); otherwise the tracker answers ACCEPTED and
   * finishes in the background: READY as soon as the first hash piece is
   * stored (the rest is hashed while viewers download), or REJECTED. A seeder that published
   * another version of the name in this session leaves that version's swarm
   * (its file changed, it can no longer serve the old bytes).
   */
  async publish(s: Session, p: Publish, retried = false): Promise<void> {
    const { store, events, log } = this.o;
    const streamId = streamIdFor(p.name, p.size, p.version);
    const before = s.publishing(p.name, streamId);
    await events.useStream(s.peerId, streamId, true);
    if (before !== undefined && before !== streamId) {
      await events.useStream(s.peerId, before, false);
      s.leftSwarm(before);
      this.o.planner.forget(before, s.peerId);
      await events.leaveSwarm(before, s.peerId);
      log.info({ peerId: s.peerId, name: p.name, old: before, streamId }, "publish: seeder left the older version");
    }
    let existing = await store.getStream(streamId);
    if (existing?.status === "failed" && !this.pending.has(streamId)) {
      // its hashing failed midway: published again, it is hashed afresh
      await store.removeStream(streamId);
      this.o.catalog.forgetStream(streamId);
      existing = undefined;
    }
    const chunkSize = existing?.chunkSize ?? this.o.chunkSize;
    const result = (status: PublishStatus, detail = "") => publishResult(p.name, streamId, status, detail, chunkSize);
    if (existing?.status === "ready") {
      if (before === streamId && (await store.getPeer(streamId, s.peerId))) {
        // published again unchanged: keep the record, so its uploads go on
        s.send(result(PublishStatus.PUBLISH_STATUS_READY));
        return;
      }
      let added: boolean;
      try {
        added = await this.addSeeder(s, p.name, existing);
      } catch (err) {
        // retired between the read and the join (nobody was in it): published afresh, once
        if (!(err instanceof StreamGoneError) || retried) throw err;
        log.info(
          { peerId: s.peerId, name: p.name, streamId },
          "publish: the stream retired meanwhile, publishing it afresh",
        );
        return this.publish(s, p, true);
      }
      if (added) {
        s.send(result(PublishStatus.PUBLISH_STATUS_READY));
        log.info({ peerId: s.peerId, name: p.name, streamId }, "publish: stream already ready, seeder added");
      }
      return;
    }
    if (!existing) {
      await store.createStream({
        streamId,
        name: p.name,
        size: p.size,
        chunkSize,
        version: p.version,
        kind: "file",
        createdMs: Date.now(),
      });
    }
    s.send(result(PublishStatus.PUBLISH_STATUS_ACCEPTED));
    let pending = this.pending.get(streamId);
    if (!pending) {
      pending = this.computeManifest(s, p, streamId, chunkSize).finally(() => this.pending.delete(streamId));
      this.pending.set(streamId, pending);
    }
    const current = () => !s.closed && s.publishedStream(p.name) === streamId;
    pending
      .then(async (failure) => {
        if (!current()) return; // closed, unpublished or superseded by a newer version meanwhile
        if (failure !== undefined) {
          s.unpublishing(p.name);
          await events.useStream(s.peerId, streamId, false);
          s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, failure));
          return;
        }
        const meta = await store.getStream(streamId);
        if (!meta || !current()) return;
        if (await this.addSeeder(s, p.name, meta)) s.send(result(PublishStatus.PUBLISH_STATUS_READY));
      })
      .catch((err: unknown) => {
        const failure = internalFailure("tracker error while adding the seeder");
        log.error(
          { err, errorId: failure.errorId, peerId: s.peerId, name: p.name, streamId },
          "publish: adding the seeder failed",
        );
        if (current()) s.send(result(PublishStatus.PUBLISH_STATUS_REJECTED, failure.message));
      });
  }

  /** Puts the seeder in a ready stream's swarm as the holder of everything (see joinAsSeeder). */
  private addSeeder(s: Session, name: string, meta: StreamMeta): Promise<boolean> {
    const have = meta.low <= meta.high ? [boundsRange(meta)] : [];
    return joinAsSeeder(this.o.store, this.o.events, s, name, meta.streamId, have);
  }

  /**
   * Asks the checksum service for the signed manifest and stores its hash
   * pieces as they arrive. Resolves once the stream is joinable (its first
   * piece stored: undefined) or could not be made so (the reason, safe to
   * show the seeder). Hashing goes on in the background; should it fail
   * after that, the stream fails (see failHashing).
   */
  private computeManifest(s: Session, p: Publish, streamId: string, chunkSize: number): Promise<string | undefined> {
    const log = this.o.log.child({ peerId: s.peerId, name: p.name, streamId });
    const sourceUrl = httpBase(s.internalHost, s.internalPort);
    return new Promise<string | undefined>((settle) => {
      let ready = false;
      const onReady = () => {
        ready = true;
        settle(undefined);
      };
      this.hashStream(s, p, streamId, chunkSize, sourceUrl, log, onReady).then(
        () => {
          if (!ready) settle("manifest not computed: the checksum service sent no manifest");
        },
        async (err: unknown) => {
          // the checksum service's answers and the tracker's own PublicErrors are for the seeder; the rest is logged
          const internal = err instanceof PublicError ? undefined : internalFailure();
          const reason = `manifest not computed: ${internal?.message ?? (err as Error).message}`;
          log[internal ? "error" : "warn"](
            {
              sourceUrl,
              originUrl: p.originUrl || undefined,
              reason,
              ready,
              ...(internal ? { err, errorId: internal.errorId } : {}),
            },
            ready ? "hashing failed after the stream was joinable" : "publish rejected",
          );
          if (ready) return this.failHashing(streamId, p.name, reason);
          const meta = await this.o.store.getStream(streamId).catch(() => undefined);
          if (meta && meta.status !== "ready") await this.o.store.removeStream(streamId).catch(() => undefined);
          settle(reason);
        },
      );
    });
  }

  /**
   * Reads one ComputeManifest stream: checks the header against the published
   * file and each piece's signature and place, stores each piece (raising the
   * stream's hashed frontier, which replans the fetchers waiting for it) and
   * marks the stream ready with its first piece (or at once for an empty file).
   */
  private async hashStream(
    s: Session,
    p: Publish,
    streamId: string,
    chunkSize: number,
    sourceUrl: string,
    log: Logger,
    onReady: () => void,
  ): Promise<void> {
    const { store, events } = this.o;
    const count = chunkCount(p.size, chunkSize);
    const timeoutMs = MANIFEST_TIMEOUT_MS + Math.ceil((p.size / MIN_HASH_BYTES_PER_SECOND) * 1000);
    const ticket = issueTicket(
      {
        streamId,
        range: { first: 0, last: Math.max(0, count - 1) },
        fetcherId: "checksum",
        serverId: s.peerId,
        expiresMs: Date.now() + MANIFEST_TIMEOUT_MS,
      },
      this.o.ticketKeys.signer,
    );
    const key = await this.o.networkKey.get();
    const call = this.o.checksum.computeManifest(
      {
        streamId,
        name: p.name,
        size: p.size,
        chunkSize,
        version: p.version,
        sourceUrl,
        ticket,
        pieceChunks: this.o.pieceChunks,
        // an origin's bytes are hashed from the origin itself, with the seeder's validator
        ...(p.originUrl
          ? {
              originUrl: p.originUrl,
              originEtag: p.originEtag ?? "",
              originLastModified: p.originLastModified ?? "",
            }
          : {}),
      },
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
    );
    const started = Date.now();
    let manifest: Manifest | undefined;
    let header: SignedManifest | undefined;
    let next = 0;
    const becomeReady = async () => {
      const { replaced } = await store.markReady(streamId, SignedManifest.encode(header!).finish(), Date.now());
      log.info(
        { size: p.size, chunks: count, pieces: manifest!.pieceCount, replaced, ms: Date.now() - started },
        "publish: stream ready (first hash piece stored)",
      );
      events.announce(streamId, { type: "published", name: p.name });
      if (replaced) events.announce(replaced, { type: "retired", name: p.name, by: streamId });
      onReady();
    };
    try {
      for await (const part of checksumParts(call)) {
        if (part.part?.$case === "header") {
          if (manifest) throw new Error("the checksum service sent two manifest headers");
          header = part.part.value;
          manifest = openManifest(header, [key]);
          const b = manifest.body;
          if (
            b.streamId !== streamId ||
            b.name !== p.name ||
            b.size !== p.size ||
            b.chunkSize !== chunkSize ||
            b.version !== p.version
          ) {
            throw new Error(
              `manifest does not describe the published file (got ${b.name} size ${b.size} chunk ${b.chunkSize} v${b.version})`,
            );
          }
        } else if (part.part?.$case === "piece") {
          if (!manifest) throw new Error("the checksum service sent a hash piece before the manifest header");
          const piece = manifest.openPiece(part.part.value, [key], next);
          const stored = await store.putHashPiece(
            streamId,
            next,
            SignedHashPiece.encode(part.part.value).finish(),
            piece.last + 1,
          );
          if (!stored) throw failedPrecondition("the stream was removed while it was being hashed");
          if (next === 0) await becomeReady();
          next++;
        }
      }
    } finally {
      call.cancel();
    }
    if (!manifest) throw new Error("the checksum service sent no manifest header");
    if (next !== manifest.pieceCount) {
      throw new Error(`the checksum service sent ${next} of ${manifest.pieceCount} hash pieces`);
    }
    if (manifest.pieceCount === 0) await becomeReady();
    log.info({ pieces: next, ms: Date.now() - started }, "publish: stream fully hashed");
  }

  /**
   * The hashing of a joinable stream failed midway: the stream fails in the
   * store (its name is freed, its epoch bumped), so that every replica's plan
   * of its viewers ends their sessions with the reason (FAILED_PRECONDITION)
   * instead of leaving them waiting for hashes that will not come.
   */
  private async failHashing(streamId: string, name: string, reason: string): Promise<void> {
    try {
      await this.o.store.failStream(streamId, reason);
    } catch (err) {
      this.o.log.error({ err, streamId }, "marking the stream failed");
    }
    this.o.catalog.forgetStream(streamId);
    for (const s of this.o.sessions.all()) {
      if (s.joined.has(streamId)) s.requestPlan();
      else if (s.publishedStream(name) === streamId) {
        s.send({ body: { $case: "notice", value: { message: `"${name}" failed: ${reason}` } } });
      }
    }
  }
}

/** Statuses with which the checksum service answers its caller about the request or its source. */
const CHECKSUM_ANSWERS: ReadonlySet<grpc.status> = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.UNAVAILABLE,
  grpc.status.CANCELLED,
]);

/**
 * The parts of a ComputeManifest call. A status the checksum service itself
 * answered with becomes a PublicError: its message is meant for the caller
 * (e.g. "source answered 404"), and the seeder gets it. A failure of the call
 * (no connection, deadline, the client's own errors) stays internal: the
 * client makes those statuses up with neither the service's response headers
 * before them nor in them (a trailers-only answer carries a content-type).
 */
async function* checksumParts(call: grpc.ClientReadableStream<ManifestPart>): AsyncGenerator<ManifestPart> {
  let answered = false;
  call.once("metadata", () => (answered = true));
  try {
    for await (const part of call as AsyncIterable<ManifestPart>) yield part;
  } catch (err) {
    const e = err as Partial<grpc.ServiceError>;
    const sent = answered || (e.metadata?.get("content-type").length ?? 0) > 0;
    if (sent && typeof e.code === "number" && CHECKSUM_ANSWERS.has(e.code) && e.details) {
      throw new PublicError(e.code, e.details);
    }
    throw err;
  }
}

function publishResult(
  name: string,
  streamId: string,
  status: PublishStatus,
  detail: string,
  chunkSize: number,
): TrackerMessage {
  return { body: { $case: "publishResult", value: { name, streamId, status, detail, chunkSize } } };
}
