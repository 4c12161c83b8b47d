import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, type ClientDuplexStream } from "@grpc/grpc-js";
import {
  LiveAttestationBody,
  LiveDescriptorBody,
  liveFrameHead,
  parseChunksPath,
  PeerRole,
  Signer,
  TrackerClient,
  TransferOutcome,
  WantMode,
  type ChunkRange,
  type Directive,
  type PeerMessage,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { fetchLiveChunks, keepAliveAgent } from "@distribustream/data-plane";

/** What a viewer calls each tampered answer when it rejects it (pdtp's LiveRejection). */
export type Tampering = "bad-data" | "replayed" | "reordered";
const CYCLE: readonly Tampering[] = ["bad-data", "replayed", "reordered"];

/**
 * A test-only tampering viewer of a live stream, speaking PDTP itself: it
 * joins the stream a few chunks behind its edge, fetches the chunks it is directed to from
 * the seeder honestly (so it holds each chunk's real attestation and bytes)
 * and reports them verified, so that the tracker sends other viewers to it.
 * Every /live/ request it gets is answered with a bad first frame, in turn:
 * the chunk's real attestation with altered bytes ("bad-data"), an older
 * chunk's whole frame, attestation and bytes, in its place ("replayed"), and
 * a newer chunk's whole frame in its place ("reordered"). Each frame but the
 * altered one is one the checksum service signed.
 */
export class LiveTamperer {
  readonly key = Signer.generate();
  peerId = "";
  /** Tampered answers sent in full, by what the viewer should reject them as. */
  readonly served: Record<Tampering, number> = { "bad-data": 0, replayed: 0, reordered: 0 };
  /** Chunks it fetched from its sources (honestly). */
  fetched = 0;
  private streamId = "";
  private maxChunkBytes = 0;
  private readonly frames = new Map<number, { head: Buffer; data: Buffer }>();
  private turn = 0;
  private readonly server: Server;
  private readonly client: TrackerClient;
  private readonly agent = keepAliveAgent();
  private readonly aborts = new Map<number, AbortController>();
  private call: ClientDuplexStream<PeerMessage, TrackerMessage> | undefined;
  private closed = false;

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
      if (!parsed.ok || parsed.kind !== "live" || parsed.streamId !== this.streamId) {
        return void res.writeHead(404).end();
      }
      void this.answer(parsed.range, res);
    });
  }

  /** Joins live stream `name`; resolves once it holds a chunk (fetched and reported to the tracker). */
  async join(name: string): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, this.host, resolve));
    const port = (this.server.address() as AddressInfo).port;
    const call = this.client.session();
    this.call = call;
    call.on("error", () => {});
    const ended = new Promise<never>((_, reject) =>
      call.on("status", (s: { details: string }) => reject(new Error(`tampering peer's session ended: ${s.details}`))),
    );
    ended.catch(() => {});
    call.on("data", (m: TrackerMessage) => {
      const b = m.body;
      if (b?.$case === "welcome") this.peerId = b.value.peerId;
      else if (b?.$case === "joined") {
        const d = b.value.descriptor!;
        this.streamId = d.streamId;
        this.maxChunkBytes = LiveDescriptorBody.decode(b.value.live!.body).maxChunkBytes;
        // from a few chunks behind the edge on: the chunks viewers tuning in soon want, and older
        // ones it holds to replay in their place (a viewer tunes in a prebuffer behind the edge)
        const live = d.live;
        const from = live?.started ? Math.max(live.low, live.edge - 3) : 0;
        call.write({ body: { $case: "position", value: { streamId: d.streamId, nextChunk: from } } });
      } else if (b?.$case === "directives") for (const d of b.value.directives) void this.fetch(d);
      else if (b?.$case === "cancel") for (const id of b.value.transferIds) this.aborts.get(id)?.abort();
    });
    call.write({
      body: {
        $case: "hello",
        value: {
          role: PeerRole.PEER_ROLE_VIEWER,
          dataPort: port,
          agent: "tamperer/0",
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
    const deadline = Date.now() + 15_000;
    while (this.frames.size === 0) {
      if (Date.now() > deadline) throw new Error("the tampering peer fetched no chunk in 15 s");
      await Promise.race([sleep(50), ended]);
    }
  }

  /** Fetches a directed range honestly and reports it verified: the tracker then counts it as a holder. */
  private async fetch(d: Directive): Promise<void> {
    const started = Date.now();
    const abort = new AbortController();
    this.aborts.set(d.transferId, abort);
    let head: Buffer | undefined;
    const got: ChunkRange[] = [];
    let bytes = 0;
    let outcome = TransferOutcome.TRANSFER_OUTCOME_OK;
    let detail = "";
    try {
      await fetchLiveChunks({
        host: d.source!.host,
        port: d.source!.port,
        streamId: d.streamId,
        range: d.range!,
        ticket: d.ticket!,
        sessionKey: this.key,
        maxChunkBytes: this.maxChunkBytes,
        agent: this.agent,
        signal: abort.signal,
        onAttestation: (_seq, signed) => {
          head = liveFrameHead(signed);
          return LiveAttestationBody.decode(signed.body).length;
        },
        onChunk: (seq, data) => {
          this.frames.set(seq, { head: head!, data: Buffer.from(data) });
          this.fetched++;
          bytes += data.length;
          got.push({ first: seq, last: seq });
        },
      });
    } catch (err) {
      outcome = abort.signal.aborted
        ? TransferOutcome.TRANSFER_OUTCOME_CANCELLED
        : TransferOutcome.TRANSFER_OUTCOME_FAILED;
      detail = (err as Error).message.slice(0, 200);
    } finally {
      this.aborts.delete(d.transferId);
    }
    if (this.closed || abort.signal.aborted) return;
    this.call?.write({
      body: {
        $case: "reports",
        value: {
          reports: [
            {
              transferId: d.transferId,
              outcome,
              bytes,
              durationMs: Date.now() - started,
              detail,
              verified: got.length > 0 ? [{ first: got[0]!.first, last: got[got.length - 1]!.last }] : [],
              httpStatus: 0,
            },
          ],
        },
      },
    });
  }

  /**
   * One /live/ answer: the range's frames with the first one tampered (the
   * turn's kind). A kind that cannot be made for this range (no older chunk
   * held to replay: the viewer asked for the first chunk this peer holds)
   * gives way to the next one, and the turn stays, for the next request.
   */
  private async answer(range: ChunkRange, res: ServerResponse): Promise<void> {
    const own = this.frames.get(range.first);
    if (!own) return void res.writeHead(416).end("range not held\n");
    let kind: Tampering | undefined;
    let first: { head: Buffer; data: Buffer } | undefined;
    for (let k = 0; k < CYCLE.length && !first; k++) {
      kind = CYCLE[(this.turn + k) % CYCLE.length]!;
      first = await this.tampered(kind, range.first, own);
      if (first && k === 0) this.turn++;
    }
    if (!first || !kind) return void res.writeHead(416).end("range not held\n");
    const parts = [first.head, first.data];
    for (let seq = range.first + 1; seq <= range.last; seq++) {
      const f = this.frames.get(seq);
      if (f) parts.push(f.head, f.data);
    }
    const length = parts.reduce((n, p) => n + p.length, 0);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(length) });
    const served = kind;
    res.on("finish", () => this.served[served]++);
    for (const p of parts) res.write(p);
    res.end();
  }

  /** The first frame of an answer for chunk `seq` (held as `own`) tampered as `kind`, or undefined when it cannot be. */
  private async tampered(
    kind: Tampering,
    seq: number,
    own: { head: Buffer; data: Buffer },
  ): Promise<{ head: Buffer; data: Buffer } | undefined> {
    // its real attestation, bytes of the same length that are not the chunk's
    if (kind === "bad-data") return { head: own.head, data: Buffer.from(own.data.map((b) => b ^ 0x5a)) };
    if (kind === "replayed") {
      const older = [...this.frames.keys()].filter((s) => s < seq);
      return older.length > 0 ? this.frames.get(Math.max(...older)) : undefined;
    }
    // a newer chunk's frame; one comes within a chunk's time if none is held yet
    for (const deadline = Date.now() + 3_000; Date.now() < deadline; await sleep(20)) {
      const newer = [...this.frames.keys()].filter((s) => s > seq);
      if (newer.length > 0) return this.frames.get(Math.min(...newer));
    }
    return undefined;
  }

  close(): void {
    this.closed = true;
    for (const a of this.aborts.values()) a.abort();
    this.call?.cancel();
    this.client.close();
    this.agent.destroy();
    this.server.closeAllConnections();
    this.server.close();
  }
}
