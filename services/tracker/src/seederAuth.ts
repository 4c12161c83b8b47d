import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { status } from "@grpc/grpc-js";
import { Counter, PublicError, type Logger, type Registry } from "@distribustream/runtime";

/**
 * Seeder credentials. The operator issues one token per seeder:
 *
 *   dss_<id>_<secret>     id: 10 lowercase base32 characters (public, names the token in logs)
 *                         secret: 32 random bytes, base64url (43 characters)
 *
 * The tracker keeps only sha256(secret) per id, in a credentials file of one
 * line per token (a Kubernetes Secret holds it as one key):
 *
 *   # comment
 *   <id> sha256:<64 hex> created=<ISO time> [label=<label>] [revoked=<ISO time>]
 *
 * SHA-256, not a slow password hash: the secret is 256 random bits, so there
 * is nothing to brute-force, and a Hello costs one hash instead of tens of
 * milliseconds of scrypt that an unauthenticated caller could make the
 * tracker spend at will.
 */

export const TOKEN_PREFIX = "dss";
const ID_RE = /^[a-z2-7]{10}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;
const LABEL_RE = /^[A-Za-z0-9._@:/-]{1,64}$/;
const HASH_RE = /^sha256:([0-9a-f]{64})$/;

export interface SeederToken {
  id: string;
  secret: string;
}

export interface TokenEntry {
  id: string;
  /** sha256 of the secret (32 bytes). */
  hash: Buffer;
  createdMs: number;
  label?: string | undefined;
  /** When it was revoked; undefined while valid. */
  revokedMs?: number | undefined;
}

/** RFC 4648 base32, lowercase, no padding. */
function base32(bytes: Buffer): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

export function formatToken(t: SeederToken): string {
  return `${TOKEN_PREFIX}_${t.id}_${t.secret}`;
}

/** A new random token (id: 50 bits, secret: 256 bits). */
export function generateToken(): SeederToken {
  return { id: base32(randomBytes(7)).slice(0, 10), secret: randomBytes(32).toString("base64url") };
}

/** The token's parts, or undefined when `text` is not of the form dss_<id>_<secret>. */
export function parseToken(text: string): SeederToken | undefined {
  // the secret is base64url and may itself contain "_": split at the first two only
  const m = /^dss_([^_]+)_(.+)$/.exec(text.trim());
  if (!m || !ID_RE.test(m[1]!) || !SECRET_RE.test(m[2]!)) return undefined;
  return { id: m[1]!, secret: m[2]! };
}

export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** A new token and its file entry; the token is shown once, only the entry is kept. */
export function issueToken(label?: string, nowMs = Date.now()): { token: string; entry: TokenEntry } {
  if (label !== undefined && !LABEL_RE.test(label)) {
    throw new Error(`label "${label.slice(0, 80)}" must be 1-64 characters of A-Z a-z 0-9 . _ @ : / -`);
  }
  const t = generateToken();
  const entry: TokenEntry = { id: t.id, hash: hashSecret(t.secret), createdMs: nowMs };
  if (label !== undefined) entry.label = label;
  return { token: formatToken(t), entry };
}

/** A credentials file that cannot be parsed; the message names the file and line. */
export class TokenFileError extends Error {
  override name = "TokenFileError";
}

/** Parses the credentials file's text; `source` names it in errors. */
export function parseTokenFile(text: string, source: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${source} line ${i + 1}`;
    const [id = "", hash = "", ...attrs] = line.split(/\s+/);
    if (!ID_RE.test(id)) throw new TokenFileError(`${where}: "${id.slice(0, 40)}" is not a token id`);
    if (seen.has(id)) throw new TokenFileError(`${where}: token id ${id} appears twice`);
    const h = HASH_RE.exec(hash);
    if (!h) throw new TokenFileError(`${where}: expected sha256:<64 hex digits> after the id`);
    const entry: TokenEntry = { id, hash: Buffer.from(h[1]!, "hex"), createdMs: 0 };
    for (const a of attrs) {
      const eq = a.indexOf("=");
      const key = eq > 0 ? a.slice(0, eq) : a;
      const value = eq > 0 ? a.slice(eq + 1) : "";
      const time = () => {
        const ms = Date.parse(value);
        if (!Number.isFinite(ms)) throw new TokenFileError(`${where}: ${key}="${value.slice(0, 40)}" is not a time`);
        return ms;
      };
      if (key === "created") entry.createdMs = time();
      else if (key === "revoked") entry.revokedMs = time();
      else if (key === "label" && LABEL_RE.test(value)) entry.label = value;
      else throw new TokenFileError(`${where}: unknown or invalid attribute "${a.slice(0, 40)}"`);
    }
    seen.add(id);
    entries.push(entry);
  });
  return entries;
}

export function formatTokenFile(entries: readonly TokenEntry[]): string {
  const header =
    "# DistribuStream seeder tokens: id sha256:<hash of the secret> created=… [label=…] [revoked=…]\n" +
    "# Managed with `distribustream seeder-token create|revoke|list`; holds no secrets.\n";
  const lines = entries.map((e) =>
    [
      e.id,
      `sha256:${e.hash.toString("hex")}`,
      `created=${new Date(e.createdMs).toISOString()}`,
      e.label ? `label=${e.label}` : "",
      e.revokedMs !== undefined ? `revoked=${new Date(e.revokedMs).toISOString()}` : "",
    ]
      .filter(Boolean)
      .join(" "),
  );
  return header + lines.map((l) => `${l}\n`).join("");
}

/** Reads a credentials file; a missing file reads as empty when `missingOk`. */
export function readTokenFile(path: string, missingOk = false): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new TokenFileError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseTokenFile(text, path);
}

/** Replaces the credentials file (mode 0600) in one rename, so a tracker polling it never reads half of it. */
export function writeTokenFile(path: string, entries: readonly TokenEntry[]): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, formatTokenFile(entries), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { force: true });
  }
}

export type AuthFailure = "missing" | "malformed" | "unknown" | "mismatch" | "revoked";
export const AUTH_FAILURES: readonly AuthFailure[] = ["missing", "malformed", "unknown", "mismatch", "revoked"];

export type Verdict = { ok: true; id: string } | { ok: false; reason: AuthFailure; id?: string | undefined };

const DUMMY_HASH = hashSecret("no such token");

/** Checks a presented credential against entries; the hash is compared in constant time. */
export function verifyToken(credential: string, entries: ReadonlyMap<string, TokenEntry>): Verdict {
  if (credential === "") return { ok: false, reason: "missing" };
  const t = parseToken(credential);
  if (!t) return { ok: false, reason: "malformed" };
  const entry = entries.get(t.id);
  // an unknown id is compared too, so that its answer takes as long as a wrong secret's
  const same = timingSafeEqual(hashSecret(t.secret), entry?.hash ?? DUMMY_HASH);
  if (!entry) return { ok: false, reason: "unknown", id: t.id };
  if (!same) return { ok: false, reason: "mismatch", id: t.id };
  if (entry.revokedMs !== undefined) return { ok: false, reason: "revoked", id: t.id };
  return { ok: true, id: t.id };
}

/**
 * The tracker's view of a credentials file: loaded at start (a bad file is
 * an error then), re-read every `pollMs` (the text is compared, so a
 * Kubernetes Secret's symlink swap is seen as well as an edit in place).
 * A file that turns unreadable or invalid later is logged and the last good
 * entries are kept: neither every seeder locked out nor anyone let in.
 */
export class SeederTokens {
  private entries = new Map<string, TokenEntry>();
  private text = "";
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();
  private broken = false;

  private constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /** Loads the file (throws TokenFileError naming the line) and polls it for changes. */
  static open(path: string, log: Logger, pollMs = 2_000): SeederTokens {
    const t = new SeederTokens(path, log);
    t.load(readFileOrThrow(path));
    t.timer = setInterval(() => t.poll(), pollMs);
    t.timer.unref();
    log.info({ path, tokens: t.entries.size, revoked: t.revokedCount() }, "seeder tokens loaded");
    return t;
  }

  verify(credential: string): Verdict {
    return verifyToken(credential, this.entries);
  }

  /** Whether the token with this id is still in the file and not revoked. */
  valid(id: string): boolean {
    const e = this.entries.get(id);
    return e !== undefined && e.revokedMs === undefined;
  }

  /** Calls `fn` after each reload that changed the entries; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Re-reads the file now (the poll's work). */
  poll(): void {
    let text: string;
    try {
      text = readFileOrThrow(this.path);
      if (text === this.text) return;
      this.load(text);
    } catch (err) {
      if (!this.broken) {
        this.log.error(
          { path: this.path, err: (err as Error).message },
          "seeder tokens not reloaded: keeping the last good file",
        );
      }
      this.broken = true;
      return;
    }
    this.broken = false;
    this.log.info(
      { path: this.path, tokens: this.entries.size, revoked: this.revokedCount() },
      "seeder tokens reloaded",
    );
    for (const fn of this.listeners) fn();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.listeners.clear();
  }

  private load(text: string): void {
    const entries = parseTokenFile(text, this.path);
    this.entries = new Map(entries.map((e) => [e.id, e]));
    this.text = text;
  }

  private revokedCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.revokedMs !== undefined) n++;
    return n;
  }
}

function readFileOrThrow(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new TokenFileError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * The tracker's check of a seeder's Hello: no credential, a malformed, unknown
 * or wrong one is UNAUTHENTICATED ("unknown seeder token" for all but the
 * first, so a caller learns nothing about which ids exist); a revoked one is
 * PERMISSION_DENIED. Each refusal is logged (address and token id, never the
 * secret) and counted in pdtp_tracker_seeder_auth_failures_total{reason}.
 * Without a credentials file every seeder is let in.
 */
export class SeederAuth {
  private readonly failures: Counter<"reason">;

  constructor(
    readonly tokens: SeederTokens | undefined,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.failures = new Counter({
      name: "pdtp_tracker_seeder_auth_failures_total",
      help: "Seeder sessions refused at Hello (missing, malformed, unknown, mismatch, revoked) or ended when their token was revoked (revoked)",
      labelNames: ["reason"],
      registers: [registry],
    });
    for (const reason of AUTH_FAILURES) this.failures.inc({ reason }, 0);
  }

  /** The id of the seeder's token (undefined when authentication is off); throws the status to end the session with. */
  check(credential: string, host: string): string | undefined {
    if (!this.tokens) return undefined;
    const v = this.tokens.verify(credential);
    if (v.ok) return v.id;
    this.failures.inc({ reason: v.reason });
    this.log.warn({ host, tokenId: v.id, reason: v.reason }, "seeder refused: bad credential");
    if (v.reason === "revoked") return refuse(status.PERMISSION_DENIED, `seeder token ${v.id} is revoked`);
    if (v.reason === "missing") {
      return refuse(status.UNAUTHENTICATED, "this tracker requires a seeder token (Hello.credential is empty)");
    }
    return refuse(status.UNAUTHENTICATED, "unknown seeder token");
  }

  /** Counts and logs a live seeder session ended because its token was revoked or removed. */
  revoked(tokenId: string, host: string, peerId: string): PublicError {
    this.failures.inc({ reason: "revoked" });
    this.log.warn({ host, tokenId, peerId }, "seeder session ended: its token was revoked");
    return new PublicError(status.PERMISSION_DENIED, `seeder token ${tokenId} was revoked`);
  }
}

function refuse(code: status, message: string): never {
  throw new PublicError(code, message);
}
