import { Counter, Gauge, Histogram, LabelCap, type Registry } from "@distribustream/runtime";

export type FailReason = "failed" | "refused" | "bad_data" | "expired" | "cancelled";

/** The tracker's Prometheus metrics, registered in the given registry. */
export class TrackerMetrics {
  readonly sessions: Gauge<"role">;
  readonly transfersStarted: Counter;
  readonly transfersDone: Counter;
  readonly transfersFailed: Counter<"reason">;
  readonly badChunks: Counter;
  readonly sourcesBanned: Counter<"reason">;
  readonly planSeconds: Histogram;
  readonly plansWaiting: Gauge;
  readonly deliveredBytes: Counter<"stream" | "source">;
  readonly completed: Counter<"stream">;
  readonly remotePeerBytes: Counter;
  readonly streams: Gauge;
  readonly controlMessages: Counter<"direction">;
  readonly controlBytes: Counter<"direction">;
  readonly cleanupLeader: Gauge;
  readonly storeUp: Gauge;
  /** Viewer sessions whose data port did not accept the connect-back probe. */
  readonly unreachablePeers: Gauge;
  readonly peerProbes: Counter<"result">;
  readonly eventsPublished: Counter<"type">;
  readonly eventsReceived: Counter<"type">;
  readonly resyncs: Counter;
  readonly streamsRetired: Counter;
  readonly limited: Counter<"limit">;
  readonly liveEdge: Gauge<"stream">;
  readonly liveViewers: Gauge<"stream">;
  readonly liveChunksAttested: Counter<"stream">;
  readonly liveChunksLost: Counter<"stream">;
  readonly liveClaimsRefused: Counter<"stream">;
  readonly liveDelay: Histogram<"stream">;
  readonly liveSkipped: Counter<"stream">;
  readonly liveRejected: Counter<"stream" | "reason">;
  private readonly streamNames = new LabelCap(200);

  /**
   * The `stream` label of a stream name: its own for the first 200 names this
   * replica exports, "other" for the rest, so that series stay bounded.
   */
  streamLabel(name: string): string {
    return this.streamNames.of(name);
  }

  /**
   * `streamCount` answers the ready-streams gauge at each scrape (so it also
   * goes down), `plansWaiting` the plans waiting for a plan slot.
   */
  constructor(registry: Registry, streamCount: () => Promise<number>, plansWaiting: () => number) {
    const registers = [registry];
    this.sessions = new Gauge({
      name: "pdtp_tracker_sessions",
      help: "Open peer sessions by role",
      labelNames: ["role"],
      registers,
    });
    this.sessions.set({ role: "viewer" }, 0);
    this.sessions.set({ role: "seeder" }, 0);
    this.transfersStarted = new Counter({
      name: "pdtp_tracker_transfers_started_total",
      help: "Transfer directives issued",
      registers,
    });
    this.transfersDone = new Counter({
      name: "pdtp_tracker_transfers_done_total",
      help: "Transfers reported OK",
      registers,
    });
    this.transfersFailed = new Counter({
      name: "pdtp_tracker_transfers_failed_total",
      help: "Transfers that did not complete, by reason",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["failed", "refused", "bad_data", "expired", "cancelled"])
      this.transfersFailed.inc({ reason }, 0);
    this.badChunks = new Counter({
      name: "pdtp_tracker_bad_chunks_total",
      help: "Transfers reported BAD_DATA (a chunk failed verification)",
      registers,
    });
    this.deliveredBytes = new Counter({
      name: "pdtp_tracker_delivered_bytes_total",
      help: "Payload bytes delivered to peers, by stream name and source kind",
      labelNames: ["stream", "source"],
      registers,
    });
    this.completed = new Counter({
      name: "pdtp_tracker_completed_total",
      help: "Viewers on this replica that wrote a whole file out (their Position reached its end), by stream name",
      labelNames: ["stream"],
      registers,
    });
    this.remotePeerBytes = new Counter({
      name: "pdtp_tracker_remote_peer_bytes_total",
      help: "Payload bytes this replica's viewers got from peers whose sessions are on other tracker replicas",
      registers,
    });
    this.sourcesBanned = new Counter({
      name: "pdtp_tracker_sources_banned_total",
      help: "Sources no longer used in a stream: bad_data (bad chunks, refused ranges) or unreachable (failures in a row)",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["bad_data", "unreachable"]) this.sourcesBanned.inc({ reason }, 0);
    this.planSeconds = new Histogram({
      name: "pdtp_tracker_plan_seconds",
      help: "Time to plan one peer (all its streams) and send its directives, once it has a plan slot",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    });
    this.plansWaiting = new Gauge({
      name: "pdtp_tracker_plans_waiting",
      help: "Viewers' plans waiting for one of the replica's plan slots: above zero for long, the replica plans less than it is asked to",
      registers,
      collect() {
        this.set(plansWaiting());
      },
    });
    this.streams = new Gauge({
      name: "pdtp_tracker_streams",
      help: "Ready streams that can be joined",
      registers,
      async collect() {
        try {
          this.set(await streamCount());
        } catch {
          // the store is unreachable or closed: keep the last value
        }
      },
    });
    this.controlMessages = new Counter({
      name: "pdtp_tracker_control_messages_total",
      help: "Session messages, in (peer to tracker) and out",
      labelNames: ["direction"],
      registers,
    });
    this.controlBytes = new Counter({
      name: "pdtp_tracker_control_bytes_total",
      help: "Encoded bytes of session messages, in and out",
      labelNames: ["direction"],
      registers,
    });
    this.cleanupLeader = new Gauge({
      name: "pdtp_tracker_cleanup_leader",
      help: "1 while this replica holds the cleanup lease and runs the expiry sweeps, else 0",
      registers,
    });
    this.cleanupLeader.set(0);
    this.unreachablePeers = new Gauge({
      name: "pdtp_tracker_unreachable_peers",
      help: "Viewer sessions on this replica whose data port did not accept the connect-back probe: they download but are never a source",
      registers,
    });
    this.peerProbes = new Counter({
      name: "pdtp_tracker_peer_probes_total",
      help: "Connect-back probes of viewers' data ports by result (busy: not probed, too many waiting); cached answers are not counted",
      labelNames: ["result"],
      registers,
    });
    this.storeUp = new Gauge({
      name: "pdtp_tracker_store_up",
      help: "1 while the swarm store answers health checks, else 0",
      registers,
    });
    this.storeUp.set(1);
    this.eventsPublished = new Counter({
      name: "pdtp_tracker_events_published_total",
      help: "Stream events this replica published for the other replicas, by type",
      labelNames: ["type"],
      registers,
    });
    this.eventsReceived = new Counter({
      name: "pdtp_tracker_events_received_total",
      help: "Stream events this replica received on the channels of its sessions' streams (its own included), by type",
      labelNames: ["type"],
      registers,
    });
    this.resyncs = new Counter({
      name: "pdtp_tracker_event_resyncs_total",
      help: "Times the event subscription reconnected and the sessions were re-checked against the swarm store",
      registers,
    });
    this.streamsRetired = new Counter({
      name: "pdtp_tracker_streams_retired_total",
      help: "Streams this replica retired as the cleanup leader: no peer and no seeder in them for --stream-retire-after",
      registers,
    });
    this.limited = new Counter({
      name: "pdtp_tracker_limited_total",
      help: "Sessions and messages refused with RESOURCE_EXHAUSTED by a per-address limit: sessions (too many open) or messages (rate)",
      labelNames: ["limit"],
      registers,
    });
    for (const limit of ["sessions", "messages"]) this.limited.inc({ limit }, 0);
    // live streams, by name
    this.liveEdge = new Gauge({
      name: "pdtp_tracker_live_edge_seq",
      help: "Sequence number of a live stream's edge (its newest attested chunk), as this replica last attested it",
      labelNames: ["stream"],
      registers,
    });
    this.liveViewers = new Gauge({
      name: "pdtp_tracker_live_viewers",
      help: "Viewers of a live stream whose sessions are on this replica",
      labelNames: ["stream"],
      registers,
    });
    this.liveChunksAttested = new Counter({
      name: "pdtp_tracker_live_chunks_attested_total",
      help: "Live chunks the checksum service attested",
      labelNames: ["stream"],
      registers,
    });
    this.liveChunksLost = new Counter({
      name: "pdtp_tracker_live_chunks_lost_total",
      help: "Live chunks claimed by the seeder that could not be attested (viewers skip them)",
      labelNames: ["stream"],
      registers,
    });
    this.liveClaimsRefused = new Counter({
      name: "pdtp_tracker_live_claims_refused_total",
      help: "LiveChunks messages refused (out of sequence, dated back, too long, too many waiting)",
      labelNames: ["stream"],
      registers,
    });
    this.liveDelay = new Histogram({
      name: "pdtp_tracker_live_delay_seconds",
      help: "Source-to-viewer delay of live chunks written out by viewers (source timestamp to the viewer's write)",
      labelNames: ["stream"],
      buckets: [0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10],
      registers,
    });
    this.liveSkipped = new Counter({
      name: "pdtp_tracker_live_skipped_chunks_total",
      help: "Live chunks viewers gave up (missed their deadline, or passed over by a re-tune)",
      labelNames: ["stream"],
      registers,
    });
    this.liveRejected = new Counter({
      name: "pdtp_tracker_live_chunks_rejected_total",
      help: "Live chunks viewers refused, by reason (bad-signature, other-stream, outside-window, stale, replayed, reordered, bad-data)",
      labelNames: ["stream", "reason"],
      registers,
    });
    for (const direction of ["in", "out"]) {
      this.controlMessages.inc({ direction }, 0);
      this.controlBytes.inc({ direction }, 0);
    }
  }
}
