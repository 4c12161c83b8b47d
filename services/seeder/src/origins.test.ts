import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, get, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  chunkCount,
  chunksPath,
  encodeTicket,
  issueTicket,
  Signer,
  streamIdFor,
  TICKET_HEADER,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { originPolicy, startSeeder, type RunningSeeder } from "./index.js";
import { TestTracker } from "./testing/index.js";

const log = createLogger("test", { level: "silent" });
const trackerKey = Signer.generate();
const CHUNK = 16 * 1024;
const SIZE = CHUNK * 30 + 11;
const etagOf = (b: Buffer) => `"${createHash("sha256").update(b).digest("hex").slice(0, 16)}"`;

/** A real HTTP origin: /ok.bin with ETag, ranges and If-Match; /noranges.bin without byte ranges. */
class Origin {
  content = randomBytes(SIZE);
  requests: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
  port = 0;
  private readonly server: Server = createServer((req, res) => {
    this.requests.push({ path: req.url ?? "", headers: req.headers });
    const body = this.content;
    const etag = etagOf(body);
    if (req.url === "/noranges.bin") {
      res.writeHead(200, { etag, "content-length": String(body.length) }).end(body);
      return;
    }
    if (req.url !== "/ok.bin") {
      res.writeHead(404).end();
      return;
    }
    if (req.headers["if-match"] !== undefined && req.headers["if-match"] !== etag) {
      res.writeHead(412, { etag }).end();
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "")!;
    const first = Number(m[1]);
    const last = Math.min(Number(m[2]), body.length - 1);
    res.writeHead(206, {
      etag,
      "content-range": `bytes ${first}-${last}/${body.length}`,
      "content-length": String(last - first + 1),
    });
    res.end(body.subarray(first, last + 1));
  });
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** GETs every chunk of a stream from the seeder's data plane with a valid ticket. */
function fetchAll(port: number, streamId: string) {
  const count = chunkCount(SIZE, CHUNK);
  const range = { first: 0, last: count - 1 };
  const ticket = issueTicket(
    { streamId, range, fetcherId: "viewer", serverId: "seeder-1", expiresMs: Date.now() + 60_000 },
    trackerKey,
  );
  return new Promise<{ status: number; body: Buffer; complete: boolean }>((resolve, reject) => {
    get(
      {
        host: "127.0.0.1",
        port,
        path: chunksPath(streamId, range),
        headers: { [TICKET_HEADER]: encodeTicket(ticket) },
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        const done = (complete: boolean) =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), complete });
        res.on("data", (p: Buffer) => parts.push(p));
        res.on("end", () => done(res.complete));
        res.on("error", () => done(false));
        res.on("aborted", () => done(false));
      },
    ).on("error", reject);
  });
}

describe("seeder relaying HTTP origins", () => {
  const origin = new Origin();
  const tracker = new TestTracker(trackerKey, CHUNK);
  let seeder: RunningSeeder;

  before(async () => {
    await origin.start();
    await tracker.start();
    seeder = await startSeeder({
      tracker: `127.0.0.1:${tracker.port}`,
      origins: [
        { url: origin.url("/ok.bin"), name: "films/ok.bin", where: "test" },
        { url: origin.url("/noranges.bin"), name: "films/noranges.bin", where: "test" },
      ],
      // long: in this test a change is found by a read, not by the poll
      originPollMs: 60_000,
      originPolicy: originPolicy(["127.0.0.1"]), // the test origin is on loopback
      dataHost: "127.0.0.1",
      dataPort: 0,
      log,
      registry: new Registry(),
    });
  });
  after(async () => {
    await seeder.drain();
    tracker.stop();
    await origin.close();
  });

  it("publishes an origin with its URL and ETag, and serves the origin's bytes", async () => {
    const streamId = await seeder.whenReady("films/ok.bin");
    const p = tracker.publishes.find((x) => x.name === "films/ok.bin")!;
    assert.equal(p.size, SIZE);
    assert.equal(p.originUrl, origin.url("/ok.bin"));
    assert.equal(p.originEtag, etagOf(origin.content));
    assert.equal(streamId, streamIdFor(p.name, p.size, p.version));
    const got = await fetchAll(seeder.dataPort, streamId);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(origin.content));
    const reads = origin.requests.filter((r) => r.path === "/ok.bin" && r.headers.range !== "bytes=0-0");
    assert.ok(reads.length > 0);
    for (const r of reads) assert.equal(r.headers["if-match"], p.originEtag);
  });

  it("does not publish an origin without byte-range support", () => {
    assert.equal(tracker.publishes.filter((p) => p.name === "films/noranges.bin").length, 0);
  });

  it("never serves new bytes for the old version: the read is cut, the new version published, the old one 404", async () => {
    const oldId = await seeder.whenReady("films/ok.bin");
    const old = origin.content;
    origin.content = randomBytes(SIZE);
    // the seeder still has the old version: the origin's 412 becomes a refusal, not new bytes
    const raced = await fetchAll(seeder.dataPort, oldId);
    assert.equal(raced.status, 404);
    assert.equal(raced.body.toString(), "unknown stream: no longer served here\n");
    assert.ok(!raced.body.includes(origin.content.subarray(0, 16)) && !raced.body.includes(old.subarray(0, 16)));
    // the 412 made the seeder check the origin at once (the poll is a minute away)
    const deadline = Date.now() + 5_000;
    while (tracker.publishes.filter((p) => p.name === "films/ok.bin").length < 2) {
      assert.ok(Date.now() < deadline, "the new version was published");
      await new Promise((r) => setTimeout(r, 20));
    }
    const newId = await seeder.whenReady("films/ok.bin");
    assert.notEqual(newId, oldId);
    assert.equal(tracker.publishes.at(-1)!.originEtag, etagOf(origin.content));
    const gone = await fetchAll(seeder.dataPort, oldId);
    assert.equal(gone.status, 404);
    assert.match(gone.body.toString(), /unknown stream/);
    const fresh = await fetchAll(seeder.dataPort, newId);
    assert.equal(fresh.status, 200);
    assert.ok(fresh.body.equals(origin.content));
  });
});
