import { createHash } from "node:crypto";
import {
  isStreamId,
  MalformedMessage,
  SignedHashPiece,
  SignedManifest,
  StreamKind,
  type DescribeStreamRequest,
  type GetHashPiecesRequest,
  type GetHashPiecesResponse,
  type Joined,
  type ListStreamsResponse,
  type StreamDescriptor,
} from "@distribustream/pdtp";
import { ByteCache, failedPrecondition, invalidArgument, notFound } from "@distribustream/runtime";
import type { StreamMeta, SwarmStore } from "@distribustream/swarm-store";
import type { LiveWindows } from "./liveWindows.js";
import { checkName } from "./validate.js";

/** Manifest headers kept in memory for joins (encoded bytes). */
const MANIFEST_CACHE_BYTES = 64 * 1024 * 1024;
/** Hash pieces kept in memory for GetHashPieces (encoded bytes): many viewers ask for the same ones. */
const PIECE_CACHE_BYTES = 64 * 1024 * 1024;
/** Most hash pieces one GetHashPieces answer carries, and most bytes (it stays well under 4 MiB). */
const MAX_PIECES_PER_CALL = 64;
const MAX_PIECES_BYTES = 2 * 1024 * 1024;

/**
 * What peers read about the streams: descriptors (DescribeStream,
 * ListStreams), the manifest a viewer gets on joining and the signed hash
 * pieces (GetHashPieces), the last two cached, since they never change for
 * a stream id and creation time.
 */
export class Catalog {
  /** Decoded manifest headers of ready streams by cacheKey. */
  private readonly manifests = new ByteCache<string, SignedManifest>(MANIFEST_CACHE_BYTES);
  /** Signed hash pieces by "cacheKey/index". */
  private readonly pieces = new ByteCache<string, SignedHashPiece>(PIECE_CACHE_BYTES);
  /** Store reads of hash pieces in progress, so that viewers asking at once cause one read. */
  private readonly pieceLoads = new Map<string, Promise<number>>();

  constructor(
    private readonly store: SwarmStore,
    private readonly windows: LiveWindows,
  ) {}

  /**
   * The Joined answer for a ready stream (its manifest read from the store;
   * for a live stream, its signed descriptor and window), or undefined when
   * it has none.
   */
  async joinedMessage(meta: StreamMeta): Promise<Joined | undefined> {
    if (meta.kind === "live") {
      const d = await this.windows.descriptor(meta);
      if (!d) return undefined;
      return { descriptor: await this.descriptor(meta), live: d.signed };
    }
    const manifest = await this.manifestOf(meta);
    if (!manifest) return undefined;
    return { descriptor: await this.descriptor(meta), manifest };
  }

  /**
   * GetHashPieces: consecutive signed hash pieces of a ready stream, from
   * the cache (pieces never change for a stream id and creation time), else
   * from the store in one read shared by the viewers that ask at the same
   * time. The answer stops at the first piece not hashed yet and stays under
   * MAX_PIECES_BYTES. One meta read per call (O(1)) tells a failed or
   * republished stream apart.
   */
  async hashPieces(req: GetHashPiecesRequest | MalformedMessage): Promise<GetHashPiecesResponse> {
    if (req instanceof MalformedMessage) throw invalidArgument(`malformed request: ${req.reason}`);
    if (!isStreamId(req.streamId)) throw invalidArgument(`"${req.streamId.slice(0, 64)}" is not a stream id`);
    if (!Number.isSafeInteger(req.firstPiece) || req.count < 1 || req.count > MAX_PIECES_PER_CALL) {
      throw invalidArgument(`GetHashPieces wants first_piece >= 0 and count in [1, ${MAX_PIECES_PER_CALL}]`);
    }
    const meta = await this.store.getStream(req.streamId);
    if (meta?.status === "failed") throw failedPrecondition(`hashing of "${meta.name}" failed: ${meta.failure}`);
    if (!meta || meta.status !== "ready") throw notFound(`no stream with id "${req.streamId}"`);
    const gen = cacheKey(meta);
    const pieces: SignedHashPiece[] = [];
    let bytes = 0;
    const end = req.firstPiece + req.count;
    for (let i = req.firstPiece; i < end; i++) {
      const key = `${gen}/${i}`;
      let hit = this.pieces.get(key);
      if (!hit && (await this.loadPieces(gen, meta.streamId, i, end - i)) > 0) hit = this.pieces.get(key);
      const size = this.pieces.bytesOf(key);
      if (!hit || (pieces.length > 0 && bytes + size > MAX_PIECES_BYTES)) break;
      pieces.push(hit);
      bytes += size;
    }
    return { pieces };
  }

  async describeStream(req: DescribeStreamRequest | MalformedMessage): Promise<StreamDescriptor> {
    if (req instanceof MalformedMessage) throw invalidArgument(`malformed request: ${req.reason}`);
    let meta: StreamMeta | undefined;
    if (req.name) {
      checkName(req.name);
      const id = await this.store.streamIdByName(req.name);
      meta = id ? await this.store.getStream(id) : undefined;
      if (!meta || meta.status !== "ready") throw notFound(`no stream named "${req.name}"`);
    } else if (req.streamId) {
      if (!isStreamId(req.streamId)) throw invalidArgument(`"${req.streamId.slice(0, 64)}" is not a stream id`);
      meta = await this.store.getStream(req.streamId);
      if (!meta || meta.status !== "ready") throw notFound(`no stream with id "${req.streamId.slice(0, 64)}"`);
    } else {
      throw invalidArgument("DescribeStream needs a name or a stream_id");
    }
    return this.descriptor(meta);
  }

  async listStreams(req: unknown): Promise<ListStreamsResponse> {
    if (req instanceof MalformedMessage) throw invalidArgument(`malformed request: ${req.reason}`);
    const streams = await this.store.listStreams();
    return { streams: await Promise.all(streams.map((m) => this.descriptor(m))) };
  }

  /** Drops what this replica cached of a stream (its hashing failed); other replicas' entries are never read again. */
  forgetStream(streamId: string): void {
    const ofStream = (key: string) => key.startsWith(`${streamId}@`);
    this.manifests.deleteWhere(ofStream);
    this.pieces.deleteWhere(ofStream);
  }

  /**
   * A ready stream's manifest header, decoded. A stream id names fixed bytes,
   * so its manifest never changes: kept (up to MANIFEST_CACHE_BYTES) instead
   * of being read from the store on every join. Cached under the stream's
   * creation time too: a stream whose hashing failed and that is published
   * again gets a new header, which no replica may confuse with the old one.
   */
  private async manifestOf(meta: StreamMeta): Promise<SignedManifest | undefined> {
    const key = cacheKey(meta);
    const hit = this.manifests.get(key);
    if (hit) return hit;
    const bytes = await this.store.getManifest(meta.streamId);
    if (!bytes) return undefined;
    const manifest = SignedManifest.decode(bytes);
    this.manifests.set(key, manifest, bytes.length);
    return manifest;
  }

  /** Reads pieces [first, first + count) from the store into the cache; resolves how many it found. */
  private loadPieces(gen: string, streamId: string, first: number, count: number): Promise<number> {
    const key = `${gen}/${first}/${count}`;
    let load = this.pieceLoads.get(key);
    if (!load) {
      load = (async () => {
        const found = await this.store.getHashPieces(streamId, first, count);
        found.forEach((bytes, i) => {
          const k = `${gen}/${first + i}`;
          if (!this.pieces.has(k)) this.pieces.set(k, SignedHashPiece.decode(bytes), bytes.length);
        });
        return found.length;
      })().finally(() => this.pieceLoads.delete(key));
      this.pieceLoads.set(key, load);
    }
    return load;
  }

  private async descriptor(meta: StreamMeta): Promise<StreamDescriptor> {
    const counts = await this.store.peerCounts(meta.streamId);
    const live = meta.kind === "live" ? await this.windows.descriptor(meta) : undefined;
    // what a viewer verifies on joining: the manifest header (cached), or the live descriptor
    const signed = meta.kind === "live" ? live?.signed : await this.manifestOf(meta);
    return {
      streamId: meta.streamId,
      name: meta.name,
      // a live stream has no size, and its chunks are its moving bounds (told by its live descriptor)
      ...(meta.kind === "file"
        ? { kind: StreamKind.STREAM_KIND_ON_DEMAND, size: meta.size, chunkCount: meta.chunkCount }
        : { kind: StreamKind.STREAM_KIND_LIVE, size: 0, chunkCount: 0 }),
      chunkSize: meta.chunkSize,
      version: meta.version,
      peers: counts.peers,
      seeders: counts.seeders,
      ...(meta.kind === "live" && live ? { live: this.windows.window(meta, live.body.bitrate) } : {}),
      manifestSha256: signed ? createHash("sha256").update(signed.body).digest("hex") : "",
      networkKeyId: signed?.keyId ?? "",
    };
  }
}

/** Cache key of what a stream's publish produced: the id, and the creation time that tells a republish apart. */
function cacheKey(meta: StreamMeta): string {
  return `${meta.streamId}@${meta.createdMs}`;
}
