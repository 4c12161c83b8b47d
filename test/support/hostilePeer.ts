import { randomBytes } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { credentials, type ClientDuplexStream } from "@grpc/grpc-js";
import {
  chunksPath,
  decodeTicket,
  encodeTicket,
  fetchProof,
  parseChunksPath,
  PeerRole,
  PROOF_HEADER,
  rangeSpan,
  Signer,
  TICKET_HEADER,
  TicketBody,
  TrackerClient,
  WantMode,
  type ChunkRange,
  type Directive,
  type PeerMessage,
  type SignedTicket,
  type StreamDescriptor,
  type TrackerMessage,
} from "@distribustream/pdtp";

/** What one request of the hostile peer's replays got. */
export interface Replay {
  what: string;
  status: number;
  body: string;
}

/**
 * A test-only hostile viewer, speaking PDTP itself: it joins a stream, keeps
 * the tickets of its first directives without using them, then claims to
 * hold every chunk. Peers sent to it get garbage of the right length, or 416
 * for chunks it claimed (every other request). Later it replays its kept
 * tickets: without its proof, for a wider range, and once expired; and a
 * ticket an honest fetcher presented to it, at another server.
 */
export class HostilePeer {
  readonly key = Signer.generate();
  /** Data-plane requests it answered with garbage or 416. */
  served = 0;
  peerId = "";
  private readonly kept: Directive[] = [];
  /** Tickets honest fetchers presented to it, with the range they asked for. */
  private readonly seen: [SignedTicket, ChunkRange][] = [];
  private descriptor: StreamDescriptor | undefined;
  private readonly server: Server;
  private readonly client: TrackerClient;
  private call: ClientDuplexStream<PeerMessage, TrackerMessage> | undefined;

  /**
   * `target`: the tracker, or a proxy that reaches it from `host`; the data
   * plane listens on `host`, the address the tracker sees and hands out.
   */
  constructor(
    target: string,
    private readonly host = "127.0.0.1",
  ) {
    this.client = new TrackerClient(target, credentials.createInsecure());
    this.server = createServer((req, res) => {
      req.resume();
      const parsed = parseChunksPath(req.url ?? "/");
      const d = this.descriptor;
      if (!parsed.ok || !d) return void res.writeHead(404).end();
      this.served++;
      const header = req.headers[TICKET_HEADER];
      if (typeof header === "string") this.seen.push([decodeTicket(header), parsed.range]);
      if (this.served % 2 === 0) return void res.writeHead(416).end("range not held\n");
      const { start, end } = rangeSpan(parsed.range, d.size, d.chunkSize);
      res.writeHead(200, { "content-length": String(end - start) });
      res.end(randomBytes(end - start)); // the right length, the wrong bytes
    });
  }

  /** Joins `name`, keeps the tickets of the first directives, then claims every chunk; resolves once it did. */
  async join(name: string): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, this.host, resolve));
    const port = (this.server.address() as AddressInfo).port;
    const call = this.client.session();
    this.call = call;
    call.on("error", () => {});
    const claimed = new Promise<void>((resolve, reject) => {
      call.on("data", (m: TrackerMessage) => {
        const b = m.body;
        if (b?.$case === "welcome") this.peerId = b.value.peerId;
        if (b?.$case === "joined") this.descriptor = b.value.descriptor;
        if (b?.$case !== "directives" || this.kept.length > 0) return;
        this.kept.push(...b.value.directives);
        const d = this.descriptor!;
        // the false claim: everything, verified
        call.write({
          body: { $case: "have", value: { streamId: d.streamId, ranges: [{ first: 0, last: d.chunkCount - 1 }] } },
        });
        resolve();
      });
      call.on("status", (s: { details: string }) => reject(new Error(`hostile session ended: ${s.details}`)));
    });
    call.write({
      body: {
        $case: "hello",
        value: {
          role: PeerRole.PEER_ROLE_VIEWER,
          dataPort: port,
          agent: "hostile/0",
          credential: "",
          advertiseHost: "",
          advertisePort: 0,
          internalHost: "",
          internalPort: 0,
          peerKey: this.key.publicKey.ed25519,
        },
      },
    });
    call.write({ body: { $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 } } });
    await claimed;
  }

  /** Its kept tickets, abused now; `expired` waits until every kept ticket has expired and tries each once more. */
  async replay(expired: boolean): Promise<Replay[]> {
    const out: Replay[] = [];
    for (const d of this.kept) {
      const t = d.ticket!;
      const body = TicketBody.decode(t.body);
      const src = d.source!;
      if (expired) {
        const wait = body.expiresMs - Date.now() + 200;
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        out.push(await this.get("expired", src.host, src.port, d.streamId, d.range!, t, true));
        continue;
      }
      out.push(await this.get("no proof", src.host, src.port, d.streamId, d.range!, t, false));
      const wider = { first: d.range!.first, last: d.range!.last + 1 };
      out.push(await this.get("wider range", src.host, src.port, d.streamId, wider, t, true));
      // an honest fetcher's ticket, seen when it came to fetch from this peer
      for (const [seen, seenRange] of this.seen.slice(0, 1)) {
        out.push(await this.get("seen ticket", src.host, src.port, d.streamId, seenRange, seen, true));
      }
    }
    return out;
  }

  private get(
    what: string,
    host: string,
    port: number,
    streamId: string,
    range: ChunkRange,
    ticket: SignedTicket,
    proof: boolean,
  ): Promise<Replay> {
    const headers: Record<string, string> = { [TICKET_HEADER]: encodeTicket(ticket) };
    if (proof) headers[PROOF_HEADER] = fetchProof(ticket, range, this.key);
    return new Promise((resolve, reject) => {
      const req = request({ host, port, path: chunksPath(streamId, range), headers, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (p: Buffer) => parts.push(p));
        res.on("end", () =>
          resolve({ what, status: res.statusCode ?? 0, body: Buffer.concat(parts).toString().slice(0, 200) }),
        );
      });
      req.on("error", reject);
      req.end();
    });
  }

  close(): void {
    this.call?.cancel();
    this.client.close();
    this.server.closeAllConnections();
    this.server.close();
  }
}
