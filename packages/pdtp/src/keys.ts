import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import type { PublicKey } from "./gen/pdtp/v1/common.js";

/** Fingerprint of a raw Ed25519 public key: hex of the first 16 bytes of its SHA-256. */
export function keyId(rawPublicKey: Uint8Array): string {
  return createHash("sha256").update(rawPublicKey).digest("hex").slice(0, 32);
}

/** An Ed25519 private key with its public half, ready to sign. */
export class Signer {
  readonly publicKey: PublicKey;

  private constructor(private readonly key: KeyObject) {
    const x = key.export({ format: "jwk" }).x;
    if (typeof x !== "string") throw new Error("not an Ed25519 key");
    const raw = Buffer.from(x, "base64url");
    this.publicKey = { keyId: keyId(raw), ed25519: raw };
  }

  static generate(): Signer {
    return new Signer(generateKeyPairSync("ed25519").privateKey);
  }

  /** Reads a PKCS#8 PEM private key; throws if it is not Ed25519. */
  static fromPem(pem: string): Signer {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== "ed25519") throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType}`);
    return new Signer(key);
  }

  toPem(): string {
    return this.key.export({ format: "pem", type: "pkcs8" }).toString();
  }

  get keyId(): string {
    return this.publicKey.keyId;
  }

  sign(data: Uint8Array): Buffer {
    return sign(null, data, this.key);
  }
}

const verifyKeys = new Map<string, KeyObject>();

/** A KeyObject for a raw 32-byte Ed25519 public key, cached (bounded) since peers verify with the same few keys. */
function publicKeyObject(raw: Uint8Array): KeyObject {
  const x = Buffer.from(raw).toString("base64url");
  let key = verifyKeys.get(x);
  if (!key) {
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
    if (verifyKeys.size >= 1024) verifyKeys.clear();
    verifyKeys.set(x, key);
  }
  return key;
}

/** Verifies an Ed25519 signature with the raw 32-byte public key `raw`; false for a malformed key or signature. */
export function verifyWithKey(raw: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (raw.length !== 32 || signature.length !== 64) return false;
  try {
    return verify(null, data, publicKeyObject(raw), signature);
  } catch {
    return false;
  }
}

/** Verifies an Ed25519 signature with one of `keys` (chosen by keyId). */
export function verifySignature(
  keys: readonly PublicKey[],
  id: string,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const pk = keys.find((k) => k.keyId === id);
  if (!pk || pk.ed25519.length !== 32 || keyId(pk.ed25519) !== id) return false;
  return verifyWithKey(pk.ed25519, data, signature);
}
