import { randomBytes } from "node:crypto";
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
  type StatusObject,
} from "@grpc/grpc-js";
import fc from "fast-check";
import { PeerMessage, PeerRole, TrackerMessage, TrackerService, TransferOutcome, WantMode } from "@distribustream/pdtp";
import type { Entry } from "./campaign.js";
import { sampleTarget, type Target } from "./target.js";
import { message, mutated, peerMessage, type Ctx } from "./wire.js";

/** Longest a session or a call may take to be answered before it counts as a hang. */
const ANSWER_TIMEOUT_MS = 15_000;

/** Statuses that refuse bad input clearly; INTERNAL, UNKNOWN, UNAVAILABLE and the rest are defects here. */
const REFUSALS = new Set([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.OUT_OF_RANGE,
  status.ALREADY_EXISTS,
]);

type Prelude = "none" | "viewer" | "viewer+join" | "seeder";

export type PdtpInput =
  | { kind: "session"; prelude: Prelude; dataPort: number; frames: Buffer[] }
  | { kind: "unary"; method: "describeStream" | "getHashPieces" | "listStreams"; bytes: Buffer };

/** Raw clients: requests are the fuzzer's bytes, answers decode as a real peer decodes them. */
const RawTracker = makeGenericClientConstructor(
  {
    session: { ...TrackerService.session, requestSerialize: (b: Buffer) => b },
    describeStream: { ...TrackerService.describeStream, requestSerialize: (b: Buffer) => b },
    getHashPieces: { ...TrackerService.getHashPieces, requestSerialize: (b: Buffer) => b },
    listStreams: { ...TrackerService.listStreams, requestSerialize: (b: Buffer) => b },
  },
  "pdtp.v1.Tracker",
);
type Raw = Client & {
  session(md: Metadata): ClientDuplexStream<Buffer, TrackerMessage>;
  [unary: string]: unknown;
};

const enc = (m: PeerMessage) => Buffer.from(PeerMessage.encode(m).finish());

/**
 * PDTP messages to the real tracker: Session calls (after no Hello, a valid
 * viewer Hello, a viewer Hello and a Join of the real stream, or a seeder
 * Hello with a made-up credential) carrying 1 to 6 frames — structurally
 * valid messages with absurd values (wire-level: wrong wire types, unknown
 * fields and bodies, uint64 near 2^64, counts up to 20,000, strings up to
 * 70 KB), the same mutated byte by byte, mutated valid messages and random
 * bytes — then a half-close; and the unary calls with such requests. Every
 * call must end with OK or a refusal status whose message says what was
 * wrong, within ANSWER_TIMEOUT_MS, and every answer must decode.
 */
export function pdtpEntry(t: Target, concurrency = 8): Entry<PdtpInput> {
  const streamId = t.descriptor.streamId;
  const chunks = t.descriptor.chunkCount;
  const ctx: Ctx = { known: [t.name, streamId, `${t.name}x`, "demo-live", streamId.slice(1)] };
  const valid: Buffer[] = [
    enc({ body: { $case: "join", value: { name: t.name, mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } } }),
    enc({ body: { $case: "have", value: { streamId, ranges: [{ first: 0, last: chunks - 1 }] } } }),
    enc({ body: { $case: "position", value: { streamId, nextChunk: 3, live: undefined } } }),
    enc({ body: { $case: "leave", value: { streamId } } }),
    enc({
      body: {
        $case: "reports",
        value: {
          reports: [
            {
              transferId: 1,
              outcome: TransferOutcome.TRANSFER_OUTCOME_BAD_DATA,
              bytes: 10,
              durationMs: 5,
              detail: "x",
              verified: [{ first: 0, last: 1 }],
              httpStatus: 416,
            },
          ],
        },
      },
    }),
    enc({ body: { $case: "publish", value: { name: "p.bin", size: 1000, version: 1, live: undefined } } }),
  ];
  const frame = fc.oneof(
    { weight: 6, arbitrary: peerMessage(ctx) },
    { weight: 3, arbitrary: mutated(peerMessage(ctx)) },
    { weight: 3, arbitrary: mutated(fc.constantFrom(...valid)) },
    { weight: 2, arbitrary: fc.constantFrom(...valid) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)) },
  );
  const session = fc.record({
    kind: fc.constant("session" as const),
    prelude: fc.constantFrom<Prelude>("none", "viewer", "viewer+join", "viewer+join", "seeder"),
    dataPort: fc.constantFrom(0, 0, 1, 65535),
    frames: fc.array(frame, { minLength: 1, maxLength: 6 }),
  });
  const unaryBytes = (type: string) =>
    fc.oneof(
      message(type, ctx),
      mutated(message(type, ctx)),
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    );
  const unary = fc.oneof(
    fc.record({
      kind: fc.constant("unary" as const),
      method: fc.constant("describeStream" as const),
      bytes: unaryBytes("DescribeStreamRequest"),
    }),
    fc.record({
      kind: fc.constant("unary" as const),
      method: fc.constant("getHashPieces" as const),
      bytes: unaryBytes("GetHashPiecesRequest"),
    }),
    fc.record({
      kind: fc.constant("unary" as const),
      method: fc.constant("listStreams" as const),
      bytes: fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)),
    }),
  );
  const clients: Raw[] = [];
  let next = 0;
  const client = () => {
    // a few HTTP/2 connections, shared by the workers' calls
    const i = next++ % concurrency;
    clients[i] ??= new RawTracker(t.target, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "fuzz.connection": i,
    }) as unknown as Raw;
    return clients[i]!;
  };

  return {
    name: "pdtp",
    arbitrary: fc.oneof({ weight: 5, arbitrary: session }, { weight: 1, arbitrary: unary }),
    concurrency,
    run: (input) => (input.kind === "session" ? runSession(client(), input, t) : runUnary(client(), input)),
    memory: async () => {
      const s = await sampleTarget(t, 0);
      return { rssBytes: s.rssBytes, heapUsedBytes: s.heapUsedBytes };
    },
    describe: (input) =>
      input.kind === "session"
        ? { ...input, frames: input.frames.map((f) => f.toString("hex").slice(0, 400)) }
        : { ...input, bytes: input.bytes.toString("hex").slice(0, 400) },
  };
}

function prelude(p: Prelude, dataPort: number, t: Target): Buffer[] {
  if (p === "none") return [];
  const role = p === "seeder" ? PeerRole.PEER_ROLE_SEEDER : PeerRole.PEER_ROLE_VIEWER;
  const hello = enc({
    body: {
      $case: "hello",
      value: {
        role,
        dataPort: p === "seeder" ? dataPort || 1 : dataPort,
        agent: "fuzz/0",
        credential: p === "seeder" ? `dss_${randomBytes(4).toString("hex")}_${randomBytes(16).toString("hex")}` : "",
        advertiseHost: "",
        advertisePort: 0,
        internalHost: "",
        internalPort: 0,
        peerKey: randomBytes(32),
      },
    },
  });
  if (p !== "viewer+join") return [hello];
  const join = enc({
    body: { $case: "join", value: { name: t.name, mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } },
  });
  return [hello, join];
}

/** A clear refusal: a refusal status, with a message that says something and leaks no internals. */
function checkStatus(s: { code: number; details: string }, what: string): string {
  if (s.code === status.OK) return `${what} OK`;
  const name = status[s.code] ?? String(s.code);
  if (!REFUSALS.has(s.code)) throw new Error(`${what} ended with ${name}: ${s.details}`);
  if (!/[a-z]{3}/i.test(s.details) || s.details.length > 1024)
    throw new Error(`${what} ended with ${name} and an unclear message: ${JSON.stringify(s.details.slice(0, 200))}`);
  if (/error id|Error:|at .*\.js:\d+/.test(s.details))
    throw new Error(`${what} ended with ${name} and an internal message: ${s.details.slice(0, 300)}`);
  return `${what} ${name}`;
}

function runSession(c: Raw, input: Extract<PdtpInput, { kind: "session" }>, t: Target): Promise<string> {
  const call = c.session(new Metadata());
  let received = 0;
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      call.cancel();
      reject(
        new Error(`session not ended within ${ANSWER_TIMEOUT_MS} ms of its half-close (${received} messages received)`),
      );
    }, ANSWER_TIMEOUT_MS);
    call.on("data", () => received++);
    call.on("error", () => {}); // the status below says it all
    call.on("status", (s: StatusObject) => {
      clearTimeout(timer);
      try {
        resolve(checkStatus(s, "session"));
      } catch (err) {
        reject(err as Error);
      }
    });
    for (const f of [...prelude(input.prelude, input.dataPort, t), ...input.frames]) call.write(f);
    call.end();
  });
}

function runUnary(c: Raw, input: Extract<PdtpInput, { kind: "unary" }>): Promise<string> {
  const fn = c[input.method] as (
    req: Buffer,
    md: Metadata,
    opts: { deadline: number },
    cb: (err: ServiceError | null) => void,
  ) => void;
  return new Promise<string>((resolve, reject) => {
    fn.call(c, input.bytes, new Metadata(), { deadline: Date.now() + ANSWER_TIMEOUT_MS }, (err) => {
      try {
        resolve(
          checkStatus(err ? { code: err.code, details: err.details } : { code: status.OK, details: "" }, input.method),
        );
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
