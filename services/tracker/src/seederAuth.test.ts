import assert from "node:assert/strict";
import crypto, { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { after, before, describe, it, mock } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  PeerRole,
  PublishStatus,
  Signer,
  TrackerClient,
  type ListStreamsResponse,
  type PeerMessage,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { MemorySwarmStore } from "@distribustream/swarm-store";
import {
  hashSecret,
  issueToken,
  parseToken,
  parseTokenFile,
  readTokenFile,
  SeederTokens,
  TokenFileError,
  verifyToken,
  writeTokenFile,
  type TokenEntry,
} from "./seederAuth.js";
import { startChecksumDouble } from "./testing/index.js";
import { startTracker, type RunningTracker } from "./tracker.js";

/** Session key of the test peers (Hello.peer_key); their tickets name it. */
const TEST_PEER_KEY = Signer.generate().publicKey.ed25519;

const quiet = createLogger("seeder-auth-test", { level: "silent" });
const byId = (entries: TokenEntry[]) => new Map(entries.map((e) => [e.id, e]));

describe("seeder tokens", () => {
  it("a token reads dss_<id>_<secret>, parses back, and verifies against its entry only", () => {
    const { token, entry } = issueToken("edge-1");
    assert.match(token, /^dss_[a-z2-7]{10}_[A-Za-z0-9_-]{43}$/);
    const t = parseToken(token)!;
    assert.equal(t.id, entry.id);
    assert.deepEqual(entry.hash, createHash("sha256").update(t.secret).digest());
    assert.deepEqual(verifyToken(token, byId([entry])), { ok: true, id: entry.id });
    assert.deepEqual(
      verifyToken(`  ${token}\n`, byId([entry])),
      { ok: true, id: entry.id },
      "a file's newline is fine",
    );
    const other = issueToken();
    assert.deepEqual(verifyToken(other.token, byId([entry])), { ok: false, reason: "unknown", id: other.entry.id });
    const wrong = `dss_${entry.id}_${parseToken(other.token)!.secret}`;
    assert.deepEqual(verifyToken(wrong, byId([entry])), { ok: false, reason: "mismatch", id: entry.id });
    assert.deepEqual(verifyToken("", byId([entry])), { ok: false, reason: "missing" });
    for (const bad of ["dss_x_y", "dss_abc", token.slice(0, -1), token.replace("dss_", "dst_"), `${token}x`]) {
      assert.equal(parseToken(bad), undefined, bad);
      assert.equal(verifyToken(bad, byId([entry])).ok, false);
    }
    assert.throws(() => issueToken("has space"), /label "has space"/);
  });

  it("secrets are compared with crypto.timingSafeEqual, for an unknown id as for a known one", () => {
    const { token, entry } = issueToken();
    const spy = mock.method(crypto, "timingSafeEqual");
    syncBuiltinESMExports(); // the module's named import now sees the spy
    try {
      const wrong = `dss_${entry.id}_${parseToken(issueToken().token)!.secret}`;
      for (const t of [token, wrong, issueToken().token]) verifyToken(t, byId([entry]));
      assert.equal(spy.mock.callCount(), 3);
      for (const c of spy.mock.calls) {
        const [a, b] = c.arguments as unknown as [Buffer, Buffer];
        assert.equal(a.length, 32);
        assert.equal(b.length, 32);
      }
      assert.deepEqual(spy.mock.calls[0]!.arguments[1], entry.hash);
      assert.deepEqual(spy.mock.calls[1]!.arguments[0], hashSecret(parseToken(wrong)!.secret));
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
  });

  it("a revoked token is refused with reason revoked", () => {
    const { token, entry } = issueToken();
    entry.revokedMs = Date.now();
    assert.deepEqual(verifyToken(token, byId([entry])), { ok: false, reason: "revoked", id: entry.id });
  });

  it("the credentials file round-trips, holds no secret, and is created with mode 0600", () => {
    const dir = mkdtempSync(join(tmpdir(), "ds-tokens-"));
    try {
      const path = join(dir, "sub/seeder-tokens");
      const a = issueToken("a");
      const b = issueToken();
      b.entry.revokedMs = Date.parse("2026-01-02T03:04:05.000Z");
      writeTokenFile(path, [a.entry, b.entry]);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const text = readFileSync(path, "utf8");
      assert.ok(!text.includes(parseToken(a.token)!.secret), "the secret is not stored");
      const back = readTokenFile(path);
      assert.deepEqual(back, [a.entry, b.entry]);
      assert.deepEqual(readTokenFile(join(dir, "none"), true), []);
      assert.throws(() => readTokenFile(join(dir, "none")), /cannot read .*none: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("errors in the credentials file name the file and line", () => {
    const ok = `abcdefghij sha256:${"0".repeat(64)} created=2026-01-01T00:00:00Z`;
    const cases: Array<[string, RegExp]> = [
      [`# c\n\nnot-an-id sha256:${"0".repeat(64)}`, /^f line 3: "not-an-id" is not a token id$/],
      [`${ok}\nabcdefghik sha256:abc`, /^f line 2: expected sha256:<64 hex digits> after the id$/],
      [`${ok}\n${ok}`, /^f line 2: token id abcdefghij appears twice$/],
      [`${ok} revoked=yesterday`, /^f line 1: revoked="yesterday" is not a time$/],
      [`${ok} colour=blue`, /^f line 1: unknown or invalid attribute "colour=blue"$/],
    ];
    for (const [text, re] of cases) {
      assert.throws(
        () => parseTokenFile(text, "f"),
        (e: Error) => e instanceof TokenFileError && re.test(e.message),
      );
    }
    assert.equal(parseTokenFile(`# only a comment\n${ok}\n`, "f").length, 1);
  });

  it("SeederTokens sees a revocation on its next poll and keeps the last good file when one is broken", () => {
    const dir = mkdtempSync(join(tmpdir(), "ds-tokens-"));
    const path = join(dir, "seeder-tokens");
    const { token, entry } = issueToken();
    writeTokenFile(path, [entry]);
    const tokens = SeederTokens.open(path, quiet, 60_000);
    try {
      let changes = 0;
      tokens.onChange(() => changes++);
      assert.equal(tokens.verify(token).ok, true);
      tokens.poll();
      assert.equal(changes, 0, "an unchanged file is no change");
      writeFileSync(path, "garbage line\n");
      tokens.poll();
      assert.equal(tokens.verify(token).ok, true, "a broken file keeps the last good entries");
      writeTokenFile(path, [{ ...entry, revokedMs: Date.now() }]);
      tokens.poll();
      assert.equal(changes, 1);
      assert.equal(tokens.valid(entry.id), false);
      assert.deepEqual(tokens.verify(token), { ok: false, reason: "revoked", id: entry.id });
    } finally {
      tokens.close();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.throws(() => SeederTokens.open(join(dir, "gone"), quiet), /cannot read .*gone: ENOENT/);
  });
});

/** One session from the peer's side: what it was sent, and how it ended. */
function openSession(client: TrackerClient) {
  const call: grpc.ClientDuplexStream<PeerMessage, TrackerMessage> = client.session();
  const got: TrackerMessage[] = [];
  call.on("data", (m: TrackerMessage) => got.push(m));
  const ended = new Promise<grpc.StatusObject>((resolve) => {
    call.on("error", (e: grpc.ServiceError) => resolve(e));
    call.on("status", (s: grpc.StatusObject) => resolve(s));
  });
  const hello = (role: PeerRole, credential: string) =>
    call.write({
      body: {
        $case: "hello",
        value: {
          role,
          dataPort: 9300,
          agent: "test/1",
          credential,
          advertiseHost: "",
          advertisePort: 0,
          internalHost: "",
          internalPort: 0,
          peerKey: TEST_PEER_KEY,
        },
      },
    });
  const waitFor = async (pred: (m: TrackerMessage) => boolean, what: string) => {
    for (let i = 0; i < 250; i++) {
      if (got.some(pred)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no ${what} within 5 s`);
  };
  return { call, got, ended, hello, waitFor };
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name) as
    { values: { value: number; labels: Record<string, string | number> }[] } | undefined;
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
}

describe("tracker with --seeder-tokens, over real gRPC", () => {
  const network = Signer.generate();
  const registry = new Registry();
  const store = new MemorySwarmStore();
  let dir: string;
  let path: string;
  let tokens: SeederTokens;
  let checksum: Awaited<ReturnType<typeof startChecksumDouble>>;
  let tracker: RunningTracker;
  let client: TrackerClient;
  const valid = issueToken("valid");
  const revoked = issueToken("revoked");
  const calls: grpc.ClientDuplexStream<PeerMessage, TrackerMessage>[] = [];
  const session = () => {
    const s = openSession(client);
    calls.push(s.call);
    return s;
  };
  const listStreams = () =>
    new Promise<ListStreamsResponse>((resolve, reject) =>
      client.listStreams({}, (e, r) => (e ? reject(e) : resolve(r))),
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-auth-"));
    path = join(dir, "seeder-tokens");
    revoked.entry.revokedMs = Date.now();
    writeTokenFile(path, [valid.entry, revoked.entry]);
    tokens = SeederTokens.open(path, quiet, 200);
    checksum = await startChecksumDouble(network);
    tracker = await startTracker({
      // protocol doubles with no data plane: the connect-back probe would find none of them
      peerProbe: false,
      host: "127.0.0.1",
      port: 0,
      checksum: `127.0.0.1:${checksum.port}`,
      store,
      ticketSigner: Signer.generate(),
      chunkSize: 1024,
      log: quiet,
      registry,
      seederTokens: tokens,
    });
    client = new TrackerClient(`127.0.0.1:${tracker.port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    for (const c of calls) c.cancel();
    await tracker.drain();
    tokens.close();
    client.close();
    checksum.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const refusals: Array<[string, () => string, grpc.status, RegExp, string]> = [
    ["no credential", () => "", grpc.status.UNAUTHENTICATED, /requires a seeder token/, "missing"],
    ["a malformed one", () => "letmein", grpc.status.UNAUTHENTICATED, /^unknown seeder token$/, "malformed"],
    ["an unknown one", () => issueToken().token, grpc.status.UNAUTHENTICATED, /^unknown seeder token$/, "unknown"],
    [
      "a wrong secret for a known id",
      () => `dss_${valid.entry.id}_${parseToken(issueToken().token)!.secret}`,
      grpc.status.UNAUTHENTICATED,
      /^unknown seeder token$/,
      "mismatch",
    ],
    ["a revoked one", () => revoked.token, grpc.status.PERMISSION_DENIED, /is revoked/, "revoked"],
  ];
  for (const [what, credential, code, details, reason] of refusals) {
    it(`a seeder with ${what} is refused with ${grpc.status[code]}, counted as ${reason}, nothing published`, async () => {
      const before = await metric(registry, "pdtp_tracker_seeder_auth_failures_total", { reason });
      const s = session();
      s.hello(PeerRole.PEER_ROLE_SEEDER, credential());
      s.call.write({ body: { $case: "publish", value: { name: `refused-${reason}.bin`, size: 5000, version: 1 } } });
      const st = await s.ended;
      assert.equal(st.code, code, `got ${grpc.status[st.code]}: ${st.details}`);
      assert.match(st.details, details);
      assert.deepEqual(
        s.got.map((m) => m.body?.$case),
        [],
        "no welcome, no publish result",
      );
      assert.equal(await metric(registry, "pdtp_tracker_seeder_auth_failures_total", { reason }), before + 1);
      assert.deepEqual((await listStreams()).streams, []);
      assert.equal(await store.streamIdByName(`refused-${reason}.bin`), undefined);
    });
  }

  it("a viewer without a credential is welcomed", async () => {
    const s = session();
    s.hello(PeerRole.PEER_ROLE_VIEWER, "");
    await s.waitFor((m) => m.body?.$case === "welcome", "welcome");
    s.call.end();
  });

  it("a seeder with a valid token publishes; revoking the token in the file ends its session and it leaves the swarm", async () => {
    const s = session();
    s.hello(PeerRole.PEER_ROLE_SEEDER, valid.token);
    await s.waitFor((m) => m.body?.$case === "welcome", "welcome");
    s.call.write({ body: { $case: "publish", value: { name: "ok.bin", size: 5000, version: 1 } } });
    const ready = (m: TrackerMessage) =>
      m.body?.$case === "publishResult" && m.body.value.status === PublishStatus.PUBLISH_STATUS_READY;
    await s.waitFor(ready, "READY");
    assert.deepEqual(
      (await listStreams()).streams.map((d) => `${d.name}:${d.seeders}`),
      ["ok.bin:1"],
    );
    const before = await metric(registry, "pdtp_tracker_seeder_auth_failures_total", { reason: "revoked" });
    const revokedAt = Date.now();
    writeTokenFile(path, [{ ...valid.entry, revokedMs: revokedAt }, revoked.entry]);
    const st = await s.ended;
    assert.equal(st.code, grpc.status.PERMISSION_DENIED, `got ${grpc.status[st.code]}: ${st.details}`);
    assert.equal(st.details, `seeder token ${valid.entry.id} was revoked`);
    assert.ok(Date.now() - revokedAt < 3_000, "within a few seconds");
    assert.equal(await metric(registry, "pdtp_tracker_seeder_auth_failures_total", { reason: "revoked" }), before + 1);
    for (let i = 0; i < 50 && (await listStreams()).streams[0]?.seeders !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(
      (await listStreams()).streams.map((d) => `${d.name}:${d.seeders}`),
      ["ok.bin:0"],
      "the seeder left the swarm",
    );
  });
});
