import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  ChecksumService,
  chunkCount,
  signManifest,
  type ComputeManifestRequest,
  type ManifestBody,
  type PublicKey,
  type SignedManifest,
  type Signer,
} from "@distribustream/pdtp";

/**
 * A small real gRPC server standing in for the checksum service (written
 * concurrently elsewhere): it answers GetNetworkKey and signs a manifest of
 * the requested shape with its own key. Names starting with "reject/" fail.
 */
export async function startChecksumDouble(network: Signer) {
  const server = new grpc.Server();
  const requests: ComputeManifestRequest[] = [];
  server.addService(ChecksumService, {
    getNetworkKey: (_call: unknown, cb: grpc.sendUnaryData<PublicKey>) => cb(null, network.publicKey),
    computeManifest: (
      call: grpc.ServerUnaryCall<ComputeManifestRequest, SignedManifest>,
      cb: grpc.sendUnaryData<SignedManifest>,
    ) => {
      const r = call.request;
      requests.push(r);
      if (r.name.startsWith("reject/")) {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: "source answered 404" });
        return;
      }
      const n = chunkCount(r.size, r.chunkSize);
      const hashes = Buffer.concat(
        Array.from({ length: n }, (_, i) => createHash("sha256").update(`${r.name}:${i}`).digest()),
      );
      const body: ManifestBody = {
        streamId: r.streamId,
        name: r.name,
        size: r.size,
        chunkSize: r.chunkSize,
        chunkHashes: hashes,
        createdMs: Date.now(),
        version: r.version,
      };
      cb(null, signManifest(body, network));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, requests, close: () => server.forceShutdown() };
}
