import { setTimeout as sleep } from "node:timers/promises";
import { credentials, status, type ChannelCredentials } from "@grpc/grpc-js";
import {
  PeerRole,
  Signer,
  TrackerClient,
  type PeerMessage,
  type StreamDescriptor,
  type TrackerMessage,
} from "@distribustream/pdtp";

/** The stream as a tracker describes it to anyone (peers and seeders in its swarm). */
export function describeStream(target: string, name: string): Promise<StreamDescriptor> {
  const client = new TrackerClient(target, credentials.createInsecure());
  return new Promise<StreamDescriptor>((resolve, reject) =>
    client.describeStream({ name, streamId: "" }, (err, d) => (err ? reject(err) : resolve(d))),
  ).finally(() => client.close());
}

/** Waits until the tracker counts at least `peers` viewers in the stream's swarm. */
export async function untilPeers(target: string, name: string, peers: number, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const d = await describeStream(target, name).catch(() => undefined);
    if (d && d.peers >= peers) return;
    if (Date.now() > end)
      throw new Error(`${name} on ${target}: ${d?.peers ?? "no"} peers, not ${peers}, in ${timeoutMs} ms`);
    await sleep(50);
  }
}

type MessageKind = NonNullable<TrackerMessage["body"]>["$case"];

/** A viewer's Session call driven by hand, on its own channel (its own TCP connection). */
export interface TestSession {
  /** Resolves with the first message of that kind (kept from the start); rejects when the call ends first. */
  next(kind: MessageKind): Promise<TrackerMessage>;
  send(msg: PeerMessage): void;
  /** The status the call ended with. */
  ended: Promise<{ code: status; details: string }>;
  /** Cancels the call and closes the channel. */
  close(): void;
}

/** Opens a Session to `target` and says Hello as a viewer (data port 1, a fresh session key; `agent` "test" unless given). */
export function openSession(target: string, o: { agent?: string; creds?: ChannelCredentials } = {}): TestSession {
  const creds = o.creds ?? credentials.createInsecure();
  const client = new TrackerClient(target, creds);
  const call = client.session();
  const seen: TrackerMessage[] = [];
  const waiters: Array<() => void> = [];
  let done = false;
  const ended = new Promise<{ code: status; details: string }>((resolve) =>
    call.on("status", (s: { code: status; details: string }) => {
      done = true;
      waiters.splice(0).forEach((w) => w());
      resolve({ code: s.code, details: s.details });
    }),
  );
  call.on("error", () => {});
  call.on("data", (m: TrackerMessage) => {
    seen.push(m);
    waiters.splice(0).forEach((w) => w());
  });
  call.write({
    body: {
      $case: "hello",
      value: {
        role: PeerRole.PEER_ROLE_VIEWER,
        dataPort: 1,
        agent: o.agent ?? "test",
        credential: "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: Signer.generate().publicKey.ed25519,
      },
    },
  });
  return {
    next: (kind) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = seen.find((x) => x.body?.$case === kind);
          if (m) resolve(m);
          else if (done) reject(new Error(`session ended before a ${kind} message`));
          else waiters.push(check);
        };
        check();
      }),
    send: (msg) => {
      if (!done) call.write(msg);
    },
    ended,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}
