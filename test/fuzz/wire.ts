import fc from "fast-check";

/**
 * Protobuf at the wire level, for fuzzing: a field is written with any wire
 * type and any 64-bit value (BigInt varints), so that the generators can say
 * what generated code cannot — uint64 values near 2^64, a string field sent
 * as a varint, an overlong varint, a length that runs past the message.
 */

export type Scalar = "varint" | "u32" | "u64" | "enum" | "bool" | "string" | "bytes";
export interface FieldSpec {
  n: number;
  t: Scalar | "msg";
  msg?: string;
  repeated?: boolean;
}

/** PDTP v1 peer -> tracker messages (proto/pdtp/v1/tracker.proto), by field number. */
export const SCHEMA: Record<string, FieldSpec[]> = {
  ChunkRange: [
    { n: 1, t: "u64" },
    { n: 2, t: "u64" },
  ],
  Hello: [
    { n: 1, t: "enum" },
    { n: 2, t: "u32" },
    { n: 3, t: "string" },
    { n: 4, t: "string" },
    { n: 5, t: "string" },
    { n: 6, t: "bytes" },
  ],
  Join: [
    { n: 1, t: "string" },
    { n: 2, t: "enum" },
    { n: 3, t: "msg", msg: "ChunkRange", repeated: true },
    { n: 4, t: "u64" },
  ],
  Leave: [{ n: 1, t: "string" }],
  Have: [
    { n: 1, t: "string" },
    { n: 2, t: "msg", msg: "ChunkRange", repeated: true },
  ],
  TransferReport: [
    { n: 1, t: "u64" },
    { n: 2, t: "enum" },
    { n: 3, t: "u64" },
    { n: 4, t: "u32" },
    { n: 5, t: "string" },
    { n: 6, t: "msg", msg: "ChunkRange", repeated: true },
    { n: 7, t: "u32" },
  ],
  TransferReports: [{ n: 1, t: "msg", msg: "TransferReport", repeated: true }],
  MapEntry: [
    { n: 1, t: "string" },
    { n: 2, t: "u32" },
  ],
  LivePlayback: [
    { n: 1, t: "u32", repeated: true },
    { n: 2, t: "u32" },
    { n: 3, t: "msg", msg: "MapEntry", repeated: true },
  ],
  Position: [
    { n: 1, t: "string" },
    { n: 2, t: "u64" },
    { n: 3, t: "msg", msg: "LivePlayback" },
  ],
  LivePublish: [
    { n: 1, t: "u32" },
    { n: 2, t: "u32" },
    { n: 3, t: "u64" },
    { n: 4, t: "u32" },
    { n: 5, t: "u64" },
  ],
  Publish: [
    { n: 1, t: "string" },
    { n: 2, t: "u64" },
    { n: 3, t: "u64" },
    { n: 4, t: "string" },
    { n: 5, t: "string" },
    { n: 6, t: "string" },
    { n: 7, t: "msg", msg: "LivePublish" },
  ],
  Unpublish: [{ n: 1, t: "string" }],
  LiveChunkClaim: [
    { n: 1, t: "u64" },
    { n: 2, t: "u32" },
    { n: 3, t: "u64" },
    { n: 4, t: "bool" },
  ],
  LiveChunks: [
    { n: 1, t: "string" },
    { n: 2, t: "msg", msg: "LiveChunkClaim", repeated: true },
  ],
  DescribeStreamRequest: [
    { n: 1, t: "string" },
    { n: 2, t: "string" },
  ],
  GetHashPiecesRequest: [
    { n: 1, t: "string" },
    { n: 2, t: "u64" },
    { n: 3, t: "u32" },
  ],
};

/** PeerMessage's oneof: field number -> message. */
export const PEER_MESSAGE_BODIES: Array<[number, string]> = [
  [1, "Hello"],
  [2, "Join"],
  [3, "Leave"],
  [4, "Have"],
  [5, "TransferReports"],
  [6, "Position"],
  [7, "Publish"],
  [8, "Unpublish"],
  [9, "LiveChunks"],
];

// ---- encoding ----------------------------------------------------------------

const U64 = (1n << 64n) - 1n;

export function varint(v: bigint): Buffer {
  let x = v & U64;
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return Buffer.from(out);
}

/** A field as it goes on the wire: its number, wire type and payload. */
export type WireField =
  | { n: number; wt: 0; v: bigint; overlong?: number }
  | { n: number; wt: 1; v: bigint }
  | { n: number; wt: 5; v: number }
  | { n: number; wt: 2; bytes: Buffer; lengthDelta?: number };

export function encodeFields(fields: readonly WireField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(varint((BigInt(f.n) << 3n) | BigInt(f.wt)));
    switch (f.wt) {
      case 0: {
        const v = varint(f.v);
        if (!f.overlong) parts.push(v);
        else {
          // the same value padded with continuation bytes: 11+ bytes is no valid varint
          const padded = Buffer.concat([v, Buffer.alloc(f.overlong)]);
          for (let i = 0; i < padded.length - 1; i++) padded[i]! |= 0x80;
          parts.push(padded);
        }
        break;
      }
      case 1: {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(f.v & U64);
        parts.push(b);
        break;
      }
      case 5: {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(f.v >>> 0);
        parts.push(b);
        break;
      }
      case 2:
        parts.push(varint(BigInt(Math.max(0, f.bytes.length + (f.lengthDelta ?? 0)))), f.bytes);
        break;
    }
  }
  return Buffer.concat(parts);
}

// ---- absurd values -------------------------------------------------------------

/** 64-bit values a field can carry, biased to the edges: 0, 2^31, 2^32, 2^53, 2^63, 2^64 - 1 and neighbours. */
export const u64Value = (): fc.Arbitrary<bigint> =>
  fc.oneof(
    fc.constantFrom(
      0n,
      1n,
      2n,
      (1n << 31n) - 1n,
      1n << 31n,
      (1n << 32n) - 1n,
      1n << 32n,
      (1n << 53n) - 2n,
      (1n << 53n) - 1n,
      1n << 53n,
      (1n << 53n) + 1n,
      (1n << 63n) - 1n,
      1n << 63n,
      U64 - 1n,
      U64,
    ),
    fc.bigInt({ min: 0n, max: 4096n }),
    fc.bigInt({ min: 0n, max: U64 }),
  );

/** Strings: empty, short, the stream's own names and ids, separators, unicode, lone surrogates, huge. */
export function stringValue(known: readonly string[], huge = true): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("", ...known) },
    { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    {
      weight: 2,
      arbitrary: fc.constantFrom("..", "../../etc/passwd", "a/../b", "/", "a//b", "\0", "\\", "%00", "x".repeat(1025)),
    },
    { weight: 1, arbitrary: fc.nat({ max: huge ? 70_000 : 300 }).map((n) => "s".repeat(n)) },
    { weight: 1, arbitrary: fc.constantFrom("\ud800", "\udfff", "\u202e", "🎥".repeat(300)) },
  );
}

export const bytesValue = (huge = true): fc.Arbitrary<Buffer> =>
  fc.oneof(
    fc.constantFrom(Buffer.alloc(0), Buffer.alloc(32), Buffer.alloc(31, 1), Buffer.alloc(33, 2)),
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.nat({ max: huge ? 70_000 : 300 }).map((n) => Buffer.alloc(n, 0xab)),
  );

// ---- structured messages ------------------------------------------------------

export interface Ctx {
  /** Names, stream ids and other strings of the target worth using as values. */
  known: readonly string[];
}

const wrongWireType = (n: number, ctx: Ctx, huge = true): fc.Arbitrary<WireField> =>
  fc.oneof(
    u64Value().map((v): WireField => ({ n, wt: 0, v })),
    u64Value().map((v): WireField => ({ n, wt: 1, v })),
    fc.nat().map((v): WireField => ({ n, wt: 5, v })),
    stringValue(ctx.known, huge).map((s): WireField => ({ n, wt: 2, bytes: Buffer.from(s) })),
  );

/** A field of its own type with an absurd value (values up to 70 KB only outside repeated nested messages). */
function scalarField(spec: FieldSpec, ctx: Ctx, huge: boolean): fc.Arbitrary<WireField> {
  const n = spec.n;
  switch (spec.t) {
    case "varint":
    case "u64":
      return u64Value().map((v): WireField => ({ n, wt: 0, v }));
    case "u32":
      return fc
        .oneof(fc.constantFrom(0n, 1n, 65535n, 65536n, 4294967295n, 4294967296n, U64), u64Value())
        .map((v): WireField => ({ n, wt: 0, v }));
    case "enum":
      // known values, unknown ones, negative (10-byte varint)
      return fc
        .oneof(fc.bigInt({ min: 0n, max: 7n }), fc.constantFrom(2147483647n, U64, U64 - 1n), u64Value())
        .map((v): WireField => ({ n, wt: 0, v }));
    case "bool":
      return fc.oneof(fc.constantFrom(0n, 1n, 2n, U64), u64Value()).map((v): WireField => ({ n, wt: 0, v }));
    case "string":
      return stringValue(ctx.known, huge).map((s): WireField => ({ n, wt: 2, bytes: Buffer.from(s) }));
    case "bytes":
      return bytesValue(huge).map((bytes): WireField => ({ n, wt: 2, bytes }));
    default:
      throw new Error(spec.t);
  }
}

/** A message of `type`: each field absent, once, repeated (up to thousands), of the wrong wire type, plus unknown fields. */
export function message(type: string, ctx: Ctx, depth = 0): fc.Arbitrary<Buffer> {
  const specs = SCHEMA[type];
  if (!specs) throw new Error(`no schema for ${type}`);
  const fieldArb = (spec: FieldSpec): fc.Arbitrary<WireField[]> => {
    // values up to 70 KB only once in the outer message
    const element = (huge: boolean): fc.Arbitrary<WireField> =>
      spec.t === "msg"
        ? depth > 3
          ? fc.constant<WireField>({ n: spec.n, wt: 2, bytes: Buffer.alloc(0) })
          : message(spec.msg!, ctx, depth + 1).map((bytes): WireField => ({ n: spec.n, wt: 2, bytes }))
        : scalarField(spec, ctx, huge);
    // thousands of elements only of a small one (a range, a number), and only in the outer message (257
    // reports of 20,000 ranges each would be gigabytes): a message stays under ~25 MB
    const small = (spec.t !== "msg" && spec.t !== "string" && spec.t !== "bytes") || spec.msg === "ChunkRange";
    const many =
      depth > 0 ? fc.constantFrom(5, 8) : small ? fc.constantFrom(4096, 4097, 20_000) : fc.constantFrom(64, 65, 257);
    const count = spec.repeated
      ? fc.oneof({ weight: 6, arbitrary: fc.nat({ max: 4 }) }, { weight: 1, arbitrary: many })
      : fc.oneof({ weight: 8, arbitrary: fc.nat({ max: 1 }) }, { weight: 1, arbitrary: fc.constant(2) });
    return fc.oneof(
      {
        weight: 12,
        arbitrary: count.chain((k) => {
          const one = element(depth === 0 && k <= 1);
          return k > 64 ? one.map((f) => Array<WireField>(k).fill(f)) : fc.array(one, { minLength: k, maxLength: k });
        }),
      },
      { weight: 1, arbitrary: wrongWireType(spec.n, ctx, depth === 0).map((f) => [f]) },
    );
  };
  const unknown = fc.array(
    fc.nat({ max: 536_870_911 }).chain((n) => wrongWireType(Math.max(1, n), ctx, depth === 0)),
    { maxLength: 2 },
  );
  return fc
    .tuple(
      fc.tuple(...specs.map(fieldArb)),
      fc.oneof({ weight: 9, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: unknown }),
    )
    .map(([fields, extra]) => encodeFields([...fields.flat(), ...extra]));
}

/** A PeerMessage with one body of any kind (or none, or two). */
export function peerMessage(ctx: Ctx): fc.Arbitrary<Buffer> {
  const body = fc
    .constantFrom(...PEER_MESSAGE_BODIES)
    .chain(([n, type]) => message(type, ctx).map((bytes): WireField => ({ n, wt: 2, bytes })));
  return fc.oneof(
    { weight: 12, arbitrary: body.map((f) => encodeFields([f])) },
    { weight: 1, arbitrary: fc.tuple(body, body).map((fs) => encodeFields(fs)) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(...PEER_MESSAGE_BODIES.map(([n]) => n), 10, 99),
          fc.integer({ min: -8, max: 8 }),
          bytesValue(),
        )
        .map(([n, lengthDelta, bytes]) => encodeFields([{ n, wt: 2, bytes, lengthDelta }])),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(1, 2, 6), u64Value(), fc.integer({ min: 1, max: 6 }))
        .map(([n, v, overlong]) => encodeFields([{ n, wt: 0, v, overlong }])),
    },
  );
}

// ---- byte-level mutation ---------------------------------------------------------

type Mutation =
  | { k: "flip"; at: number; bit: number }
  | { k: "set"; at: number; byte: number }
  | { k: "insert"; at: number; bytes: Uint8Array }
  | { k: "delete"; at: number; len: number }
  | { k: "truncate"; at: number }
  | { k: "duplicate"; at: number; len: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ k: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({
    k: fc.constant("set" as const),
    at: fc.nat(),
    byte: fc.constantFrom(0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x08),
  }),
  fc.record({ k: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
  fc.record({ k: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ k: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ k: fc.constant("duplicate" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 32 }) }),
);

export function mutate(input: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of ms) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1);
    switch (m.k) {
      case "flip":
        if (b.length) b[at % b.length]! ^= 1 << m.bit;
        break;
      case "set":
        if (b.length) b[at % b.length] = m.byte;
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case "delete":
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
        break;
      case "truncate":
        b = b.subarray(0, at);
        break;
      case "duplicate":
        b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at)]);
        break;
    }
  }
  return b;
}

/** `base` with 1 to 6 byte-level mutations (bit flips, inserted, deleted, repeated bytes, truncation). */
export const mutated = (base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
  fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 6 })).map(([b, ms]) => mutate(b, ms));
