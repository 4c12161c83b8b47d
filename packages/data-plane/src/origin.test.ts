import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  confirmOrigin,
  OriginError,
  originAgents,
  originPolicy,
  probeOrigin,
  readOrigin,
  type OriginVersion,
} from "./index.js";

/**
 * A real HTTP origin on loopback whose content a test can swap. It honours
 * Range (one range), If-Match, If-Unmodified-Since and If-Range, unless a
 * mode says otherwise.
 */
class TestOrigin {
  content = randomBytes(100_000);
  modified = new Date("2026-01-01T00:00:00Z");
  /** "etag" (strong), "weak" (W/ ETag only), "lm" (Last-Modified only), "none" (no validator). */
  validator: "etag" | "weak" | "lm" | "none" = "etag";
  ranges = true;
  /** Ignores If-Match and If-Unmodified-Since (If-Range still honoured). */
  ignoreConditions = false;
  /** Ends the body after this many bytes (a broken server). */
  cutAfter: number | undefined;
  requests: IncomingHttpHeaders[] = [];
  private readonly server: Server = createServer((req, res) => {
    this.requests.push(req.headers);
    if (!req.url?.startsWith("/files/")) {
      res.writeHead(404).end();
      return;
    }
    const body = this.content;
    const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 16)}"`;
    const lm = this.modified.toUTCString();
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (this.validator === "etag") headers.etag = etag;
    if (this.validator === "weak") headers.etag = `W/${etag}`;
    if (this.validator === "lm") headers["last-modified"] = lm;
    const current = this.validator === "etag" ? etag : this.validator === "lm" ? lm : undefined;
    if (!this.ignoreConditions) {
      const ifMatch = req.headers["if-match"];
      const ius = req.headers["if-unmodified-since"];
      if ((ifMatch && ifMatch !== current) || (ius && ius !== lm)) {
        res.writeHead(412, headers).end();
        return;
      }
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
    const ifRange = req.headers["if-range"];
    if (!this.ranges || !m || (ifRange !== undefined && ifRange !== current)) {
      res.writeHead(200, { ...headers, "content-length": String(body.length) }).end(body);
      return;
    }
    const first = Number(m[1]);
    const last = Math.min(Number(m[2]), body.length - 1);
    if (first >= body.length) {
      res.writeHead(416, { ...headers, "content-range": `bytes */${body.length}` }).end();
      return;
    }
    const part = body.subarray(first, last + 1);
    res.writeHead(206, {
      ...headers,
      "content-range": `bytes ${first}-${last}/${body.length}`,
      "content-length": String(part.length),
    });
    if (this.cutAfter !== undefined) {
      res.write(part.subarray(0, this.cutAfter));
      res.socket?.destroy();
    } else res.end(part);
  });
  port = 0;

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  url(path = "/files/movie.bin"): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
  reset(): void {
    this.content = randomBytes(100_000);
    this.validator = "etag";
    this.ranges = true;
    this.ignoreConditions = false;
    this.cutAfter = undefined;
    this.requests = [];
  }
}

async function readAll(r: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of r) parts.push(p);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, kind: OriginError["kind"], message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof OriginError, `an OriginError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe("HTTP(S) origin reads", () => {
  const origin = new TestOrigin();
  const agents = originAgents(originPolicy(["127.0.0.1"])); // the test origin is on loopback
  const opts = { agents, timeoutMs: 5_000 };
  before(() => origin.start());
  after(async () => {
    agents.destroy();
    await origin.close();
  });

  it("probes size and strong ETag with a one-byte range request", async () => {
    origin.reset();
    const v = await probeOrigin(origin.url(), opts);
    assert.equal(v.size, 100_000);
    assert.match(v.etag ?? "", /^"[0-9a-f]{16}"$/);
    assert.equal(v.lastModified, undefined);
    assert.equal(origin.requests[0]!.range, "bytes=0-0");
  });

  it("reads a range with If-Match and If-Range and returns exactly those bytes", async () => {
    origin.reset();
    const v = await probeOrigin(origin.url(), opts);
    const got = await readAll(readOrigin(v, 1000, 70_001, opts));
    assert.deepEqual(got, origin.content.subarray(1000, 70_001));
    const last = origin.requests.at(-1)!;
    assert.equal(last.range, "bytes=1000-70000");
    assert.equal(last["if-match"], v.etag);
    assert.equal(last["if-range"], v.etag);
  });

  it("refuses to read once the content changed (412), before passing on any byte", async () => {
    origin.reset();
    const v = await probeOrigin(origin.url(), opts);
    origin.content = randomBytes(100_000);
    let bytes = 0;
    const r = readOrigin(v, 0, 50_000, opts);
    r.on("data", (d: Buffer) => (bytes += d.length));
    await rejectsWith(readAll(r), "changed", /changed since it was published \(412/);
    assert.equal(bytes, 0);
    await rejectsWith(confirmOrigin(v, opts), "changed", /412/);
  });

  it("refuses new bytes from a server that ignores If-Match (checks the answer's ETag)", async () => {
    origin.reset();
    origin.ignoreConditions = true;
    const v = await probeOrigin(origin.url(), opts);
    origin.content = randomBytes(100_000);
    await rejectsWith(readAll(readOrigin(v, 0, 10, opts)), "changed", /changed since it was published/);
  });

  it("uses Last-Modified (If-Unmodified-Since) when there is no strong ETag", async () => {
    origin.reset();
    origin.validator = "lm";
    const v = await probeOrigin(origin.url(), opts);
    assert.equal(v.etag, undefined);
    assert.equal(v.lastModified, origin.modified.toUTCString());
    assert.deepEqual(await readAll(readOrigin(v, 5, 15, opts)), origin.content.subarray(5, 15));
    assert.equal(origin.requests.at(-1)!["if-unmodified-since"], v.lastModified);
    origin.modified = new Date(origin.modified.getTime() + 60_000);
    await rejectsWith(readAll(readOrigin(v, 5, 15, opts)), "changed", /412/);
  });

  it("refuses origins without byte ranges, without a validator, or with only a weak ETag", async () => {
    origin.reset();
    origin.ranges = false;
    await rejectsWith(probeOrigin(origin.url(), opts), "unsupported", /does not support byte ranges/);
    origin.reset();
    origin.validator = "none";
    await rejectsWith(probeOrigin(origin.url(), opts), "unsupported", /neither a strong ETag nor a Last-Modified/);
    origin.validator = "weak";
    await rejectsWith(probeOrigin(origin.url(), opts), "unsupported", /neither a strong ETag/);
  });

  it("reports a missing file as gone and a short body as failed", async () => {
    origin.reset();
    const v = await probeOrigin(origin.url(), opts);
    await rejectsWith(
      probeOrigin(`http://127.0.0.1:${origin.port}/nothing/here`, opts).then(() => 0),
      "gone",
      /404/,
    );
    origin.cutAfter = 100;
    await rejectsWith(readAll(readOrigin(v, 0, 50_000, opts)), "failed", /./);
  });

  it("refuses other schemes and URLs with credentials before any request", async () => {
    origin.reset();
    await rejectsWith(probeOrigin("ftp://127.0.0.1/x.bin", opts), "unsupported", /must use http:\/\/ or https:\/\//);
    await rejectsWith(probeOrigin("http://user:pw@127.0.0.1/x.bin", opts), "unsupported", /user name or password/);
    assert.equal(origin.requests.length, 0);
  });

  it("times out on an origin that does not answer", async () => {
    const silent = createServer(() => {
      /* never answers */
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/x.bin`;
    try {
      await rejectsWith(probeOrigin(url, { agents, timeoutMs: 300 }), "failed", /no answer for 300 ms/);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("streams a large range through without reading ahead of its consumer", async () => {
    origin.reset();
    origin.content = randomBytes(8 * 1024 * 1024);
    const v: OriginVersion = await probeOrigin(origin.url(), opts);
    const r = readOrigin(v, 0, v.size, opts);
    await new Promise((res) => r.once("readable", res));
    await new Promise((res) => setTimeout(res, 200));
    // paused after the first bytes: at most its buffer plus the socket's, not the whole file
    assert.ok(r.readableLength <= 1024 * 1024, `buffered ${r.readableLength} bytes`);
    const h = createHash("sha256");
    for await (const p of r as AsyncIterable<Buffer>) h.update(p);
    assert.equal(h.digest("hex"), createHash("sha256").update(origin.content).digest("hex"));
  });
});
