import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A real HTTP origin on loopback serving one file whose content a test can
 * swap: a strong ETag (a hash of the content), single byte ranges,
 * If-Match (412 when it differs) and If-Range (the whole file when it
 * differs), as a web server or CDN does. Responses stream from the content
 * of the time of the request, so a swap never mixes versions in one answer.
 */
export class HttpOrigin {
  private content: Buffer;
  private etagValue: string;
  readonly requests: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
  private readonly server: Server;
  port = 0;

  constructor(
    content: Buffer,
    readonly path = "/media/film.bin",
  ) {
    this.content = content;
    this.etagValue = etagOf(content);
    this.server = createServer((req, res) => {
      this.requests.push({ path: req.url ?? "", headers: req.headers });
      if (req.url !== this.path) {
        res.writeHead(404).end();
        return;
      }
      const body = this.content;
      const etag = this.etagValue;
      const ifMatch = req.headers["if-match"];
      if (ifMatch !== undefined && ifMatch !== etag && ifMatch !== "*") {
        res.writeHead(412, { etag }).end();
        return;
      }
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      const ifRange = req.headers["if-range"];
      if (!m || (ifRange !== undefined && ifRange !== etag)) {
        res.writeHead(200, { etag, "accept-ranges": "bytes", "content-length": String(body.length) }).end(body);
        return;
      }
      const first = Number(m[1]);
      const last = Math.min(m[2] ? Number(m[2]) : body.length - 1, body.length - 1);
      if (first > last) {
        res.writeHead(416, { etag, "content-range": `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, {
        etag,
        "accept-ranges": "bytes",
        "content-range": `bytes ${first}-${last}/${body.length}`,
        "content-length": String(last - first + 1),
      });
      res.end(body.subarray(first, last + 1));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}${this.path}`;
  }

  get etag(): string {
    return this.etagValue;
  }

  /** Serves `content` from now on (a new ETag). */
  swap(content: Buffer): void {
    this.content = content;
    this.etagValue = etagOf(content);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

function etagOf(content: Buffer): string {
  return `"${createHash("sha256").update(content).digest("hex").slice(0, 20)}"`;
}
