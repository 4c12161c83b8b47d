import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumService,
  chunkCount,
  DEFAULT_PIECE_CHUNKS,
  signManifest,
  signPieces,
  type ComputeManifestRequest,
  type ManifestBody,
  type ManifestPart,
  type PublicKey,
  type Signer,
} from "@distribustream/pdtp";

/** The hash the double gives chunk `index` of `name`. */
export function doubleChunkHash(name: string, index: number): Buffer {
  return createHash("sha256").update(`${name}:${index}`).digest();
}

/**
 * A small real gRPC server standing in for the checksum service: it answers
 * GetNetworkKey and streams a signed header and signed hash pieces of the
 * requested shape with its own key (chunk i of NAME hashes as
 * doubleChunkHash). Names starting with "reject/" fail at once; "hold/" stop
 * after the first piece until `release(name)`; "fail-midway/" do the same,
 * then fail with UNAVAILABLE "source went away".
 */
export async function startChecksumDouble(network: Signer) {
  const server = new grpc.Server();
  const requests: ComputeManifestRequest[] = [];
  const gates = new Map<string, { open: Promise<void>; release: () => void }>();
  const gate = (name: string) => {
    let g = gates.get(name);
    if (!g) {
      let release!: () => void;
      const open = new Promise<void>((r) => (release = r));
      gates.set(name, (g = { open, release }));
    }
    return g;
  };
  server.addService(ChecksumService, {
    getNetworkKey: (_call: unknown, cb: grpc.sendUnaryData<PublicKey>) => cb(null, network.publicKey),
    computeManifest: (call: grpc.ServerWritableStream<ComputeManifestRequest, ManifestPart>) => {
      // grpc-js ignores a handler's promise: run the async part on its own
      void (async () => {
        const r = call.request;
        requests.push(r);
        if (r.name.startsWith("reject/")) {
          call.emit("error", { code: grpc.status.FAILED_PRECONDITION, details: "source answered 404" });
          return;
        }
        const n = chunkCount(r.size, r.chunkSize);
        const hashes = Buffer.concat(Array.from({ length: n }, (_, i) => doubleChunkHash(r.name, i)));
        const body: ManifestBody = {
          streamId: r.streamId,
          name: r.name,
          size: r.size,
          chunkSize: r.chunkSize,
          createdMs: Date.now(),
          version: r.version,
          pieceChunks: r.pieceChunks || DEFAULT_PIECE_CHUNKS,
        };
        const header = signManifest(body, network);
        call.write({ part: { $case: "header", value: header } });
        const pieces = signPieces(header, hashes, network);
        for (const [i, piece] of pieces.entries()) {
          if (i === 1 && (r.name.startsWith("hold/") || r.name.startsWith("fail-midway/"))) {
            await gate(r.name).open;
            if (r.name.startsWith("fail-midway/")) {
              call.emit("error", { code: grpc.status.UNAVAILABLE, details: "source went away" });
              return;
            }
          }
          call.write({ part: { $case: "piece", value: piece } });
        }
        call.end();
      })();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    port,
    requests,
    /** Lets a "hold/" or "fail-midway/" computation of `name` go on. */
    release: (name: string) => gate(name).release(),
    close: () => server.forceShutdown(),
  };
}
