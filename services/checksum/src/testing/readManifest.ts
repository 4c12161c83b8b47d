import type {
  ChecksumClient,
  ComputeManifestRequest,
  ManifestPart,
  SignedHashPiece,
  SignedManifest,
} from "@distribustream/pdtp";

/**
 * Reads a whole ComputeManifest stream: the header, then the hash pieces in
 * order. Rejects with the call's error, or when the header is missing or not
 * first (for tests; the tracker reads the stream piece by piece).
 */
export function readManifest(
  client: ChecksumClient,
  req: ComputeManifestRequest,
): Promise<{ header: SignedManifest; pieces: SignedHashPiece[] }> {
  return new Promise((resolve, reject) => {
    let header: SignedManifest | undefined;
    const pieces: SignedHashPiece[] = [];
    const call = client.computeManifest(req);
    call.on("data", (part: ManifestPart) => {
      if (part.part?.$case === "header") {
        if (header || pieces.length > 0) {
          call.cancel();
          reject(new Error("the manifest header came twice or after a piece"));
        }
        header = part.part.value;
      } else if (part.part?.$case === "piece") pieces.push(part.part.value);
    });
    call.on("error", reject);
    call.on("end", () => (header ? resolve({ header, pieces }) : reject(new Error("no manifest header"))));
  });
}
