import type { HashPiece, Manifest, PublicKey, SignedHashPiece } from "@distribustream/pdtp";
import { ByteCache } from "@distribustream/runtime/byteCache";

/** Most pieces asked for in one GetHashPieces call (the tracker's limit). */
export const MAX_PIECES_PER_CALL = 64;
/** Default bound on the verified hashes kept: 512 pieces of 8 KiB, 32 GiB of file at 256 KiB chunks. */
export const DEFAULT_PIECE_CACHE_BYTES = 4 * 1024 * 1024;

/** A piece the tracker could not give now (not hashed yet, tracker unreachable); the transfer can be retried. */
export class PieceUnavailable extends Error {
  override name = "PieceUnavailable";
}

/** Asks the tracker for signed pieces first, first + 1, ... (at most count; fewer when not hashed yet). */
export type PieceFetcher = (first: number, count: number) => Promise<SignedHashPiece[]>;

/**
 * The chunk hashes a download needs, piece by piece: fetched from the tracker
 * on demand, each verified with the network key against the manifest header
 * (Manifest.openPiece, which throws ManifestError for a piece that is forged,
 * tampered or not this stream's), kept in an LRU bounded in bytes, so memory
 * stays flat whatever the file size. Concurrent requests for a piece share
 * one call.
 */
export class HashPieceCache {
  private readonly pieces: ByteCache<number, HashPiece>;
  private readonly loading = new Map<number, Promise<void>>();

  constructor(
    private readonly manifest: Manifest,
    private readonly keys: () => readonly PublicKey[],
    private readonly fetch: PieceFetcher,
    maxBytes = DEFAULT_PIECE_CACHE_BYTES,
  ) {
    this.pieces = new ByteCache(maxBytes);
  }

  /** Number of pieces held now. */
  get size(): number {
    return this.pieces.size;
  }

  /** The verified piece holding chunk `index`'s hash; fetches it (and the next of `upTo`'s) when not held. */
  async pieceFor(index: number, upTo = index): Promise<HashPiece> {
    const p = this.manifest.pieceOf(index);
    const hit = this.pieces.get(p);
    if (hit) return hit;
    await this.load(p, Math.min(this.manifest.pieceCount - 1, this.manifest.pieceOf(upTo)));
    const got = this.pieces.get(p);
    if (!got) throw new PieceUnavailable(`hash piece ${p} is not available yet`);
    return got;
  }

  /** Fetches the pieces covering chunks [first, last] that are not held, ahead of their chunks. */
  prefetch(first: number, last: number): Promise<void> {
    return this.pieceFor(first, last).then(() => undefined);
  }

  private load(first: number, last: number): Promise<void> {
    const pending = this.loading.get(first);
    if (pending) return pending;
    const count = Math.min(MAX_PIECES_PER_CALL, last - first + 1);
    const load = (async () => {
      const got = await this.fetch(first, count);
      got.slice(0, count).forEach((signed, i) => {
        const piece = this.manifest.openPiece(signed, this.keys(), first + i);
        this.pieces.set(piece.index, piece, piece.bytes);
      });
    })().finally(() => this.loading.delete(first));
    this.loading.set(first, load);
    return load;
  }
}
