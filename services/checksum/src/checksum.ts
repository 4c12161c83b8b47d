import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { FetchError, keepAliveAgent, originAgents, type OriginPolicy } from "@distribustream/data-plane";
import {
  ChecksumService,
  HASH_BYTES,
  headerDigest,
  MalformedMessage,
  signHashPiece,
  signManifest,
  type ChecksumServer,
  type AttestLiveChunksRequest,
  type ComputeManifestRequest,
  type LiveDescriptorBody,
  type ManifestPart,
  type Signer,
  tolerantService,
  joinHostPort,
} from "@distribustream/pdtp";
import {
  Counter,
  failedPrecondition,
  Health,
  Histogram,
  invalidArgument,
  PublicError,
  serverCredentials,
  toServiceError,
  unavailable,
  type Logger,
  type Registry,
  type ServerTls,
} from "@distribustream/runtime";
import { attestChunks, signDescriptor, validateAttest } from "./live.js";
import { validateRequest, type ManifestJob } from "./request.js";
import { Semaphore } from "./semaphore.js";
import { readStreamChunks } from "./source.js";

export const CHECKSUM_SERVICE_NAME = "pdtp.v1.Checksum";

export interface ChecksumOptions {
  host: string;
  port: number;
  /** On drain, how long the service answers NOT_SERVING while it goes on serving, before it closes (default 0). */
  drainDelayMs?: number;
  /** The network key; manifests are signed with it. */
  signer: Signer;
  log: Logger;
  registry: Registry;
  /** Manifests computed at once; further requests queue (default 2). */
  maxConcurrent?: number;
  /** Longest wait for bytes from the source (default 15 s). */
  fetchTimeoutMs?: number;
  /** Where HTTP origins may be fetched from (default: no loopback, private, link-local or reserved address). */
  originPolicy?: OriginPolicy;
  /** Certificate and key: the gRPC port speaks TLS. Plaintext without. */
  tls?: ServerTls | undefined;
}

export interface RunningChecksum {
  port: number;
  health: Health;
  /** Stops taking calls, lets computations in flight finish (bounded), then closes. */
  drain(): Promise<void>;
}

const DRAIN_GRACE_MS = 10_000;
/** Largest request: a ComputeManifest request is a name (at most 1 KiB), a URL and a ticket. */
const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * The checksum service: reads a published stream from a seeder's data plane
 * with the tracker's ticket, hashes each chunk once as it arrives (nothing is
 * written to disk; one chunk and one piece of hashes per computation are in
 * memory) and streams the signed manifest header, then each signed hash
 * piece as soon as it is complete, so the stream is joinable long before a
 * big file is fully hashed.
 */
export async function startChecksum(opts: ChecksumOptions): Promise<RunningChecksum> {
  const log = opts.log;
  const metrics = checksumMetrics(opts.registry);
  const slots = new Semaphore(Math.max(1, opts.maxConcurrent ?? 2));
  const agent = keepAliveAgent();
  const origins = originAgents(opts.originPolicy);
  const inFlight = new Set<AbortController>();

  /**
   * Signs the header, then reads the stream in order and hands each signed
   * hash piece to `emit` as soon as its last chunk is hashed.
   */
  async function compute(job: ManifestJob, signal: AbortSignal, emit: (part: ManifestPart) => void): Promise<void> {
    const release = await slots.acquire(signal).catch(() => {
      throw new PublicError(grpc.status.CANCELLED, "cancelled while queued");
    });
    const started = process.hrtime.bigint();
    const header = signManifest(
      {
        streamId: job.streamId,
        name: job.name,
        size: job.size,
        chunkSize: job.chunkSize,
        createdMs: Date.now(),
        version: job.version,
        pieceChunks: job.pieceChunks,
      },
      opts.signer,
    );
    emit({ part: { $case: "header", value: header } });
    const digest = headerDigest(header);
    // one piece of hashes in memory at a time, whatever the file size
    let piece = Buffer.alloc(Math.min(job.pieceChunks, job.chunkCount) * HASH_BYTES);
    let pieceIndex = 0;
    try {
      if (job.chunkCount > 0) {
        let next = 0;
        await readStreamChunks(job, {
          signal,
          agent,
          originAgents: origins,
          timeoutMs: opts.fetchTimeoutMs,
          onChunk: (index, data) => {
            if (index !== next) throw new Error(`chunk ${index} arrived, expected ${next}`);
            const slot = index - pieceIndex * job.pieceChunks;
            createHash("sha256")
              .update(data)
              .digest()
              .copy(piece, slot * HASH_BYTES);
            metrics.bytes.inc(data.length);
            next++;
            if (slot + 1 === piece.length / HASH_BYTES) {
              emit({
                part: {
                  $case: "piece",
                  value: signHashPiece(
                    {
                      streamId: job.streamId,
                      version: job.version,
                      index: pieceIndex,
                      headerSha256: digest,
                      chunkHashes: piece,
                    },
                    opts.signer,
                  ),
                },
              });
              metrics.pieces.inc();
              pieceIndex++;
              piece = Buffer.alloc(Math.min(job.pieceChunks, job.chunkCount - next) * HASH_BYTES);
            }
          },
        });
      }
    } catch (err) {
      if (err instanceof FetchError) {
        const why = `reading ${job.name} from ${job.source.url} failed: ${err.message}`;
        // A 400 means this service built a bad request: a bug here, not the source's fault.
        if (err.status === 400) throw new PublicError(grpc.status.INTERNAL, why);
        throw err.kind === "refused" ? failedPrecondition(why) : unavailable(why);
      }
      throw err;
    } finally {
      release();
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.duration.observe(seconds);
    log.info(
      {
        streamId: job.streamId,
        name: job.name,
        size: job.size,
        chunks: job.chunkCount,
        pieces: pieceIndex,
        seconds,
        source: job.source.url,
      },
      "manifest signed",
    );
  }

  const impl: ChecksumServer = {
    computeManifest(call) {
      const req = call.request as ComputeManifestRequest | MalformedMessage;
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      inFlight.add(ac);
      let job: ManifestJob;
      try {
        job = validateRequest(req);
      } catch (err) {
        inFlight.delete(ac);
        metrics.manifests.inc({ result: "error" });
        log.info({ err: (err as Error).message }, "ComputeManifest refused");
        call.emit("error", toServiceError(err, log));
        return;
      }
      compute(job, ac.signal, (part) => call.write(part))
        .then(
          () => {
            metrics.manifests.inc({ result: "ok" });
            call.end();
          },
          (err: unknown) => {
            metrics.manifests.inc({ result: "error" });
            if (err instanceof PublicError) {
              log.warn({ streamId: job.streamId, name: job.name, reason: err.message }, "manifest not computed");
            }
            call.emit("error", toServiceError(err, log));
          },
        )
        .finally(() => inFlight.delete(ac));
    },
    signLiveDescriptor(call, callback) {
      try {
        const signed = signDescriptor(call.request as LiveDescriptorBody | MalformedMessage, opts.signer);
        metrics.liveDescriptors.inc();
        callback(null, signed);
      } catch (err) {
        log.info({ err: (err as Error).message }, "SignLiveDescriptor refused");
        callback(toServiceError(err, log));
      }
    },
    attestLiveChunks(call, callback) {
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      let job;
      try {
        job = validateAttest(call.request as AttestLiveChunksRequest | MalformedMessage, Date.now());
      } catch (err) {
        metrics.liveRefused.inc();
        log.info({ err: (err as Error).message }, "AttestLiveChunks refused");
        return callback(toServiceError(err, log));
      }
      inFlight.add(ac);
      attestChunks(job, {
        signer: opts.signer,
        agent,
        signal: ac.signal,
        timeoutMs: opts.fetchTimeoutMs,
        onBytes: (n) => metrics.bytes.inc(n),
        onFalseRandomAccess: (seq) => {
          metrics.liveRandomAccessRefused.inc();
          log.warn({ streamId: job.streamId, seq }, "a live chunk claimed to begin at a random access point does not");
        },
      })
        .then(
          (attestations) => {
            metrics.liveAttested.inc(attestations.length);
            callback(null, { attestations });
          },
          (err: unknown) => {
            metrics.liveRefused.inc();
            if (err instanceof PublicError)
              log.warn({ streamId: job.streamId, reason: err.message }, "live chunks not attested");
            callback(toServiceError(err, log));
          },
        )
        .finally(() => inFlight.delete(ac));
    },
    getNetworkKey(call, callback) {
      if (call.request instanceof MalformedMessage) {
        return callback(toServiceError(invalidArgument(`malformed request: ${call.request.reason}`), log));
      }
      callback(null, opts.signer.publicKey);
    },
  };

  const server = new grpc.Server({
    "grpc.max_send_message_length": 8 * 1024 * 1024,
    "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
  });
  server.addService(tolerantService(ChecksumService), impl);
  const health = new Health([CHECKSUM_SERVICE_NAME]);
  health.addTo(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(joinHostPort(opts.host, opts.port), serverCredentials(opts.tls), (err, p) =>
      err ? reject(new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`)) : resolve(p),
    ),
  );
  health.set("SERVING");
  log.info(
    { host: opts.host, port, keyId: opts.signer.keyId, tls: opts.tls ? opts.tls.certFile : false },
    "checksum service listening",
  );

  let draining: Promise<void> | undefined;
  return {
    port,
    health,
    drain() {
      draining ??= (async () => {
        health.set("NOT_SERVING");
        if (opts.drainDelayMs) {
          opts.log.info({ delayMs: opts.drainDelayMs }, "NOT_SERVING: closing after the drain delay");
          await new Promise((resolve) => setTimeout(resolve, opts.drainDelayMs));
        }
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            for (const ac of inFlight) ac.abort();
            server.forceShutdown();
            resolve();
          }, DRAIN_GRACE_MS);
          force.unref();
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        agent.destroy();
        origins.destroy();
      })();
      return draining;
    },
  };
}

function checksumMetrics(registry: Registry) {
  return {
    manifests: new Counter({
      name: "pdtp_checksum_manifests_total",
      help: "ComputeManifest calls answered, by result (ok or error).",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    pieces: new Counter({
      name: "pdtp_checksum_hash_pieces_total",
      help: "Hash pieces signed and sent.",
      registers: [registry],
    }),
    bytes: new Counter({
      name: "pdtp_checksum_bytes_hashed_total",
      help: "Stream bytes read from sources and hashed.",
      registers: [registry],
    }),
    liveDescriptors: new Counter({
      name: "pdtp_checksum_live_descriptors_total",
      help: "Live stream descriptors signed.",
      registers: [registry],
    }),
    liveAttested: new Counter({
      name: "pdtp_checksum_live_chunks_attested_total",
      help: "Live chunks read from seeders, hashed and attested.",
      registers: [registry],
    }),
    liveRefused: new Counter({
      name: "pdtp_checksum_live_attest_failures_total",
      help: "AttestLiveChunks calls refused or failed (bad claims, unreachable or lying seeders).",
      registers: [registry],
    }),
    liveRandomAccessRefused: new Counter({
      name: "pdtp_checksum_live_random_access_refused_total",
      help: "Live chunks claimed to begin at an MPEG-TS random access point whose bytes do not (attested without the flag).",
      registers: [registry],
    }),
    duration: new Histogram({
      name: "pdtp_checksum_duration_seconds",
      help: "Time to read, hash and sign one manifest and all its pieces (after queueing).",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
  };
}
