import fc from "fast-check";
import {
  KEY_FINGERPRINT,
  parsePdtpUrl,
  parseTrackerAddress,
  PdtpUrlError,
  streamNameProblem,
} from "@distribustream/pdtp";
import { ownMemory, type Entry } from "./campaign.js";
import { mutated } from "./wire.js";

export interface UrlInput {
  /** What the user typed (dsclient's argument, a seeder's --tracker). */
  text: string;
  /** Set when `text` was built from parts that make a valid URL: what it must parse to. */
  expect?: { host: string; port: number; name: string; tls: boolean; networkKey?: string };
  tracker: boolean;
}

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join("."));
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
const validHost = fc.oneof(domain, ipv4, fc.constantFrom("[::1]", "[2001:db8::7]", "localhost"));
const segment = fc
  .string({ minLength: 1, maxLength: 12, unit: "grapheme" })
  .filter((s) => s !== "." && s !== ".." && !/[\0\\]/.test(s) && !s.includes("/"));
const hex32 = fc.stringMatching(/^[0-9a-f]{32}$/);

/** A URL built from valid parts, with what it must parse to. */
const validUrl: fc.Arbitrary<UrlInput> = fc
  .record({
    tls: fc.boolean(),
    host: validHost,
    port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    segments: fc.array(segment, { minLength: 1, maxLength: 4 }),
    key: fc.option(hex32, { nil: undefined }),
  })
  .map((p) => {
    const name = p.segments.join("/");
    const text = `${p.tls ? "pdtps" : "pdtp"}://${p.host}${p.port === undefined ? "" : `:${p.port}`}/${p.segments
      .map(encodeURIComponent)
      .join("/")}${p.key ? `?key=${p.key}` : ""}`;
    const host = p.host.toLowerCase();
    return {
      text,
      tracker: false,
      expect: { host, port: p.port ?? 6086, name, tls: p.tls, ...(p.key ? { networkKey: p.key } : {}) },
    };
  })
  .filter((u) => Buffer.byteLength(u.expect.name) <= 1024);

const odd = fc.oneof(
  fc.constantFrom(
    "",
    "pdtp://",
    "pdtp:///x",
    "pdtp://h",
    "pdtp://h/",
    "pdtp://h:0/x",
    "pdtp://h:65536/x",
    "pdtp://h:99999999999/x",
    "pdtp://h:-1/x",
    "pdtp://h:abc/x",
    "pdtp://u:p@h/x",
    "pdtp://h/x#frag",
    "pdtp://h/x?key=",
    "pdtp://h/x?key=ZZ",
    "pdtp://h/x?key=00000000000000000000000000000000&key=00000000000000000000000000000000",
    "pdtp://h/a/../b",
    "pdtp://h/%2e%2e/x",
    "pdtp://h/a%2Fb",
    "pdtp://h/%00",
    "pdtp://h/%E0%A4%A",
    "pdtp://h//x",
    "pdtp://[::1/x",
    "pdtp://[zz::1]/x",
    "pdtp://h\u0000/x",
    "pdtp://ｈ/x",
    "PDTP://H/X",
    "pdtps:h/x",
    "pdtp:/h/x",
    "http://h/x",
    "javascript:alert(1)",
    "h:6086",
    "h:0",
    "pdtps://h:1",
    "[::1]:6086",
  ),
  fc.string({ maxLength: 80 }),
  fc.webUrl({ withQueryParameters: true, withFragments: true }).map((u) => u.replace(/^https?/, "pdtp")),
  fc.nat({ max: 5000 }).map((n) => `pdtp://h/${"n".repeat(n)}`),
);

/**
 * pdtp:// URLs (dsclient's argument) and tracker addresses (a seeder's
 * --tracker), parsed in process: valid URLs built from parts must parse to
 * exactly those parts; anything else must either parse to something usable
 * (a stream name that is valid, a port from 1 to 65535, a target that
 * round-trips) or throw PdtpUrlError saying what is wrong — never another
 * error.
 */
export function urlEntry(): Entry<UrlInput> {
  const text = fc.oneof(
    odd,
    mutated(validUrl.map((u) => Buffer.from(u.text))).map((b) => b.toString("utf8")),
  );
  return {
    name: "url",
    arbitrary: fc.oneof(
      { weight: 3, arbitrary: validUrl },
      { weight: 4, arbitrary: text.map((t) => ({ text: t, tracker: false })) },
      { weight: 2, arbitrary: text.map((t) => ({ text: t.replace(/^pdtps?:\/\/([^/]*).*$/s, "$1"), tracker: true })) },
    ),
    concurrency: 1,
    run: async (input) => (input.tracker ? trackerAddress(input.text) : pdtpUrl(input)),
    memory: async () => ownMemory(),
  };
}

function refused(err: unknown, input: string): string {
  if (!(err instanceof PdtpUrlError))
    throw new Error(`"${input.slice(0, 200)}" threw ${String(err)}, not a PdtpUrlError`);
  if (!/[a-z]{3}/i.test(err.message)) throw new Error(`unclear message for "${input.slice(0, 200)}": ${err.message}`);
  return "refused";
}

function pdtpUrl(input: UrlInput): string {
  let u;
  try {
    u = parsePdtpUrl(input.text);
  } catch (err) {
    if (input.expect) throw new Error(`a valid URL "${input.text}" was refused: ${(err as Error).message}`);
    return refused(err, input.text);
  }
  const where = `"${input.text.slice(0, 200)}" parsed to ${JSON.stringify(u)}`;
  if (streamNameProblem(u.name)) throw new Error(`${where}: an invalid stream name`);
  if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535)
    throw new Error(`${where}: port ${u.port} is no TCP port`);
  if (u.target !== `${u.host}:${u.port}`) throw new Error(`${where}: target is not host:port`);
  if (u.networkKey !== undefined && !KEY_FINGERPRINT.test(u.networkKey)) throw new Error(`${where}: a bad key`);
  const e = input.expect;
  if (
    e &&
    (e.host !== u.host || e.port !== u.port || e.name !== u.name || e.tls !== u.tls || e.networkKey !== u.networkKey)
  )
    throw new Error(`${where}, expected ${JSON.stringify(e)}`);
  // what it parsed to, written back as a URL, parses to the same
  const again = parsePdtpUrl(
    `${u.tls ? "pdtps" : "pdtp"}://${u.host}:${u.port}/${u.name.split("/").map(encodeURIComponent).join("/")}${
      u.networkKey ? `?key=${u.networkKey}` : ""
    }`,
  );
  if (JSON.stringify(again) !== JSON.stringify(u))
    throw new Error(`${where}, but written back it parses to ${JSON.stringify(again)}`);
  return "parsed";
}

function trackerAddress(text: string): string {
  let a;
  try {
    a = parseTrackerAddress(text);
  } catch (err) {
    return refused(err, text);
  }
  const port = Number(/:(\d+)$/.exec(a.target)?.[1]);
  if (!(port >= 1 && port <= 65535))
    throw new Error(`tracker address "${text}" parsed to target ${a.target}: no TCP port`);
  return "tracker address parsed";
}
