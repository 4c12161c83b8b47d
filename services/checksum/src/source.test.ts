import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { originPolicy } from "@distribustream/data-plane";
import {
  ChecksumClient,
  chunkCount,
  openManifest,
  Signer,
  streamIdFor,
  type ComputeManifestRequest,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { readManifest } from "./testing/index.js";
import { startChecksum, type RunningChecksum } from "./index.js";

const log = createLogger("test", { level: "silent" });
const CHUNK = 4096;
const SIZE = CHUNK * 40 + 123;
const NAME = "films/origin.bin";
const VERSION = 42;
const STREAM = streamIdFor(NAME, SIZE, VERSION);
const networkKey = Signer.generate();
const etagOf = (b: Buffer) => `"${createHash("sha256").update(b).digest("hex").slice(0, 16)}"`;

/**
 * A real HTTP origin: ETag, one byte range, If-Match; `slow` sends a body in
 * 4 KiB pieces 20 ms apart, and `onBody` runs once a body has started.
 */
class Origin {
  content = randomBytes(SIZE);
  requests: IncomingHttpHeaders[] = [];
  slow = false;
  onBody: (() => void) | undefined;
  port = 0;
  private readonly server: Server = createServer((req, res) => {
    this.requests.push(req.headers);
    const body = this.content;
    const etag = etagOf(body);
    if (req.headers["if-match"] !== undefined && req.headers["if-match"] !== etag) {
      res.writeHead(412, { etag }).end();
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    if (!m) {
      res.writeHead(200, { etag, "content-length": String(body.length) }).end(body);
      return;
    }
    const first = Number(m[1]);
    const last = Math.min(Number(m[2]), body.length - 1);
    const part = body.subarray(first, last + 1);
    res.writeHead(206, {
      etag,
      "content-range": `bytes ${first}-${last}/${body.length}`,
      "content-length": String(part.length),
    });
    const started = this.onBody;
    this.onBody = undefined;
    if (!this.slow) {
      res.end(part);
      started?.();
      return;
    }
    void this.trickle(res, part, started);
  });

  private async trickle(res: ServerResponse, part: Buffer, started: (() => void) | undefined): Promise<void> {
    for (let at = 0; at < part.length; at += 4096) {
      res.write(part.subarray(at, at + 4096));
      if (at === 0) started?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    res.end();
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}/v/origin.bin`;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe("checksum service reading an HTTP origin", () => {
  const origin = new Origin();
  let service: RunningChecksum;
  let client: ChecksumClient;

  before(async () => {
    await origin.start();
    service = await startChecksum({
      host: "127.0.0.1",
      port: 0,
      signer: networkKey,
      log,
      registry: new Registry(),
      originPolicy: originPolicy(["127.0.0.1"]), // the test origin is on loopback
    });
    client = new ChecksumClient(`127.0.0.1:${service.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await service.drain();
    await origin.close();
  });

  // the seeder's data plane is a closed port: everything must come from the origin
  const request = (over: Partial<ComputeManifestRequest> = {}): ComputeManifestRequest => ({
    streamId: STREAM,
    name: NAME,
    size: SIZE,
    chunkSize: CHUNK,
    version: VERSION,
    sourceUrl: "http://127.0.0.1:9",
    ticket: undefined,
    pieceChunks: 0,
    originUrl: origin.url,
    originEtag: etagOf(origin.content),
    originLastModified: "",
    ...over,
  });
  const compute = (req: ComputeManifestRequest) => readManifest(client, req);
  const rejectsWith = (p: Promise<unknown>, code: grpc.status, re: RegExp) =>
    assert.rejects(p, (e: grpc.ServiceError) => {
      assert.equal(e.code, code, `code ${grpc.status[e.code]}: ${e.details}`);
      assert.match(e.details, re);
      return true;
    });

  it("hashes the bytes the origin serves, read conditionally on the published ETag", async () => {
    origin.slow = false;
    origin.requests = [];
    const { header, pieces } = await compute(request());
    const manifest = openManifest(header, [networkKey.publicKey]);
    for (let i = 0; i < chunkCount(SIZE, CHUNK); i++) {
      const chunk = origin.content.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, SIZE));
      const piece = manifest.openPiece(pieces[manifest.pieceOf(i)]!, [networkKey.publicKey], manifest.pieceOf(i));
      assert.ok(piece.matches(i, createHash("sha256").update(chunk).digest()), `chunk ${i}`);
    }
    assert.ok(origin.requests.length >= 1);
    for (const h of origin.requests) assert.equal(h["if-match"], etagOf(origin.content));
  });

  it("fails with FAILED_PRECONDITION when the origin no longer has the published version", async () => {
    origin.slow = false;
    const req = request();
    origin.content = randomBytes(SIZE);
    await rejectsWith(
      compute(req),
      grpc.status.FAILED_PRECONDITION,
      /changed while films\/origin\.bin was being hashed.*412/,
    );
  });

  it("fails with FAILED_PRECONDITION when the origin changes while it is being hashed", async () => {
    origin.slow = true;
    const req = request();
    origin.onBody = () => (origin.content = randomBytes(SIZE));
    await rejectsWith(
      compute(req),
      grpc.status.FAILED_PRECONDITION,
      /origin http:\/\/127\.0\.0\.1:\d+\/v\/origin\.bin changed while/,
    );
    origin.slow = false;
  });

  it("fetches only http(s) URLs and needs a strong validator", async () => {
    origin.requests = [];
    await rejectsWith(
      compute(request({ originUrl: "file:///etc/passwd" })),
      grpc.status.INVALID_ARGUMENT,
      /origin_url: .*must use http:\/\/ or https:\/\//,
    );
    await rejectsWith(
      compute(request({ originEtag: 'W/"abc"' })),
      grpc.status.INVALID_ARGUMENT,
      /origin validator: ETag W\/"abc" is not a strong entity tag/,
    );
    await rejectsWith(compute(request({ originEtag: "" })), grpc.status.INVALID_ARGUMENT, /no validator/);
    assert.equal(origin.requests.length, 0);
  });
});
