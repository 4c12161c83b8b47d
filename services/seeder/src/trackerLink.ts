import * as grpc from "@grpc/grpc-js";
import type { DataPlaneIdentity } from "@distribustream/data-plane";
import {
  PeerRole,
  type DataAddress,
  type LiveAttested,
  type PeerMessage,
  type PublishResult,
  type Welcome,
} from "@distribustream/pdtp";
import type { ClientTls, Logger } from "@distribustream/runtime";
import { TrackerLink, type LinkPolicy, type SessionEnd } from "@distribustream/tracker-link";

export const SEEDER_AGENT = "dsseed/0.1.0";

/** The tracker refused this seeder's credential; the message reads "the tracker refused … (CODE: reason)". */
export class CredentialRefusedError extends Error {
  override name = "CredentialRefusedError";
  constructor(
    readonly code: grpc.status,
    readonly reason: string,
  ) {
    super(`the tracker refused this seeder's credential (${grpc.status[code]}: ${reason})`);
  }
}

const BACKOFF = { baseMs: 250, maxMs: 10_000, jitter: "full" } as const;

/** A seeder never gives up on its tracker, unless it refuses the credential: retrying cannot help then. */
const SEEDER_POLICY: LinkPolicy = {
  connect: { attempts: Infinity, backoff: BACKOFF },
  reconnect: { attempts: Infinity, backoff: BACKOFF },
  retryable: (end) =>
    end.code === grpc.status.UNAUTHENTICATED || end.code === grpc.status.PERMISSION_DENIED
      ? { retry: false, error: new CredentialRefusedError(end.code, end.details) }
      : { retry: true, reason: end.details },
  exhausted: () => new Error("unreachable: the seeder's attempts are unbounded"),
};

export interface SeederLinkOptions {
  /** "host:port" of the tracker's PDTP port. */
  tracker: string;
  trackerTls?: ClientTls | undefined;
  /** Sent in Hello.credential. */
  credential?: string | undefined;
  /** Sent in Hello.advertise_host and advertise_port: the address other peers are given. */
  advertise?: DataAddress | undefined;
  /** Sent in Hello.internal_host and internal_port: the address the checksum service reads from. */
  internalAddress?: DataAddress | undefined;
  /** The data plane's port, sent in Hello. */
  dataPort: number;
  /** A session was welcomed: publish everything again. */
  onWelcome(welcome: Welcome): void;
  onPublishResult(result: PublishResult): void;
  /** Attestations of a live broadcast's chunks this seeder claimed. */
  onLiveAttested(attested: LiveAttested): void;
  /** The session ended (`end`: how): what its tracker said no longer holds. */
  onSessionLost(end: SessionEnd): void;
  /** The tracker refused the credential; the link has stopped. */
  onRefused(err: CredentialRefusedError): void;
  log: Logger;
}

/**
 * The seeder's tracker link: a SEEDER Hello, reconnected with full-jitter
 * backoff (250 ms doubling to 10 s) for as long as the seeder runs, and the
 * data plane's identity (peer id, ticket keys) from the Welcome and key
 * rotations.
 */
export class SeederLink {
  private known: DataPlaneIdentity | undefined;
  private readonly link: TrackerLink;

  constructor(private readonly o: SeederLinkOptions) {
    const log = o.log;
    this.link = new TrackerLink({
      target: o.tracker,
      tls: o.trackerTls,
      channelOptions: {
        "grpc.initial_reconnect_backoff_ms": BACKOFF.baseMs,
        "grpc.max_reconnect_backoff_ms": BACKOFF.maxMs,
      },
      hello: () => ({
        role: PeerRole.PEER_ROLE_SEEDER,
        dataPort: o.dataPort,
        agent: SEEDER_AGENT,
        credential: o.credential ?? "",
        advertiseHost: o.advertise?.host ?? "",
        advertisePort: o.advertise?.port ?? 0,
        internalHost: o.internalAddress?.host ?? "",
        internalPort: o.internalAddress?.port ?? 0,
        // a seeder only serves; it fetches nothing, so no ticket needs its key
        peerKey: Buffer.alloc(0),
      }),
      policy: SEEDER_POLICY,
      resync: (session) => {
        const w = session.welcome;
        this.known = { peerId: w.peerId, ticketKeys: w.ticketKeys };
        o.onWelcome(w);
      },
      onMessage: (msg) => {
        const body = msg.body;
        try {
          switch (body?.$case) {
            case "publishResult":
              o.onPublishResult(body.value);
              break;
            case "liveAttested":
              o.onLiveAttested(body.value);
              break;
            case "keys":
              // a ticket key rotation: serve tickets of the new key from now on
              if (this.known) this.known = { peerId: this.known.peerId, ticketKeys: body.value.ticketKeys };
              log.info({ ticketKeys: body.value.ticketKeys.map((k) => k.keyId) }, "ticket keys changed");
              break;
            case "notice":
              log.warn({ notice: body.value.message }, "tracker notice");
              break;
            default:
              log.debug({ message: body?.$case }, "ignored tracker message");
          }
        } catch (err) {
          log.error({ err }, "cannot handle tracker message");
        }
      },
      onSessionEnd: (_session, end) => o.onSessionLost(end),
      onRetry: ({ end, delayMs }) => {
        const retryInMs = Math.round(delayMs);
        if (end.code === grpc.status.OK) log.warn({ tracker: o.tracker, retryInMs }, "tracker ended the session");
        else {
          const fields = {
            code: grpc.status[end.code] ?? end.code,
            reason: end.details,
            tracker: o.tracker,
            retryInMs,
          };
          log.warn(fields, "tracker session failed");
        }
      },
    });
    this.link.done.catch((err: unknown) => {
      if (!(err instanceof CredentialRefusedError)) return log.error({ err }, "tracker link ended");
      log.error({ tracker: o.tracker, code: grpc.status[err.code], reason: err.reason }, err.message);
      o.onRefused(err);
    });
  }

  /** The data plane's identity, once the tracker welcomed this seeder. */
  identity(): DataPlaneIdentity | undefined {
    return this.known;
  }

  /** Writes to the current session; dropped without one (the next Welcome resyncs). */
  send(msg: PeerMessage): void {
    this.link.send(msg);
  }

  /** Ends the session and stops reconnecting. */
  close(): Promise<void> {
    return this.link.close();
  }
}
