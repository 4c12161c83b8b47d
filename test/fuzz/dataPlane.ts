import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import fc from "fast-check";
import {
  chunksPath,
  encodeTicket,
  fetchProof,
  issueTicket,
  PROOF_HEADER,
  Signer,
  TICKET_HEADER,
  type ChunkRange,
  type SignedTicket,
} from "@distribustream/pdtp";
import type { Entry } from "./campaign.js";
import { sampleTarget, type Target } from "./target.js";
import { mutated } from "./wire.js";

/** Longest a request may wait for its answer before it counts as a hang. */
const ANSWER_TIMEOUT_MS = 15_000;

type Num = string;
interface Grant {
  server: "right" | "other";
  stream: "right" | "other";
  /** The ticket's range: the request's, wider, narrower, elsewhere. */
  range: "same" | "wider" | "narrower" | "other";
  expires: "future" | "past" | "far";
  fetcher: "ours" | "none" | "other" | "short";
  signer: "tracker" | "other";
}
type TicketInput =
  { k: "none" } | { k: "valid"; grant: Grant; mutate: boolean; mutations: Buffer } | { k: "text"; value: string };
type ProofInput = { k: "none" } | { k: "valid" } | { k: "other" } | { k: "text"; value: string };

export type DataPlaneInput =
  | {
      kind: "request";
      method: string;
      path:
        | { k: "chunks" | "live"; stream: "right" | string; first: Num; last: Num; query: string }
        | { k: "text"; value: string };
      ticket: TicketInput;
      proof: ProofInput;
      /** Other headers (Range, duplicates, huge, odd names) and an optional body with its framing. */
      headers: Array<[string, string]>;
      body: "none" | "length" | "chunked";
    }
  | { kind: "raw"; bytes: Buffer };

const num: fc.Arbitrary<Num> = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 20 }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "9007199254740991",
      "9007199254740992",
      "18446744073709551615",
      "99999999999999999999999",
      "-1",
      "00",
      "0x1",
      "1e3",
      "",
      " 1",
      "١",
    ),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String) },
);

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/);
const headerValue = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.string({
      maxLength: 60,
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    }),
  },
  fc.string({ maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, " ")),
  fc.constantFrom("bytes=0-0", "bytes=-1", "bytes=0-18446744073709551615", "bytes=5-1,0-0", "chunks=0-1", "bytes=a-b"),
  fc.nat({ max: 20_000 }).map((n) => "v".repeat(n)),
);

/**
 * Data-plane HTTP requests to the real seeder, written byte for byte on a
 * socket: methods, paths (chunk ranges up to 2^64 and beyond, bad stream
 * ids, traversal, huge), tickets (none, random text, tickets signed with the
 * tracker's real key naming the wrong server, stream, range, expiry or
 * fetcher, and the same mutated), proofs, Range and other headers, bodies,
 * and raw bytes that are no HTTP at all. Every answer must come within
 * ANSWER_TIMEOUT_MS, never be 5xx, refuse with a text body, and a 200 must
 * carry exactly the file's bytes of the range and only for a ticket signed
 * by the tracker presented with its fetcher's proof.
 */
export function dataPlaneEntry(t: Target, concurrency = 8): Entry<DataPlaneInput> {
  const src = t.directive.source!;
  const streamId = t.descriptor.streamId;
  const chunkSize = t.descriptor.chunkSize;
  const chunks = t.descriptor.chunkCount;
  const otherKey = Signer.generate();
  const grant = fc.record<Grant>({
    server: fc.constantFrom("right", "right", "right", "other"),
    stream: fc.constantFrom("right", "right", "right", "other"),
    range: fc.constantFrom("same", "same", "same", "wider", "narrower", "other"),
    expires: fc.constantFrom("future", "future", "past", "far"),
    fetcher: fc.constantFrom("ours", "ours", "none", "other", "short"),
    signer: fc.constantFrom("tracker", "tracker", "tracker", "other"),
  });
  const ticket: fc.Arbitrary<TicketInput> = fc.oneof(
    { weight: 1, arbitrary: fc.constant({ k: "none" as const }) },
    {
      weight: 6,
      arbitrary: fc.record({
        k: fc.constant("valid" as const),
        grant,
        mutate: fc.boolean(),
        mutations: mutated(fc.constant(Buffer.alloc(0))),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant("text" as const),
        value: fc.oneof(headerValue, fc.base64String({ maxLength: 400 }), fc.constant("A".repeat(3000))),
      }),
    },
  );
  const proof: fc.Arbitrary<ProofInput> = fc.oneof(
    { weight: 1, arbitrary: fc.constant({ k: "none" as const }) },
    { weight: 6, arbitrary: fc.constant({ k: "valid" as const }) },
    { weight: 1, arbitrary: fc.constant({ k: "other" as const }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("text" as const), value: headerValue }) },
  );
  const path = fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .tuple(
          fc.record({
            k: fc.constantFrom("chunks" as const, "chunks" as const, "live" as const),
            stream: fc.oneof(
              { weight: 5, arbitrary: fc.constant("right") },
              { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{0,140}$/) },
              { weight: 1, arbitrary: fc.constantFrom("..", "%2e%2e", "a/b", "%00", "") },
            ),
            first: num,
            last: num,
            query: fc.constantFrom("", "", "?x=1", "?", "#f"),
          }),
          // half the time a range of the stream, so that requests get past the range checks
          fc.option(
            fc
              .tuple(fc.nat({ max: chunks - 1 }), fc.nat({ max: chunks - 1 }))
              .map(([a, b]) => [String(Math.min(a, b)), String(Math.max(a, b))] as const),
          ),
        )
        .map(([p, r]) => (r ? { ...p, first: r[0], last: r[1] } : p)),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant("text" as const),
        value: fc.oneof(
          fc.constantFrom(
            "/",
            "/healthz",
            "/pdtp/v1/streams/",
            "/pdtp/v1/streams/../../etc/passwd/chunks/0-0",
            "*",
            "http://example.com/pdtp/v1/streams/x/chunks/0-0",
            "/pdtp/v1/streams/%2F/chunks/0-0",
          ),
          fc.webPath(),
          fc.string({ maxLength: 80 }).map((s) => `/${s}`),
          fc.nat({ max: 20_000 }).map((n) => `/${"p".repeat(n)}`),
        ),
      }),
    },
  );
  const request = fc.record({
    kind: fc.constant("request" as const),
    method: fc.oneof(
      { weight: 8, arbitrary: fc.constant("GET") },
      {
        weight: 2,
        arbitrary: fc.constantFrom("HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "get", "PRI"),
      },
      { weight: 1, arbitrary: token },
    ),
    path,
    ticket,
    proof,
    headers: fc.oneof(
      { weight: 3, arbitrary: fc.constant<Array<[string, string]>>([]) },
      {
        weight: 2,
        arbitrary: fc.array(
          fc.oneof(
            fc.tuple(
              fc.constantFrom("range", "Range", "if-range", "accept-encoding", "expect", "connection", "host"),
              headerValue,
            ),
            fc.tuple(fc.constantFrom(TICKET_HEADER, PROOF_HEADER), headerValue),
            fc.tuple(token, headerValue),
          ),
          { minLength: 1, maxLength: 4 },
        ),
      },
    ),
    body: fc.constantFrom("none" as const, "none" as const, "length" as const, "chunked" as const),
  });
  const raw = fc.record({
    kind: fc.constant("raw" as const),
    bytes: fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      mutated(
        fc.constant(Buffer.from(`GET ${chunksPath(streamId, { first: 0, last: 0 })} HTTP/1.1\r\nhost: x\r\n\r\n`)),
      ),
    ),
  });

  /** The request range as numbers, when both ends are plain decimals (what the server would parse). */
  const rangeOf = (p: Extract<DataPlaneInput, { kind: "request" }>["path"]): ChunkRange | undefined => {
    if (p.k === "text") return undefined;
    if (!/^\d{1,16}$/.test(p.first) || !/^\d{1,16}$/.test(p.last)) return undefined;
    return { first: Number(p.first), last: Number(p.last) };
  };

  function build(input: Extract<DataPlaneInput, { kind: "request" }>): {
    bytes: Buffer;
    authorized: boolean;
    range?: ChunkRange;
  } {
    const p = input.path;
    const range = rangeOf(p);
    const target =
      p.k === "text"
        ? p.value
        : `/pdtp/v1/streams/${p.stream === "right" ? streamId : p.stream}/${p.k}/${p.first}-${p.last}${p.query}`;
    const headers: Array<[string, string]> = [["host", `${src.host}:${src.port}`]];
    let signed: SignedTicket | undefined;
    let authorized = false;
    const tk = input.ticket;
    if (tk.k === "valid") {
      const g = tk.grant;
      const r = range ?? { first: 0, last: 0 };
      const tr =
        g.range === "same"
          ? r
          : g.range === "wider"
            ? // no further than 2^53 - 1: a range past it does not decode, and the tracker signs no such ticket
              { first: Math.max(0, r.first - 1), last: Math.min(r.last + 1, Number.MAX_SAFE_INTEGER) }
            : g.range === "narrower"
              ? { first: r.first + 1, last: r.last }
              : { first: r.last + 1, last: r.last + 5 };
      signed = issueTicket(
        {
          // another stream: its id with the last character changed (to "A" it was the same id one run in 64)
          streamId: g.stream === "right" ? streamId : `${streamId.slice(0, -1)}${streamId.endsWith("A") ? "B" : "A"}`,
          range: tr,
          fetcherId: "fuzz",
          serverId: g.server === "right" ? src.peerId : "someone-else",
          expiresMs:
            g.expires === "future"
              ? Date.now() + 60_000
              : g.expires === "past"
                ? Date.now() - 1
                : Number.MAX_SAFE_INTEGER,
          ...(g.fetcher === "none"
            ? {}
            : {
                fetcherKey:
                  g.fetcher === "ours"
                    ? t.peerKey.publicKey.ed25519
                    : g.fetcher === "other"
                      ? otherKey.publicKey.ed25519
                      : randomBytes(5),
              }),
        },
        g.signer === "tracker" ? t.ticketKey : otherKey,
      );
      let text = encodeTicket(signed);
      if (tk.mutate && tk.mutations.length > 0) {
        const chars = Buffer.from(text);
        for (let i = 0; i < tk.mutations.length; i++)
          chars[(tk.mutations[i]! * 7 + i) % chars.length] = "-_Aa0"[tk.mutations[i]! % 5]!.charCodeAt(0);
        const changed = chars.toString();
        // the last base64 character has spare bits: a change there may leave the same ticket
        if (!Buffer.from(changed, "base64url").equals(Buffer.from(text, "base64url"))) signed = undefined;
        text = changed;
      }
      headers.push([TICKET_HEADER, text]);
      // only this says the bytes may be served: the tracker's ticket, unaltered, with the fetcher's proof
      authorized =
        signed !== undefined &&
        range !== undefined &&
        g.signer === "tracker" &&
        g.server === "right" &&
        g.stream === "right" &&
        g.expires !== "past" &&
        (g.range === "same" || g.range === "wider") &&
        // the proof must come from the key the ticket names: ours ("valid") or the other one ("other")
        (g.fetcher === "none" ||
          (g.fetcher === "ours" && input.proof.k === "valid") ||
          (g.fetcher === "other" && input.proof.k === "other"));
    } else if (tk.k === "text") headers.push([TICKET_HEADER, tk.value]);
    const pr = input.proof;
    if (pr.k === "valid" && signed && range) headers.push([PROOF_HEADER, fetchProof(signed, range, t.peerKey)]);
    else if (pr.k === "other" && signed && range) headers.push([PROOF_HEADER, fetchProof(signed, range, otherKey)]);
    else if (pr.k === "text") headers.push([PROOF_HEADER, pr.value]);
    // the fuzzer's own headers may repeat the ticket or proof: then it is no longer the request above
    const extra = new Set(input.headers.map(([k]) => k.toLowerCase()));
    if (extra.has(TICKET_HEADER) || (extra.has(PROOF_HEADER) && tk.k === "valid" && tk.grant.fetcher !== "none"))
      authorized = false;
    headers.push(...input.headers);
    let body = Buffer.alloc(0);
    if (input.body === "length") {
      body = Buffer.from("some body");
      headers.push(["content-length", String(body.length)]);
    } else if (input.body === "chunked") {
      body = Buffer.from("4\r\nbody\r\n0\r\n\r\n");
      headers.push(["transfer-encoding", "chunked"]);
    }
    headers.push(["connection", "close"]);
    const head = `${input.method} ${target} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
    return {
      bytes: Buffer.concat([Buffer.from(head, "latin1"), body]),
      authorized: authorized && input.method === "GET" && p.k === "chunks" && p.stream === "right",
      ...(range ? { range } : {}),
    };
  }

  /** Each input's request bytes as sent, for the report of a failing one. */
  const sent = new WeakMap<object, { bytes: Buffer; atMs: number }>();
  return {
    name: "data-plane",
    arbitrary: fc.oneof({ weight: 9, arbitrary: request }, { weight: 1, arbitrary: raw }),
    concurrency,
    async run(input) {
      if (input.kind === "raw") {
        const res = await exchange(src.host, src.port, input.bytes, true);
        if (!res) return "raw: closed without an answer";
        checkRefusal(res, "raw bytes");
        return `raw ${res.status}`;
      }
      const req = build(input);
      sent.set(input, { bytes: req.bytes, atMs: Date.now() });
      const res = await exchange(src.host, src.port, req.bytes);
      if (!res) throw new Error("a complete HTTP request got no answer (connection closed)");
      if (
        res.status === 200 &&
        input.method === "GET" &&
        input.path.k === "text" &&
        /^\/healthz(\?|$)/.test(input.path.value)
      )
        return "200 healthz";
      if (res.status === 200) {
        if (!req.authorized) throw new Error(`200 for a request without a valid ticket and proof`);
        const r = req.range!;
        const start = r.first * chunkSize;
        const expected = t.file.subarray(start, Math.min(t.file.length, (r.last + 1) * chunkSize));
        if (!res.body.equals(expected))
          throw new Error(
            `200 with ${res.body.length} bytes that are not the file's ${expected.length} bytes of ${r.first}-${r.last}`,
          );
        return "200";
      }
      checkRefusal(res, `${input.method} ${input.path.k}`, input.method === "HEAD");
      if (req.authorized && res.status === 403)
        throw new Error(`403 for a valid ticket and proof: ${res.body.toString()}`);
      return `${res.status}`;
    },
    memory: () => sampleTarget(t, 0),
    // the request as it was sent (a new build would carry another time and nonce)
    describe: (input) =>
      input.kind === "raw"
        ? { raw: input.bytes.toString("hex") }
        : {
            request: (sent.get(input)?.bytes ?? build(input).bytes).toString("latin1").slice(0, 1500),
            sentAtMs: sent.get(input)?.atMs,
            ticket: input.ticket,
            proof: input.proof.k,
            path: input.path,
          },
  };
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A refusal must be a 4xx with a short text body saying why (an answer to HEAD has no body). */
function checkRefusal(res: Answer, what: string, head = false): void {
  if (res.status >= 500 || res.status < 400)
    throw new Error(`${what}: HTTP ${res.status}: ${res.body.toString().slice(0, 200)}`);
  const type = res.headers["content-type"] ?? "";
  if (!/^(text\/plain|application\/json)/.test(type) || (!head && !/[a-z]{3}/i.test(res.body.toString())))
    throw new Error(
      `${what}: HTTP ${res.status} without a text error (content-type "${type}", body ${JSON.stringify(res.body.toString().slice(0, 100))})`,
    );
}

/**
 * Writes `bytes` and reads the answer up to the end of the connection
 * (bounded in time and size). A request says "connection: close"; raw bytes
 * are followed by a half-close, since they may be an unfinished request.
 */
function exchange(host: string, port: number, bytes: Buffer, halfClose = false): Promise<Answer | undefined> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    const parts: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete answer within ${ANSWER_TIMEOUT_MS} ms`));
    }, ANSWER_TIMEOUT_MS);
    s.on("data", (d: Buffer) => {
      size += d.length;
      if (size > 64 * 1024 * 1024) s.destroy(new Error("answer over 64 MiB"));
      parts.push(d);
    });
    s.on("error", (err: NodeJS.ErrnoException) => {
      // a reset after the answer (the server closed on unread bytes) still leaves the answer
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE") {
        clearTimeout(timer);
        reject(err);
      }
    });
    s.on("close", () => {
      clearTimeout(timer);
      const all = Buffer.concat(parts);
      if (all.length === 0) return resolve(undefined);
      const end = all.indexOf("\r\n\r\n");
      const head = all.subarray(0, end < 0 ? all.length : end).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) return reject(new Error(`not an HTTP answer: ${JSON.stringify(head.slice(0, 100))}`));
      const headers: Record<string, string> = {};
      for (const line of head.split("\r\n").slice(1)) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(m[1]), headers, body: end < 0 ? Buffer.alloc(0) : all.subarray(end + 4) });
    });
    if (halfClose) s.end(bytes);
    else s.write(bytes);
  });
}
