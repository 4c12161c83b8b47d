import { createHash } from "node:crypto";
import { ManifestBody, type PublicKey, type SignedManifest } from "./gen/pdtp/v1/common.js";
import { chunkCount, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "./chunks.js";
import { verifySignature, type Signer } from "./keys.js";

export const HASH_BYTES = 32;

export class ManifestError extends Error {
  override name = "ManifestError";
}

/** Signs a manifest body with the network key. */
export function signManifest(body: ManifestBody, signer: Signer): SignedManifest {
  const bytes = Buffer.from(ManifestBody.encode(body).finish());
  return { body: bytes, signature: signer.sign(bytes), keyId: signer.keyId };
}

/**
 * A verified manifest: the chunk hashes of one version of one stream.
 * Only `openManifest` makes one, so holding a Manifest means the signature,
 * sizes and hash count were all checked.
 */
export class Manifest {
  readonly chunkCount: number;

  constructor(
    readonly body: ManifestBody,
    readonly signed: SignedManifest,
  ) {
    this.chunkCount = chunkCount(body.size, body.chunkSize);
  }

  get streamId(): string {
    return this.body.streamId;
  }

  /** SHA-256 of chunk `index`. */
  hashOf(index: number): Buffer {
    const h = this.body.chunkHashes;
    return Buffer.from(h.buffer, h.byteOffset + index * HASH_BYTES, HASH_BYTES);
  }

  /** True when `sha256` (32 bytes) is the expected hash of chunk `index`. */
  matches(index: number, sha256: Uint8Array): boolean {
    return index >= 0 && index < this.chunkCount && this.hashOf(index).equals(sha256);
  }

  /** Content root: SHA-256 over size, chunk size and all chunk hashes. Equal roots mean equal bytes. */
  root(): string {
    const head = Buffer.alloc(12);
    head.writeBigUInt64BE(BigInt(this.body.size), 0);
    head.writeUInt32BE(this.body.chunkSize, 8);
    return createHash("sha256").update(head).update(this.body.chunkHashes).digest("hex");
  }
}

/** Verifies and decodes a signed manifest; throws ManifestError saying what is wrong. */
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
  const expected = chunkCount(body.size, body.chunkSize) * HASH_BYTES;
  if (body.chunkHashes.length !== expected) {
    throw new ManifestError(`manifest has ${body.chunkHashes.length} hash bytes, expected ${expected}`);
  }
  return new Manifest(body, signed);
}
