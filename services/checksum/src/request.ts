import {
  chunkCount,
  DEFAULT_PIECE_CHUNKS,
  MalformedMessage,
  MAX_PIECE_CHUNKS,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  originUrlProblem,
  originValidatorProblem,
  streamIdFor,
  streamNameProblem,
  type ComputeManifestRequest,
  type OriginValidator,
  type SignedTicket,
} from "@distribustream/pdtp";
import { invalidArgument } from "@distribustream/runtime";

/** A ComputeManifest request that passed validation. */
export interface ManifestJob {
  streamId: string;
  name: string;
  size: number;
  chunkSize: number;
  version: number;
  chunkCount: number;
  /** Chunks per hash piece. */
  pieceChunks: number;
  /** Where the bytes are read from: the seeder's data plane, or the origin's host when `origin` is set. */
  source: { host: string; port: number; url: string };
  ticket: SignedTicket;
  /** The HTTP(S) origin whose bytes are authoritative, and the validator of the published version. */
  origin?: OriginValidator & { url: string; size: number };
}

/** Validates a request; throws INVALID_ARGUMENT naming the field that is wrong. */
export function validateRequest(req: ComputeManifestRequest | MalformedMessage): ManifestJob {
  if (req instanceof MalformedMessage) throw invalidArgument(`malformed ComputeManifest request: ${req.reason}`);
  const nameProblem = streamNameProblem(req.name);
  if (nameProblem) throw invalidArgument(`name: ${nameProblem}`);
  if (!Number.isSafeInteger(req.size) || req.size < 0)
    throw invalidArgument(`size ${req.size} is not a valid byte count`);
  if (!Number.isInteger(req.chunkSize) || req.chunkSize < MIN_CHUNK_SIZE || req.chunkSize > MAX_CHUNK_SIZE) {
    throw invalidArgument(`chunk_size ${req.chunkSize} is outside [${MIN_CHUNK_SIZE}, ${MAX_CHUNK_SIZE}]`);
  }
  if (!Number.isSafeInteger(req.version) || req.version < 0) throw invalidArgument(`version ${req.version} is invalid`);
  const count = chunkCount(req.size, req.chunkSize);
  const pieceChunks = req.pieceChunks || DEFAULT_PIECE_CHUNKS;
  if (!Number.isInteger(pieceChunks) || pieceChunks > MAX_PIECE_CHUNKS) {
    throw invalidArgument(`piece_chunks ${req.pieceChunks} is outside [1, ${MAX_PIECE_CHUNKS}]`);
  }
  const expected = streamIdFor(req.name, req.size, req.version);
  if (req.streamId !== expected) {
    throw invalidArgument(
      `stream_id "${req.streamId.slice(0, 64)}" does not match name, size and version (expected ${expected})`,
    );
  }
  const origin = req.originUrl ? validateOrigin(req) : undefined;
  if (!origin && (!req.ticket || req.ticket.body.length === 0)) throw invalidArgument("ticket is missing");
  return {
    streamId: req.streamId,
    name: req.name,
    size: req.size,
    chunkSize: req.chunkSize,
    version: req.version,
    chunkCount: count,
    pieceChunks,
    source: origin ? originSource(origin.url) : parseSourceUrl(req.sourceUrl),
    ticket: req.ticket ?? { body: Buffer.alloc(0), signature: Buffer.alloc(0), keyId: "" },
    ...(origin ? { origin: { ...origin, size: req.size } } : {}),
  };
}

/**
 * The origin of a request: an http(s) URL (nothing else is fetched, whoever
 * asks) and exactly one validator, a strong ETag or a Last-Modified date.
 */
function validateOrigin(req: ComputeManifestRequest): OriginValidator & { url: string } {
  const url = req.originUrl ?? "";
  const problem = originUrlProblem(url);
  if (problem) throw invalidArgument(`origin_url: ${problem}`);
  const validator = req.originEtag ? { etag: req.originEtag } : { lastModified: req.originLastModified ?? "" };
  const vProblem = originValidatorProblem({ etag: req.originEtag, lastModified: req.originLastModified });
  if (vProblem) throw invalidArgument(`origin validator: ${vProblem}`);
  return { url, ...validator };
}

function originSource(url: string): { host: string; port: number; url: string } {
  const u = new URL(url);
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port: u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80, url };
}

/** Parses a data-plane base URL, http://host:port with nothing after the port. */
export function parseSourceUrl(raw: string): { host: string; port: number; url: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalidArgument(`source_url "${raw.slice(0, 200)}" is not a URL (expected http://HOST:PORT)`);
  }
  if (u.protocol !== "http:") throw invalidArgument(`source_url "${raw.slice(0, 200)}" must use http://`);
  if (!u.hostname) throw invalidArgument(`source_url "${raw.slice(0, 200)}" has no host`);
  if (u.username || u.password || u.search || u.hash || (u.pathname !== "/" && u.pathname !== "")) {
    throw invalidArgument(`source_url "${raw.slice(0, 200)}" must be just http://HOST:PORT`);
  }
  const port = u.port ? Number(u.port) : 80;
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port, url: `${u.protocol}//${u.host}` };
}
