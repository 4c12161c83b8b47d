import { randomBytes } from "node:crypto";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  isStreamId,
  joinHostPort,
  LIVE_REJECTIONS,
  MalformedMessage,
  originUrlProblem,
  originValidatorProblem,
  PeerRole,
  TransferOutcome,
  type ChunkRange,
  WantMode,
  type Directive,
  type Have,
  type Hello,
  type Join,
  type Joined,
  type LiveChunks,
  type PeerMessage,
  type Position,
  type PublicKey,
  type Publish,
  type TrackerMessage,
  type TransferReport,
  type TransferReports,
} from "@distribustream/pdtp";
import { failedPrecondition, invalidArgument, notFound, PublicError, type Logger } from "@distribustream/runtime";
import type {
  ChunkBounds,
  PeerRoleName,
  SettledTransfer,
  SourceOutcome,
  SourceTrust,
  StreamEvent,
  StreamMeta,
  SwarmStore,
  TransferRecord,
  TrustPolicy,
} from "@distribustream/swarm-store";
import type { TrackerMetrics } from "./metrics.js";
import { hostFromPeer } from "./peerAddress.js";
import type { PeerProbe } from "./peerProbe.js";
import { toPeerStatus } from "./peerErrors.js";
import { DEFAULT_PLANNER, type Planner } from "./planner.js";
import type { SeederAuth } from "./seederAuth.js";
import { ANY_CHUNK, messageBounds, rangeBytes, shapeOf, type StreamShape } from "./streamKinds.js";
import { checkDataAddress, checkName, checkRanges, checkString, MAX_REPORTS, outside } from "./validate.js";

/** Messages queued for handling before the session stops reading from the peer. */
const MAX_QUEUED = 64;
/** Outbound messages buffered before the tracker stops planning for a slow reader. */
const MAX_UNSENT = 32;
/**
 * When a source stops being used in a stream: after 3 bad reports (chunks
 * that failed verification, ranges refused that it claimed to hold), or, for
 * a viewer, 3 failed transfers in a row (an unreachable data port). Until
 * then its claimed holdings count as available and hold the seeder back.
 */
export const TRUST_POLICY: TrustPolicy = { banAfterBad: 3, banAfterStrikes: 3 };

/** Outcomes recorded against a source with the settlement of the transfer (a refusal's depends on its source). */
const RECORDED_OUTCOMES = new Map<TransferOutcome, SourceOutcome>([
  [TransferOutcome.TRANSFER_OUTCOME_OK, "ok"],
  [TransferOutcome.TRANSFER_OUTCOME_FAILED, "failed"],
  [TransferOutcome.TRANSFER_OUTCOME_BAD_DATA, "bad_data"],
]);
/** Delays of one Position.live counted at most (a viewer writes a few chunks a second). */
const MAX_DELAYS = 256;
/** How long the address of a peer banned for bad data may not serve in that stream (new sessions included). */
const HOST_BAN_MS = 10 * 60_000;
/**
 * How long a live viewer that joined without a place in the stream waits
 * for its first Position before it is planned anyway (see JoinedStream.tuningUntil):
 * a viewer tunes in as soon as the Joined's window comes, so this only
 * bounds the wait for one that never says (a client from before the rule).
 */
export const TUNE_IN_WAIT_MS = 1_000;

/** What a session keeps of a stream it joined: numbers for validation and planning, never the manifest. */
export interface JoinedStream {
  streamId: string;
  name: string;
  shape: StreamShape;
  /** The chunks its messages may name (see messageBounds). */
  bounds: ChunkBounds;
  /** SwarmStore.streamEpoch when this peer was last planned in the stream (-1: never). */
  plannedEpoch: number;
  /** When it was last planned (Date.now()). */
  plannedMs: number;
  /** Plans in a row that found nothing for it while it wanted more. */
  fruitless: number;
  /** It had nothing in flight after its last plan. */
  idle: boolean;
  /**
   * Until when (Date.now()) it is not planned, waiting for the Position that
   * says where it tuned in; 0 once it said, or when it joined with a place.
   * A live viewer joining afresh (position 0, holding nothing) picks its
   * tune-in chunk from the window in the Joined, near the edge: planned at
   * once, it would be sent for the window's oldest chunks, which it never
   * plays (each join cost a round of transfers cancelled, most of them from
   * the seeder).
   */
  tuningUntil: number;
  /**
   * Transfers it was directed to and that were neither reported nor
   * cancelled since (at most maxDownloads, unless a withdrawal was missed:
   * a resync compares them with the store's).
   */
  inFlight: Set<number>;
}

/** The schedule tick's timing, as Session.needsPlan and replanDue read it. */
export interface ReplanTiming {
  maxDownloads: number;
  starveMs: number;
  tickMs: number;
  replanMs: number;
}

/**
 * Whether the schedule tick should replan a peer in a stream it joined (see
 * Session.needsPlan). A live viewer waiting with nothing found is not backed
 * off beyond one tick: each new chunk's LiveEdge replans it anyway, so the
 * back-off only ever counted where no LiveEdge follows, at a broadcast's end,
 * where it held the last chunks back for up to `replanMs` (the first viewers
 * to get them from the seeder leave at once, and the others, planned while
 * nobody had reported them yet, waited out the back-off).
 */
export function replanDue(j: JoinedStream, epoch: number, nowMs: number, p: ReplanTiming): boolean {
  if (j.inFlight.size >= p.maxDownloads || j.tuningUntil > nowMs) return false;
  const since = nowMs - j.plannedMs;
  if (j.idle && since >= p.starveMs) return true;
  const backOff = j.shape.kind === "live" ? p.tickMs : Math.min(p.replanMs, p.tickMs * 2 ** j.fruitless);
  const wait = j.idle || j.fruitless > 0 ? backOff : p.replanMs;
  return j.plannedEpoch !== epoch && since >= wait;
}

/**
 * What a session tells the replica's stats (ReplicaStats) as it happens, for
 * the dashboard: figures only, never a decision.
 */
export interface SessionStats {
  /** A viewer joined a stream holding `have` (as its Join said). */
  joined(s: Session, j: JoinedStream, have: readonly ChunkRange[]): void;
  /** A transfer this viewer fetched was reported: `bytes` delivered, and its source's trust after it. */
  settled(s: Session, j: JoinedStream, t: TransferRecord, bytes: number, trust: SourceTrust | undefined): void;
  /** A transfer's chunks failed verification (or a claimed range was refused): a rejected chunk. */
  rejected(s: Session, t: TransferRecord, detail: string): void;
  /** A source was just banned in a stream. */
  banned(streamId: string, serverId: string, reason: "bad_data" | "unreachable"): void;
  /** A viewer's Position: the first chunk it has not written out, and for live its delays (ms). */
  position(s: Session, j: JoinedStream, nextChunk: number, delaysMs: readonly number[]): void;
}

/**
 * What a session needs of the tracker: given to it (the wiring in tracker.ts
 * implements it), so that a session never reaches the rest of the tracker.
 */
export interface SessionHost {
  /** Parent of each session's logger. */
  readonly log: Logger;
  /** Swarm state: the session's messages read and change it. */
  readonly store: SwarmStore;
  readonly metrics: TrackerMetrics;
  /** The replica's stats, told what happens in the session. */
  readonly stats: SessionStats;
  /** Decides a viewer's transfers in a stream. */
  readonly planner: Pick<Planner, "plan">;
  /** Runs `plan` once one of the replica's plan slots is free, first asked first served. */
  planSlot(plan: () => Promise<void>): Promise<void>;
  /** Checks a seeder's credential at Hello. */
  readonly seederAuth: SeederAuth;
  /**
   * Connect-back probe of a viewer's data port before it may serve;
   * undefined when switched off (every viewer with a data port may serve).
   */
  readonly peerProbe: PeerProbe | undefined;
  /** The public keys that verify tickets, for Welcome. */
  ticketKeys(): PublicKey[];
  /** The network key, for Welcome; waits for it (bounded) while the checksum service is unreachable. */
  networkKey(): Promise<PublicKey>;
  /** The session passed Hello: it is one of this replica's. */
  sessionStarted(s: Session): void;
  /** The session ended: it leaves every stream it joined or published. */
  sessionEnded(s: Session, why: string): Promise<void>;
  /** Whether this peer's session is on this replica. */
  isLocal(peerId: string): boolean;
  /** Whether the schedule tick should consider replanning the session in this stream. */
  setHungry(s: Session, streamId: string, hungry: boolean): void;
  /** Counts the session in (or out of) the stream's users; resolves once its events are heard. */
  useStream(s: Session, streamId: string, using: boolean): Promise<void>;
  /**
   * Whether this replica knows a live stream's edge state ("known"), or
   * heard it just now ("heard": it was not following the stream), or gave
   * up waiting for it ("timeout").
   */
  liveEdgeHeard(streamId: string): Promise<"known" | "heard" | "timeout">;
  /** Tells the fetchers of these ended transfers (but `except`) to stop, here or on other replicas. */
  withdraw(transfers: readonly TransferRecord[], except: string): void;
  /** Takes a peer out of a stream's swarm, withdrawing its transfers and telling the other replicas. */
  leaveSwarm(streamId: string, peerId: string): Promise<void>;
  /** Publishes an event on the stream's channel (fire and forget). */
  announce(streamId: string, e: StreamEvent): void;
  /** Counts chunks a peer newly holds, for the next "holdings" event. */
  holdingsAdded(streamId: string, peerId: string, chunks: number): void;
  /** The Joined answer for a ready stream, or undefined when it has no manifest. */
  joinedMessage(meta: StreamMeta): Promise<Joined | undefined>;
  /** A seeder's Publish (validated): the publish flow of its stream kind. */
  publish(s: Session, p: Publish): Promise<void>;
  /** A live seeder's claims of new chunks (throws INVALID_ARGUMENT when it does not broadcast that stream). */
  liveChunks(s: Session, m: LiveChunks): void;
  /**
   * The seeder unpublished the stream: a live broadcast of this session
   * ends (what it claimed is attested first). Resolves true for a live
   * broadcast, whose seeder stays in the swarm serving the window (its last
   * chunks are often held by nobody else yet) until its session ends.
   */
  unpublished(s: Session, streamId: string): Promise<boolean>;
}

/**
 * One peer's bidirectional session. Messages are handled one at a time in
 * arrival order; the only process-local state is what the connection itself
 * owns (which streams this session joined or published). Swarm state lives
 * in the store.
 */
export class Session {
  readonly peerId = randomBytes(16).toString("base64url");
  readonly host: string;
  role: PeerRoleName | undefined;
  /** Host other peers connect to: the observed address, or a seeder's advertised one. */
  dataHost = "";
  /** Port other peers connect to: Hello.data_port, or a seeder's advertised one. */
  dataPort = 0;
  /**
   * Where the checksum service reads this seeder's data plane: its
   * internal address, by default the connection's address and data_port
   * (never the advertised one, which may be reachable from outside only).
   */
  internalHost = "";
  internalPort = 0;
  agent = "";
  /** Hello.peer_key: named in this peer's tickets (empty for a seeder, which never fetches). */
  peerKey: Buffer = Buffer.alloc(0);
  /** Id of the token a seeder authenticated with (undefined for viewers, or when seeders are not authenticated). */
  seederTokenId: string | undefined;
  /**
   * A viewer's data port did not accept the tracker's connect-back probe:
   * it downloads, but joins its swarms without a data port, so it is never
   * a source (until a later session from it passes the probe).
   */
  unreachable = false;
  /** The probe of its data port, started at Hello (true without a probe). */
  private servable: Promise<boolean> = Promise.resolve(true);
  /** Streams joined as a viewer, by id. */
  private readonly joinedById = new Map<string, JoinedStream>();
  /**
   * Files published as a seeder: name -> id of the stream of its latest
   * Publish. The seeder is in that stream's swarm once it is ready; an older
   * version's swarm is left when a newer version is published.
   */
  private readonly published = new Map<string, string>();
  /**
   * Streams whose swarm the store confirmed this peer in (joined, or added
   * as a seeder once ready). A periodic touch that finds the peer missing
   * from one of them (the store lost its data, or another replica expired
   * it) ends the session so that the peer re-joins with what it holds.
   */
  private readonly swarms = new Set<string>();
  /**
   * Bytes per second one of its transfers gets with all its download slots
   * busy (moving average over its OK reports, from the durations it
   * reports), or undefined before the first. Sizes its directives and their
   * deadlines, so a viewer on a slow link is not given ranges it cannot
   * finish before they expire.
   */
  slotRate: number | undefined;
  /** Its transfers in flight when the reports being settled arrived (they shared its link). */
  private sharing = 1;
  closed = false;
  private cleaned: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private planQueued = false;
  private readonly log: Logger;

  constructor(
    private readonly tracker: SessionHost,
    private readonly call: ServerDuplexStream<PeerMessage | MalformedMessage, TrackerMessage>,
  ) {
    this.host = hostFromPeer(call.getPeer());
    this.log = tracker.log.child({ peerId: this.peerId, host: this.host });
    call.on("data", (msg: PeerMessage | MalformedMessage) => this.enqueue(() => this.handle(msg)));
    call.on("end", () => this.enqueue(() => this.finish()));
    call.on("cancelled", () => void this.close("cancelled"));
    call.on("error", () => void this.close("error"));
    call.on("close", () => void this.close("closed"));
  }

  /** Streams joined as a viewer, by id. */
  get joined(): ReadonlyMap<string, JoinedStream> {
    return this.joinedById;
  }

  /** Streams whose swarm the store confirmed this peer in. */
  get inSwarm(): ReadonlySet<string> {
    return this.swarms;
  }

  /** The store has this peer in the stream's swarm now. */
  enteredSwarm(streamId: string): void {
    this.swarms.add(streamId);
  }

  /** The peer left the stream's swarm (or is leaving it). */
  leftSwarm(streamId: string): void {
    this.swarms.delete(streamId);
  }

  /** Id of the stream of the latest Publish of `name` in this session, if any. */
  publishedStream(name: string): string | undefined {
    return this.published.get(name);
  }

  /** Records a Publish of `name` as `streamId`; returns the id it replaces, if any. */
  publishing(name: string, streamId: string): string | undefined {
    const before = this.published.get(name);
    this.published.set(name, streamId);
    return before;
  }

  /** Forgets the Publish of `name` (rejected, or unpublished). */
  unpublishing(name: string): void {
    this.published.delete(name);
  }

  /** Every stream this session joined or published: those it leaves when it ends. */
  streams(): string[] {
    return [...this.joinedById.keys(), ...this.published.values()];
  }

  /** Ends the session with a status (after what was already written). */
  terminate(err: unknown): Promise<void> {
    if (!this.closed) {
      const status = toPeerStatus(err, this.log);
      if (err instanceof PublicError) {
        this.log.info({ code: err.code, reason: err.message, role: this.role }, "session refused");
      }
      this.closed = true;
      this.call.emit("error", status);
    }
    return this.close("terminated");
  }

  send(msg: TrackerMessage): void {
    if (this.closed) return;
    this.call.write(msg);
  }

  /** True while the peer reads what it is sent; planning waits for slow readers. */
  get keepingUp(): boolean {
    return !this.closed && this.call.writableLength < MAX_UNSENT;
  }

  /**
   * Whether the schedule tick should replan this peer in a stream (`epoch`
   * is SwarmStore.streamEpoch now). Never while all its download slots are
   * busy: the report that frees one replans it. Otherwise when the stream
   * changed since its last plan, but no sooner than `p.tickMs` doubled for
   * each plan in a row that found nothing for it, up to `p.replanMs`: in a
   * big swarm the epoch moves on every report, and replanning every hungry
   * peer on every change would cost a plan per peer per tick, most of them
   * finding nothing new. A peer with nothing in flight is also replanned
   * once it may be starving (the planner then offers the seeder).
   */
  needsPlan(streamId: string, epoch: number, nowMs: number, p: ReplanTiming): boolean {
    const j = this.joined.get(streamId);
    return j !== undefined && replanDue(j, epoch, nowMs, p);
  }

  /**
   * These transfers of a joined stream were withdrawn (by this replica or,
   * through an event, another): tells the peer to stop them and replans it.
   */
  cancelled(streamId: string, transferIds: readonly number[]): void {
    const j = this.joined.get(streamId);
    if (j) for (const id of transferIds) j.inFlight.delete(id);
    this.send({ body: { $case: "cancel", value: { transferIds: [...transferIds] } } });
    this.tracker.setHungry(this, streamId, true);
    this.requestPlan();
  }

  /**
   * Plans its streams once one of the replica's plan slots is free (in the
   * order asked) and the messages that came before are handled. Requests
   * coalesce: while one waits, more reports only add to what it will find.
   * The wait for a slot is outside the session's message queue, so the
   * peer's reports go on being settled meanwhile: on a replica that plans
   * less than it is asked to, a transfer that is done is not withdrawn as
   * expired because its report waited behind plans. False when a plan
   * waits already (or the session is closed); else `settled` runs once the
   * plan is over, whatever came of it.
   */
  requestPlan(settled?: () => void): boolean {
    if (this.closed || this.planQueued || !this.role) return false;
    this.planQueued = true;
    void this.tracker
      .planSlot(
        () =>
          new Promise<void>((done) => {
            const queued = this.enqueue(async () => {
              this.planQueued = false;
              await this.plan();
            }, done);
            if (!queued) done();
          }),
      )
      .finally(settled);
    return true;
  }

  /** Runs fn after the messages queued before it; false (and fn never runs) once the session is cleaned up. */
  private enqueue(fn: () => Promise<void>, settled?: () => void): boolean {
    if (this.closed && this.cleaned) return false;
    this.queued++;
    if (this.queued > MAX_QUEUED) this.call.pause();
    this.queue = this.queue
      .then(() => (this.closed ? undefined : fn()))
      .catch((err: unknown) => this.terminate(err))
      .finally(() => {
        this.queued--;
        if (this.queued === MAX_QUEUED / 2 && !this.closed) this.call.resume();
        settled?.();
      });
    return true;
  }

  /** The peer half-closed: end with OK. */
  private async finish(): Promise<void> {
    this.closed = true;
    this.call.end();
    await this.close("ended");
  }

  /** Removes the peer from every stream it was in. Idempotent. */
  close(why: string): Promise<void> {
    this.closed = true;
    if (this.unreachable) {
      this.unreachable = false;
      this.tracker.metrics.unreachablePeers.dec();
    }
    this.cleaned ??= (async () => {
      try {
        await this.tracker.sessionEnded(this, why);
      } catch (err) {
        this.log.error({ err }, "session cleanup failed");
      }
    })();
    return this.cleaned;
  }

  private async handle(msg: PeerMessage | MalformedMessage): Promise<void> {
    if (msg instanceof MalformedMessage) throw invalidArgument(`malformed message: ${msg.reason}`);
    const body = msg.body;
    if (!body) throw invalidArgument("message has no known body (empty or unknown kind)");
    if (!this.role && body.$case !== "hello") throw invalidArgument(`first message must be Hello, got ${body.$case}`);
    switch (body.$case) {
      case "hello":
        return this.hello(body.value);
      case "join":
        return this.join(body.value);
      case "leave":
        return this.leave(this.joinedStream(body.value.streamId, "Leave"));
      case "have":
        return this.have(body.value);
      case "reports":
        return this.reports(body.value);
      case "position":
        return this.position(body.value);
      case "publish":
        return this.publish(body.value);
      case "unpublish":
        return this.unpublish(body.value.name);
      case "liveChunks":
        if (this.role !== "seeder") throw invalidArgument("only a seeder broadcasts live chunks");
        return this.tracker.liveChunks(this, body.value);
    }
  }

  private async hello(h: Hello): Promise<void> {
    if (this.role) throw invalidArgument("Hello sent twice");
    if (h.role !== PeerRole.PEER_ROLE_VIEWER && h.role !== PeerRole.PEER_ROLE_SEEDER) {
      throw invalidArgument("Hello.role must be VIEWER or SEEDER");
    }
    checkString(h.agent, "Hello.agent", 256);
    checkString(h.credential, "Hello.credential", 4096);
    if (h.peerKey.length !== 0 && h.peerKey.length !== 32) {
      throw invalidArgument(`Hello.peer_key must be a raw 32-byte Ed25519 public key, got ${h.peerKey.length} bytes`);
    }
    const role: PeerRoleName = h.role === PeerRole.PEER_ROLE_SEEDER ? "seeder" : "viewer";
    checkDataAddress(h, role);
    if (role === "seeder" && h.dataPort === 0) throw invalidArgument("a seeder must give its data_port");
    // a viewer fetches, and its tickets name its session key
    if (role === "viewer" && h.peerKey.length === 0) throw invalidArgument("a viewer must give its peer_key");
    if (!this.host) throw invalidArgument("cannot tell the peer's address from the connection");
    const { seederAuth } = this.tracker;
    const tokenId = role === "seeder" ? seederAuth.check(h.credential, this.host) : undefined;
    const networkKey = await this.tracker.networkKey();
    if (this.closed) return;
    // revoked while waiting for the network key: the reload's sweep did not see this session yet
    if (tokenId !== undefined && !seederAuth.tokens!.valid(tokenId))
      throw seederAuth.revoked(tokenId, this.host, this.peerId);
    this.seederTokenId = tokenId;
    this.role = role;
    this.dataHost = h.advertiseHost || this.host;
    this.dataPort = h.advertisePort || h.dataPort;
    this.internalHost = h.internalHost || this.host;
    this.internalPort = h.internalPort || h.dataPort;
    this.peerKey = Buffer.from(h.peerKey);
    this.agent = h.agent;
    this.probeDataPort();
    this.tracker.sessionStarted(this);
    this.log.info(
      {
        role,
        dataHost: this.dataHost,
        dataPort: this.dataPort,
        ...(role === "seeder" ? { internal: joinHostPort(this.internalHost, this.internalPort) } : {}),
        agent: this.agent,
      },
      "session started",
    );
    this.send({
      body: {
        $case: "welcome",
        value: {
          peerId: this.peerId,
          observedHost: this.host,
          ticketKeys: this.tracker.ticketKeys(),
          networkKeys: [networkKey],
        },
      },
    });
  }

  /**
   * Starts the connect-back probe of a viewer's data port (only the address
   * it connected from, see PeerProbe); its first Join waits for the answer.
   */
  private probeDataPort(): void {
    const probe = this.tracker.peerProbe;
    if (!probe || this.role !== "viewer" || this.dataPort === 0) return;
    this.servable = probe.reachable(this.host, this.dataPort).then((ok) => {
      if (!ok && !this.closed && !this.unreachable) {
        this.unreachable = true;
        this.tracker.metrics.unreachablePeers.inc();
        this.log.info(
          { dataPort: this.dataPort },
          "data port does not accept connections from the tracker: the viewer downloads but serves nobody",
        );
      }
      return ok;
    });
  }

  private async join(j: Join): Promise<void> {
    if (this.role !== "viewer") throw invalidArgument("a seeder publishes streams; only a viewer joins");
    checkName(j.name);
    if (
      j.mode !== WantMode.WANT_MODE_UNSPECIFIED &&
      j.mode !== WantMode.WANT_MODE_IN_ORDER &&
      j.mode !== WantMode.WANT_MODE_BULK
    ) {
      throw invalidArgument(`Join.mode ${j.mode} is unknown`);
    }
    const { store } = this.tracker;
    const streamId = await store.streamIdByName(j.name);
    const meta = streamId ? await store.getStream(streamId) : undefined;
    if (meta?.status === "failed") throw failedPrecondition(`"${j.name}" cannot be downloaded: ${meta.failure}`);
    if (!meta || meta.status !== "ready") throw notFound(`no stream named "${j.name}"`);
    if (this.joined.has(meta.streamId)) {
      throw invalidArgument(
        `Join: this session already joined "${j.name}" (stream ${meta.streamId}); join a stream once per session`,
      );
    }
    const bounds = messageBounds(meta);
    checkRanges(j.have, bounds, "Join.have");
    if (j.position > bounds.high + 1) throw invalidArgument(`Join.position ${j.position} ${outside(bounds)}`);
    const joinedMessage = await this.tracker.joinedMessage(meta);
    if (!joinedMessage) throw notFound(`no stream named "${j.name}"`);
    // a viewer whose data port the tracker cannot reach joins without one: never a source
    const port = (await this.servable) ? this.dataPort : 0;
    if (this.closed) return;
    // recorded before the store call, so that a session closing meanwhile leaves the stream
    this.joinedById.set(meta.streamId, {
      streamId: meta.streamId,
      name: meta.name,
      shape: shapeOf(meta),
      bounds,
      plannedEpoch: -1,
      plannedMs: 0,
      fruitless: 0,
      idle: true,
      tuningUntil:
        meta.kind === "live" && j.mode !== WantMode.WANT_MODE_BULK && j.position === 0 && j.have.length === 0
          ? Date.now() + TUNE_IN_WAIT_MS
          : 0,
      inFlight: new Set(),
    });
    await this.tracker.useStream(this, meta.streamId, true);
    let answer = joinedMessage;
    if (meta.kind === "live" && (await this.tracker.liveEdgeHeard(meta.streamId)) === "heard") {
      // this replica was not following the stream: the window as of the edge it just heard, with its
      // random access points, rather than one without them (the viewer would tune in mid-frame)
      const now = await store.getStream(meta.streamId);
      if (now?.kind === "live") answer = (await this.tracker.joinedMessage(now)) ?? answer;
    }
    const { dropped } = await store.joinPeer(
      meta.streamId,
      {
        peerId: this.peerId,
        host: this.dataHost,
        port,
        role: "viewer",
        mode: j.mode === WantMode.WANT_MODE_BULK ? "bulk" : "in_order",
        position: j.position,
        have: j.have,
      },
      Date.now(),
    );
    this.tracker.withdraw(dropped, this.peerId);
    if (this.closed) {
      // the cleanup may have run before the store had the peer
      await this.tracker.leaveSwarm(meta.streamId, this.peerId);
      return;
    }
    this.tracker.announce(meta.streamId, { type: "joined", peerId: this.peerId, role: "viewer" });
    this.enteredSwarm(meta.streamId);
    this.tracker.stats.joined(this, this.joined.get(meta.streamId)!, j.have);
    this.log.info({ streamId: meta.streamId, name: meta.name, mode: j.mode }, "joined stream");
    this.send({ body: { $case: "joined", value: answer } });
    this.requestPlan();
  }

  private joinedStream(streamId: string, what: string): JoinedStream {
    if (!isStreamId(streamId)) throw invalidArgument(`${what}: "${streamId.slice(0, 64)}" is not a stream id`);
    const meta = this.joined.get(streamId);
    if (!meta) throw invalidArgument(`${what}: this session has not joined stream ${streamId}`);
    return meta;
  }

  private async leave(meta: JoinedStream): Promise<void> {
    this.joinedById.delete(meta.streamId);
    await this.tracker.useStream(this, meta.streamId, false);
    this.leftSwarm(meta.streamId);
    await this.tracker.leaveSwarm(meta.streamId, this.peerId);
    this.log.info({ streamId: meta.streamId }, "left stream");
  }

  private async have(h: Have): Promise<void> {
    const meta = this.joinedStream(h.streamId, "Have");
    checkRanges(h.ranges, meta.bounds, "Have.ranges");
    this.tracker.holdingsAdded(
      meta.streamId,
      this.peerId,
      await this.tracker.store.addHoldings(meta.streamId, this.peerId, h.ranges),
    );
    // peers that may now fetch from this one are replanned by the tracker's schedule tick; this one
    // only when it has a download slot free (a viewer tells chunks from a seeder's range while the
    // range is still coming, and its report replans it)
    const j = this.joined.get(meta.streamId);
    if (j && j.inFlight.size < DEFAULT_PLANNER.maxDownloads) this.requestPlan();
  }

  private async position(p: Position): Promise<void> {
    const meta = this.joinedStream(p.streamId, "Position");
    if (p.nextChunk > meta.bounds.high + 1) {
      throw invalidArgument(`Position.next_chunk ${p.nextChunk} ${outside(meta.bounds)}`);
    }
    const delays = p.live && meta.shape.kind === "live" ? p.live.delaysMs.slice(0, MAX_DELAYS) : [];
    if (p.live && meta.shape.kind === "live") {
      const { liveDelay, liveSkipped } = this.tracker.metrics;
      const stream = this.tracker.metrics.streamLabel(meta.name);
      for (const ms of delays) liveDelay.observe({ stream }, ms / 1000);
      if (p.live.skipped > 0) liveSkipped.inc({ stream }, p.live.skipped);
      for (const reason of LIVE_REJECTIONS) {
        const n = p.live.rejected[reason] ?? 0;
        if (n > 0)
          this.tracker.metrics.liveRejected.inc({ stream: this.tracker.metrics.streamLabel(meta.name), reason }, n);
      }
    }
    this.tracker.stats.position(this, meta, p.nextChunk, delays);
    await this.tracker.store.setPosition(meta.streamId, this.peerId, p.nextChunk);
    meta.tuningUntil = 0;
    this.requestPlan();
  }

  private async reports(r: TransferReports): Promise<void> {
    if (this.role !== "viewer") throw invalidArgument("only a viewer fetches, so only a viewer reports transfers");
    if (r.reports.length > MAX_REPORTS) {
      throw invalidArgument(`TransferReports has ${r.reports.length} reports (at most ${MAX_REPORTS})`);
    }
    for (const rep of r.reports) {
      if (
        rep.outcome < TransferOutcome.TRANSFER_OUTCOME_OK ||
        rep.outcome > TransferOutcome.TRANSFER_OUTCOME_CANCELLED
      ) {
        throw invalidArgument(`report of transfer ${rep.transferId} has no known outcome (${rep.outcome})`);
      }
      checkString(rep.detail, "TransferReport.detail", 1024);
      checkRanges(rep.verified, ANY_CHUNK, "TransferReport.verified");
    }
    if (r.reports.length === 0) return;
    let sharing = 0;
    for (const j of this.joined.values()) sharing += j.inFlight.size;
    this.sharing = Math.max(1, sharing);
    // each report's stream: the one this session was directed to fetch it in, else any it joined (a
    // directive it was sent before a resync); only this peer's own transfers are taken. Consecutive
    // reports of one stream settle in one store call; a refusal ends the call, its weight being
    // recorded after it (see judged), so sources' trust changes in the order the reports came.
    let settled = false;
    let run: TransferReport[] = [];
    let runStream: string | undefined;
    const flush = async () => {
      if (runStream !== undefined && (await this.settle(runStream, run)).some(Boolean)) settled = true;
      run = [];
      runStream = undefined;
    };
    for (const rep of r.reports) {
      const local = [...this.joined.values()].find((j) => j.inFlight.has(rep.transferId));
      for (const j of this.joined.values()) j.inFlight.delete(rep.transferId);
      if (!local) {
        await flush();
        for (const streamId of this.joined.keys()) {
          if (!(await this.settle(streamId, [rep]))[0]) continue;
          settled = true;
          break;
        }
        continue;
      }
      if (runStream !== local.streamId) await flush();
      runStream = local.streamId;
      run.push(rep);
      if (rep.outcome === TransferOutcome.TRANSFER_OUTCOME_REFUSED) await flush();
    }
    await flush();
    if (settled) this.requestPlan();
  }

  /**
   * Applies reports of transfers this peer fetched in the stream, in one
   * store call: takes each transfer, adds the verified chunks of its range to
   * the peer's holdings and records the outcome against its source. Resolves,
   * for each report, whether this peer fetched such a transfer there.
   */
  private async settle(streamId: string, reports: readonly TransferReport[]): Promise<boolean[]> {
    const { store } = this.tracker;
    const meta = this.joined.get(streamId)!;
    const settlements = reports.map(({ transferId, outcome, verified }) => {
      // a refusal's weight depends on who refused (see judged): recorded once the transfer is known
      const recorded = RECORDED_OUTCOMES.get(outcome);
      return {
        transferId,
        report: {
          // an OK that names no chunks verified the whole range; only chunks of the directive count
          ...(outcome === TransferOutcome.TRANSFER_OUTCOME_OK && verified.length === 0 ? {} : { verified }),
          ...(recorded ? { outcome: recorded } : {}),
        },
      };
    });
    const settled = await store.settleTransfers(streamId, this.peerId, settlements, TRUST_POLICY);
    const out: boolean[] = [];
    for (const [i, report] of reports.entries()) {
      const s = settled[i];
      out.push(s !== undefined);
      if (s) await this.settled(meta, report, s);
    }
    return out;
  }

  /** What follows the settlement of a report: holdings, delivered bytes, the outcome's metrics and trust. */
  private async settled(meta: JoinedStream, report: TransferReport, settled: SettledTransfer): Promise<void> {
    const { bytes } = report;
    const { metrics } = this.tracker;
    const t = settled.transfer;
    this.tracker.holdingsAdded(t.streamId, this.peerId, settled.added);
    const delivered = Math.min(Math.max(0, bytes), rangeBytes(meta.shape, t.range));
    if (delivered > 0) {
      metrics.deliveredBytes.inc(
        { stream: metrics.streamLabel(meta.name), source: t.serverRole === "seeder" ? "seeder" : "peer" },
        delivered,
      );
      if (t.serverRole !== "seeder" && !this.tracker.isLocal(t.serverId)) metrics.remotePeerBytes.inc(delivered);
    }
    const trust = await this.judged(t, report, delivered, settled.trust);
    this.tracker.stats.settled(this, meta, t, delivered, trust);
  }

  /**
   * Counts a report's outcome; a refusal is recorded against its source here,
   * the other outcomes were with the settlement (`trust`). Resolves the
   * source's trust after it.
   */
  private async judged(
    t: TransferRecord,
    report: TransferReport,
    delivered: number,
    trust: SourceTrust | undefined,
  ): Promise<SourceTrust | undefined> {
    const { outcome, detail, httpStatus } = report;
    const { store, metrics } = this.tracker;
    switch (outcome) {
      case TransferOutcome.TRANSFER_OUTCOME_OK:
        metrics.transfersDone.inc();
        this.measure(delivered, report.durationMs);
        return trust;
      case TransferOutcome.TRANSFER_OUTCOME_FAILED:
        metrics.transfersFailed.inc({ reason: "failed" });
        this.log.debug({ transferId: t.transferId, serverId: t.serverId, detail }, "transfer failed");
        return this.banned(t, "failed", trust);
      case TransferOutcome.TRANSFER_OUTCOME_REFUSED: {
        // The tracker directs a fetcher only to ranges the source claimed to
        // hold: a 416 proves the claim false, which counts like bad data. A 403
        // or 404 may be a stale ticket or a peer that just left: a strike. A
        // live seeder claims nothing: the tracker credits it with its chunks as
        // they are attested, and a viewer's request can reach it a moment
        // before their attestations do. Its 416 is a failure (a seeder is never
        // banned for those), not a false claim that would cut the broadcast off.
        metrics.transfersFailed.inc({ reason: "refused" });
        this.log.info(
          { transferId: t.transferId, serverId: t.serverId, httpStatus, detail },
          "source refused a directed range",
        );
        const liveSeeder = this.joined.get(t.streamId)?.shape.kind === "live" && t.serverRole === "seeder";
        const falseClaim = httpStatus === 416 && !liveSeeder;
        if (falseClaim) this.tracker.stats.rejected(this, t, `refused a range it claimed (416): ${detail}`);
        const judged = falseClaim ? "bad_data" : "failed";
        return this.banned(t, judged, await store.recordSourceOutcome(t.streamId, t.serverId, judged, TRUST_POLICY));
      }
      case TransferOutcome.TRANSFER_OUTCOME_BAD_DATA:
        metrics.transfersFailed.inc({ reason: "bad_data" });
        metrics.badChunks.inc();
        this.log.warn({ transferId: t.transferId, serverId: t.serverId, detail }, "bad data reported");
        this.tracker.stats.rejected(this, t, detail);
        return this.banned(t, "bad_data", trust);
      default:
        metrics.transfersFailed.inc({ reason: "cancelled" });
        return undefined;
    }
  }

  /** After a failure recorded against a transfer's source (`trust`): logs the ban it caused, if it just did. Resolves `trust`. */
  private async banned(
    t: TransferRecord,
    outcome: Exclude<SourceOutcome, "ok">,
    trust: SourceTrust | undefined,
  ): Promise<SourceTrust | undefined> {
    if (!trust?.banned) return trust;
    const justNow =
      outcome === "bad_data" ? trust.bad === TRUST_POLICY.banAfterBad : trust.strikes === TRUST_POLICY.banAfterStrikes;
    if (!justNow) return trust;
    const reason = outcome === "bad_data" ? "bad_data" : "unreachable";
    this.tracker.metrics.sourcesBanned.inc({ reason });
    this.tracker.stats.banned(t.streamId, t.serverId, reason);
    // bad data is no accident: its address stays banned, so a new session from it serves nothing either
    const host =
      outcome === "bad_data" && t.serverRole === "viewer"
        ? (await this.tracker.store.getPeer(t.streamId, t.serverId))?.host
        : undefined;
    if (host) await this.tracker.store.banHost(t.streamId, host, Date.now() + HOST_BAN_MS);
    this.log.warn(
      { streamId: t.streamId, serverId: t.serverId, host, bad: trust.bad, strikes: trust.strikes },
      "source banned",
    );
    return trust;
  }

  private async publish(p: Publish): Promise<void> {
    if (this.role !== "seeder") throw invalidArgument("only a seeder may publish");
    checkName(p.name);
    if (p.originUrl && !p.live) {
      // the checksum service fetches this URL: http(s) only, with one usable validator
      const problem =
        originUrlProblem(p.originUrl) ??
        originValidatorProblem({ etag: p.originEtag, lastModified: p.originLastModified });
      if (problem) throw invalidArgument(`Publish of "${p.name.slice(0, 64)}": ${problem}`);
    }
    await this.tracker.publish(this, p);
  }

  private async unpublish(name: string): Promise<void> {
    if (this.role !== "seeder") throw invalidArgument("only a seeder may unpublish");
    checkName(name);
    const streamId = this.published.get(name);
    if (!streamId) {
      this.send({ body: { $case: "notice", value: { message: `"${name}" is not published by this session` } } });
      return;
    }
    this.unpublishing(name);
    if (await this.tracker.unpublished(this, streamId)) {
      this.log.info({ streamId, name }, "unpublished: the broadcast ended, its window is still served");
      return;
    }
    await this.tracker.useStream(this, streamId, false);
    this.leftSwarm(streamId);
    await this.tracker.leaveSwarm(streamId, this.peerId);
    this.log.info({ streamId, name }, "unpublished");
  }

  /**
   * Folds one OK transfer into slotRate: its rate as measured by the peer,
   * scaled from the `sharing` transfers it shared the link with to a full
   * set of download slots.
   */
  private measure(bytes: number, durationMs: number): void {
    if (durationMs <= 0 || bytes <= 0) return;
    const sample = ((bytes * 1000) / durationMs) * (this.sharing / DEFAULT_PLANNER.maxDownloads);
    this.slotRate = this.slotRate === undefined ? sample : 0.7 * this.slotRate + 0.3 * sample;
  }

  /**
   * A viewer that gets nothing in a stream whose name now points at a newer
   * version (its file or origin changed), with no seeder left in it and a
   * chunk that no peer holds or fetches, can never finish: it is told so
   * (Retired) and taken out of the stream, instead of waiting for its stall
   * timeout. It keeps what it verified, a prefix of the old version.
   */
  private async endIfRetired(j: JoinedStream): Promise<void> {
    const { store } = this.tracker;
    const current = await store.streamIdByName(j.name);
    if (current === undefined || current === j.streamId) return;
    if ((await store.peerCounts(j.streamId)).seeders > 0) return;
    const all = { first: j.bounds.low, last: j.bounds.high };
    const hole = (await store.availability(j.streamId, all)).find((seg) => seg.count === 0);
    if (!hole || this.closed || !this.joined.has(j.streamId)) return;
    const detail =
      `"${j.name}" changed during the download: the version it started (stream ${j.streamId}) was replaced by ` +
      `stream ${current} and nobody can serve chunk ${hole.first} of it any more; download it again for the new version`;
    this.send({
      body: { $case: "retired", value: { streamId: j.streamId, name: j.name, byStreamId: current, detail } },
    });
    this.log.info({ streamId: j.streamId, by: current, missingFrom: hole.first }, "viewer left a retired stream");
    await this.leave(j);
    this.tracker.setHungry(this, j.streamId, false);
  }

  /** Plans every joined stream and sends what was decided in one Directives message. */
  private async plan(): Promise<void> {
    if (this.role !== "viewer" || !this.keepingUp) return;
    const started = process.hrtime.bigint();
    const directives: Directive[] = [];
    for (const streamId of [...this.joined.keys()]) {
      const j = this.joined.get(streamId);
      if (!j) continue;
      const now = Date.now();
      if (j.tuningUntil > now) {
        // the schedule tick plans it when the wait is over (needsPlan), unless its Position comes first
        this.tracker.setHungry(this, streamId, true);
        continue;
      }
      const plan = await this.tracker.planner.plan(streamId, this.peerId, now, this.slotRate, this.peerKey);
      // its hashing failed midway: the chunks beyond the hashed ones can never be verified
      if (plan.failure !== undefined) throw failedPrecondition(`"${j.name}" cannot be downloaded: ${plan.failure}`);
      j.plannedEpoch = plan.epoch;
      j.plannedMs = now;
      j.fruitless = plan.directives.length > 0 || plan.satisfied ? 0 : Math.min(j.fruitless + 1, 16);
      j.idle = plan.idle;
      directives.push(...plan.directives);
      for (const d of plan.directives) j.inFlight.add(d.transferId);
      this.tracker.setHungry(this, streamId, !plan.satisfied);
      if (plan.directives.length === 0 && plan.idle && !plan.satisfied && j.fruitless >= 2) {
        await this.endIfRetired(j);
      }
    }
    if (directives.length > 0 && !this.closed) {
      this.tracker.metrics.transfersStarted.inc(directives.length);
      this.send({ body: { $case: "directives", value: { directives } } });
    }
    this.tracker.metrics.planSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }
}
