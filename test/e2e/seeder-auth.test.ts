import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status, type ServiceError } from "@grpc/grpc-js";
import {
  DISTRIBUSTREAM,
  DSCLIENT,
  freePorts,
  metric,
  sha256File,
  startNode,
  startUp,
  type Proc,
} from "../support/procs.js";
import { Services } from "../support/services.js";
import { describeStream } from "../support/tracker.js";

/** `distribustream seeder-token ARGS` in `dir`; resolves with its stdout, asserting exit 0. */
async function seederToken(dir: string, args: string[]): Promise<string> {
  const p = startNode(DISTRIBUSTREAM, ["seeder-token", ...args], { cwd: dir });
  assert.equal(await p.exited, 0, p.stderr());
  return p.stdout();
}

/**
 * Seeder authentication with the services as separate processes: the
 * operator issues a token with `seeder-token create`, the tracker reads the
 * hashed file (--seeder-tokens), a seeder with the token publishes, one with
 * a wrong token is refused and exits, and revoking the token ends the
 * running seeder.
 */
describe("seeder authentication across processes", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let seeder: Proc;
  let tracker: Proc;
  let token = "";
  let pdtp = 0;
  let trackerMetrics = "";
  let ports: number[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-auth-"));
    mkdirSync(join(dir, "media"));
    mkdirSync(join(dir, "intruder/media"), { recursive: true });
    writeFileSync(join(dir, "media/film.bin"), randomBytes(3 * 1024 * 1024 + 5));
    writeFileSync(join(dir, "intruder/media/fake.bin"), randomBytes(100_000));
    token = (await seederToken(dir, ["create", "--file", "seeder-tokens", "--name", "e2e"])).trim();
    assert.match(token, /^dss_[a-z2-7]{10}_[A-Za-z0-9_-]{43}$/);
    assert.equal(statSync(join(dir, "seeder-tokens")).mode & 0o777, 0o600);
    writeFileSync(join(dir, "seeder.token"), `${token}\n`, { mode: 0o600 });
    sys = new Services(dir);
    ports = await freePorts(7);
    const [p, checksum, data, m1, m2, m3] = ports as [number, number, number, number, number, number];
    pdtp = p;
    trackerMetrics = `http://127.0.0.1:${m2}/metrics`;
    await sys.checksum(checksum, m1);
    tracker = await sys.tracker({ port: pdtp, checksum, metricsPort: m2, seederTokens: "seeder-tokens" });
    seeder = await sys.seeder({
      tracker: `127.0.0.1:${pdtp}`,
      dataPort: data,
      metricsPort: m3,
      tokenFile: "seeder.token",
    });
  });

  after(async () => {
    await sys.stop(new Set([seeder])); // the last test revokes its token: it exits 3
    rmSync(dir, { recursive: true, force: true });
  });

  test("a seeder with a valid token publishes, and a client downloads identical bytes", async () => {
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", "film.out", "-q"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "film.out")), await sha256File(join(dir, "media/film.bin")));
    assert.doesNotMatch(tracker.stdout(), /seeders are not authenticated/);
  });

  test("a seeder with a wrong token exits 3 with the tracker's reason, and nothing of it is published", async () => {
    const wrong = `${token.slice(0, 15)}${randomBytes(32).toString("base64url")}`;
    const data = ports[6]!;
    const intruder = startNode(
      DISTRIBUSTREAM,
      ["seeder", "--tracker", `127.0.0.1:${pdtp}`, "--media", "media", "--data-host", "127.0.0.1"].concat([
        "--data-port",
        `${data}`,
        "--metrics-port",
        "0",
      ]),
      { cwd: join(dir, "intruder"), env: { DS_SEEDER_TOKEN: wrong } },
    );
    assert.equal(await intruder.exited, 3, intruder.stderr());
    assert.match(
      intruder.stderr(),
      /^distribustream: the tracker refused this seeder's credential \(UNAUTHENTICATED: unknown seeder token\)$/m,
    );
    const err = (await describeStream(`127.0.0.1:${pdtp}`, "fake.bin").catch((e: unknown) => e)) as ServiceError;
    assert.equal(err.code, status.NOT_FOUND);
    assert.equal(await metric(trackerMetrics, "pdtp_tracker_seeder_auth_failures_total", { reason: "mismatch" }), 1);
    const id = token.split("_")[1]!;
    await tracker.waitFor(new RegExp(`"tokenId":"${id}"[^\\n]*seeder refused: bad credential`), 5_000);
    const secret = wrong.slice(15);
    assert.ok(!tracker.stdout().includes(secret) && !tracker.stderr().includes(secret), "the secret is never logged");
  });

  test("revoking the token ends the running seeder within seconds; it exits 3 and leaves the swarm", async () => {
    const id = token.split("_")[1]!;
    const listed = await seederToken(dir, ["list", "--file", "seeder-tokens"]);
    assert.match(listed, new RegExp(`^${id}\\s+e2e\\s+\\S+Z\\s+-$`, "m"));
    assert.ok(!listed.includes(token.slice(15)), "list shows no secret");
    const started = Date.now();
    await seederToken(dir, ["revoke", id, "--file", "seeder-tokens"]);
    assert.equal(await seeder.exited, 3, seeder.stderr());
    assert.ok(Date.now() - started < 10_000, `ended after ${Date.now() - started} ms`);
    assert.match(
      seeder.stderr(),
      new RegExp(
        `the tracker refused this seeder's credential \\(PERMISSION_DENIED: seeder token ${id} was revoked\\)`,
      ),
    );
    const d = await describeStream(`127.0.0.1:${pdtp}`, "film.bin");
    assert.equal(d.seeders, 0);
    assert.match(
      await seederToken(dir, ["list", "--file", "seeder-tokens"]),
      new RegExp(`^${id}\\s+e2e\\s+\\S+Z\\s+\\S+Z$`, "m"),
    );
  });
});

describe("distribustream up authenticates its own seeder with no setup", { timeout: 120_000 }, () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-auth-up-"));
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test("the demo is served out of the box, and the token is kept in the data folder", async () => {
    const up = await startUp(dir, "demo.bin");
    try {
      const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${up.port}/demo.bin`, "-o", "demo.out", "-q"], { cwd: dir });
      assert.equal(await c.exited, 0, c.stderr());
      assert.equal(await sha256File(join(dir, "demo.out")), await sha256File(join(dir, "media/demo.bin")));
      assert.doesNotMatch(up.proc.stdout(), /seeders are not authenticated/);
      const saved = readFileSync(join(dir, ".distribustream/seeder-token"), "utf8").trim();
      assert.equal(statSync(join(dir, ".distribustream/seeder-token")).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, ".distribustream/seeder-tokens")).mode & 0o777, 0o600);
      assert.match(
        readFileSync(join(dir, ".distribustream/seeder-tokens"), "utf8"),
        new RegExp(`^${saved.split("_")[1]} sha256:`, "m"),
      );
      assert.equal(await metric(up.metricsUrl, "pdtp_tracker_seeder_auth_failures_total"), 0);
    } finally {
      assert.equal(await up.proc.kill("SIGTERM"), 0, up.proc.stderr());
    }
  });
});
