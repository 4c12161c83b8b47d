import { createHash } from "node:crypto";

/** Longest origin URL accepted anywhere (seeder config, Publish, ComputeManifest). */
export const MAX_ORIGIN_URL_BYTES = 2048;

/**
 * What pins one version of an origin's bytes: a strong ETag, or, when the
 * origin gives none, its Last-Modified date. Exactly one is set.
 */
export interface OriginValidator {
  etag?: string | undefined;
  lastModified?: string | undefined;
}

/**
 * Why `raw` cannot be an origin URL, or undefined when it can: http or https
 * only (the checksum service fetches what seeders give, so nothing else),
 * with a host, no user name or password (they would reach logs and other
 * services) and no fragment.
 */
export function originUrlProblem(raw: string): string | undefined {
  if (Buffer.byteLength(raw) > MAX_ORIGIN_URL_BYTES) return `origin URL longer than ${MAX_ORIGIN_URL_BYTES} bytes`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return `"${raw.slice(0, 200)}" is not a URL`;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    return `origin URL "${raw.slice(0, 200)}" must use http:// or https:// (got ${u.protocol})`;
  }
  if (!u.hostname) return `origin URL "${raw.slice(0, 200)}" has no host`;
  if (u.username || u.password) return `origin URL must not carry a user name or password`;
  if (u.hash) return `origin URL "${raw.slice(0, 200)}" must not have a #fragment`;
  return undefined;
}

/** Why a validator is unusable (none, both, or a weak ETag), or undefined. */
export function originValidatorProblem(v: OriginValidator): string | undefined {
  const etag = v.etag ?? "";
  const lastModified = v.lastModified ?? "";
  if (etag && lastModified) return "give either an ETag or a Last-Modified validator, not both";
  if (!etag && !lastModified) return "no validator (ETag or Last-Modified)";
  if (etag && !/^"[\x21\x23-\x7e\x80-\xff]*"$/.test(etag))
    return `ETag ${etag.slice(0, 80)} is not a strong entity tag`;
  if (lastModified && Number.isNaN(Date.parse(lastModified))) {
    return `Last-Modified "${lastModified.slice(0, 80)}" is not an HTTP date`;
  }
  return undefined;
}

/**
 * The Publish.version of one origin version: 48 bits of SHA-256 over the URL
 * and the validator. Every seeder of the same origin computes the same one,
 * and a restart re-publishes the same stream id while the origin is unchanged.
 */
export function originVersion(url: string, v: OriginValidator): number {
  const h = createHash("sha256")
    .update(`${url}\0${v.etag ?? ""}\0${v.lastModified ?? ""}`)
    .digest();
  return h.readUIntBE(0, 6);
}
