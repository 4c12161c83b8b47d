import { createHash } from "node:crypto";
import {
  HashPieceBody,
  ManifestBody,
  type PublicKey,
  type SignedHashPiece,
  type SignedManifest,
} from "./gen/pdtp/v1/common.js";
import { chunkCount, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "./chunks.js";
import { verifySignature, type Signer } from "./keys.js";

export const HASH_BYTES = 32;
/**
 * Chunks per hash piece by default: 8 KiB of hashes, 64 MiB of file at 256 KiB
 * chunks. A stream is joinable once its first piece is hashed, so this is what
 * a viewer waits for at most before its first byte; 100 GiB make 1600 pieces.
 */
export const DEFAULT_PIECE_CHUNKS = 256;
/** Most chunks per hash piece: 512 KiB of hashes, well inside a gRPC message. */
export const MAX_PIECE_CHUNKS = 16_384;

export class ManifestError extends Error {
  override name = "ManifestError";
}

/** Signs a manifest header with the network key. */
export function signManifest(body: ManifestBody, signer: Signer): SignedManifest {
  const bytes = Buffer.from(ManifestBody.encode(body).finish());
  return { body: bytes, signature: signer.sign(bytes), keyId: signer.keyId };
}

/** Signs one hash piece with the network key. */
export function signHashPiece(body: HashPieceBody, signer: Signer): SignedHashPiece {
  const bytes = Buffer.from(HashPieceBody.encode(body).finish());
  return { body: bytes, signature: signer.sign(bytes), keyId: signer.keyId };
}

/** SHA-256 of a signed manifest's encoded header: what every hash piece of it names. */
export function headerDigest(signed: SignedManifest): Buffer {
  return createHash("sha256").update(signed.body).digest();
}

/** Number of hash pieces of `chunks` chunks at `pieceChunks` chunks each. */
export function pieceCount(chunks: number, pieceChunks: number): number {
  return Math.ceil(chunks / pieceChunks);
}

/**
 * A verified manifest header: size, chunk size and how the chunk hashes are
 * cut into pieces. Only `openManifest` makes one, so holding a Manifest means
 * its signature and numbers were checked. The hashes themselves come in
 * signed pieces, opened with `openPiece`.
 */
export class Manifest {
  readonly chunkCount: number;
  readonly pieceChunks: number;
  readonly pieceCount: number;
  /** SHA-256 of the encoded header (HashPieceBody.header_sha256). */
  readonly digest: Buffer;

  constructor(
    readonly body: ManifestBody,
    readonly signed: SignedManifest,
  ) {
    this.chunkCount = chunkCount(body.size, body.chunkSize);
    this.pieceChunks = body.pieceChunks;
    this.pieceCount = pieceCount(this.chunkCount, body.pieceChunks);
    this.digest = headerDigest(signed);
  }

  get streamId(): string {
    return this.body.streamId;
  }

  /** The hash piece that holds chunk `index`'s hash. */
  pieceOf(index: number): number {
    return Math.floor(index / this.pieceChunks);
  }

  /** Chunks [first, last] whose hashes piece `piece` holds. */
  pieceRange(piece: number): { first: number; last: number } {
    const first = piece * this.pieceChunks;
    return { first, last: Math.min(first + this.pieceChunks, this.chunkCount) - 1 };
  }

  /**
   * Verifies a signed hash piece against this header; throws ManifestError
   * saying what is wrong (bad signature, another stream, version, header or
   * position, wrong number of hashes). `expected`: the piece number asked for.
   */
  openPiece(signed: SignedHashPiece, trusted: readonly PublicKey[], expected?: number): HashPiece {
    const what = expected === undefined ? "hash piece" : `hash piece ${expected}`;
    if (!verifySignature(trusted, signed.keyId, signed.body, signed.signature)) {
      throw new ManifestError(
        trusted.some((k) => k.keyId === signed.keyId)
          ? `${what} signature does not verify`
          : `${what} signed by unknown key ${signed.keyId || "(none)"}`,
      );
    }
    let body: HashPieceBody;
    try {
      body = HashPieceBody.decode(signed.body);
    } catch (err) {
      throw new ManifestError(`${what} does not decode: ${(err as Error).message}`);
    }
    if (body.streamId !== this.streamId || body.version !== this.body.version) {
      throw new ManifestError(
        `${what} belongs to stream ${body.streamId.slice(0, 64)} version ${body.version}, not ${this.streamId} version ${this.body.version}`,
      );
    }
    if (expected !== undefined && body.index !== expected) {
      throw new ManifestError(`${what} is piece ${body.index} of the stream`);
    }
    if (!Number.isSafeInteger(body.index) || body.index >= this.pieceCount) {
      throw new ManifestError(`${what} has index ${body.index}, the stream has ${this.pieceCount} pieces`);
    }
    if (!this.digest.equals(body.headerSha256)) {
      throw new ManifestError(`${what} was made for another manifest header of the stream`);
    }
    const range = this.pieceRange(body.index);
    const want = (range.last - range.first + 1) * HASH_BYTES;
    if (body.chunkHashes.length !== want) {
      throw new ManifestError(`${what} has ${body.chunkHashes.length} hash bytes, expected ${want}`);
    }
    return new HashPiece(body.index, range.first, range.last, Buffer.from(body.chunkHashes));
  }
}

/** The verified hashes of one piece: chunks [first, last]. Made by Manifest.openPiece. */
export class HashPiece {
  constructor(
    readonly index: number,
    readonly first: number,
    readonly last: number,
    private readonly hashes: Buffer,
  ) {}

  get bytes(): number {
    return this.hashes.length;
  }

  /** SHA-256 of chunk `index` (which must be in this piece). */
  hashOf(index: number): Buffer {
    return this.hashes.subarray((index - this.first) * HASH_BYTES, (index - this.first + 1) * HASH_BYTES);
  }

  /** True when `sha256` (32 bytes) is the expected hash of chunk `index`. */
  matches(index: number, sha256: Uint8Array): boolean {
    return index >= this.first && index <= this.last && this.hashOf(index).equals(sha256);
  }
}

/** Verifies and decodes a signed manifest header; throws ManifestError saying what is wrong. */
export function openManifest(signed: SignedManifest, trusted: readonly PublicKey[]): Manifest {
  if (!verifySignature(trusted, signed.keyId, signed.body, signed.signature)) {
    throw new ManifestError(
      trusted.some((k) => k.keyId === signed.keyId)
        ? "manifest signature does not verify"
        : `manifest signed by unknown key ${signed.keyId || "(none)"}`,
    );
  }
  let body: ManifestBody;
  try {
    body = ManifestBody.decode(signed.body);
  } catch (err) {
    throw new ManifestError(`manifest does not decode: ${(err as Error).message}`);
  }
  if (body.chunkSize < MIN_CHUNK_SIZE || body.chunkSize > MAX_CHUNK_SIZE) {
    throw new ManifestError(`manifest chunk size ${body.chunkSize} out of bounds`);
  }
  if (!Number.isSafeInteger(body.size) || body.size < 0) throw new ManifestError(`manifest size ${body.size} invalid`);
  if (body.pieceChunks < 1 || body.pieceChunks > MAX_PIECE_CHUNKS) {
    throw new ManifestError(`manifest piece size ${body.pieceChunks} chunks out of bounds`);
  }
  return new Manifest(body, signed);
}

/**
 * Cuts the hashes of a whole file into signed pieces (for tests and tools;
 * the checksum service signs each piece as its chunks are hashed).
 */
export function signPieces(manifest: SignedManifest, chunkHashes: Uint8Array, signer: Signer): SignedHashPiece[] {
  const body = ManifestBody.decode(manifest.body);
  const digest = headerDigest(manifest);
  const per = body.pieceChunks * HASH_BYTES;
  const all = Buffer.from(chunkHashes.buffer, chunkHashes.byteOffset, chunkHashes.length);
  const out: SignedHashPiece[] = [];
  for (let i = 0; i * per < all.length; i++) {
    out.push(
      signHashPiece(
        {
          streamId: body.streamId,
          version: body.version,
          index: i,
          headerSha256: digest,
          chunkHashes: all.subarray(i * per, (i + 1) * per),
        },
        signer,
      ),
    );
  }
  return out;
}
