import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { checkHealth } from "@distribustream/runtime";
import { redisTlsForTests, type TestRedisTls } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * The tracker on a Redis that speaks TLS only and wants a password, its
 * certificate signed by a private CA: trusted with --redis-ca, or with
 * NODE_EXTRA_CA_CERTS; a wrong password shows in the log and the health.
 */
describe("tracker replicas on Redis over TLS with a password (rediss://)", { timeout: 120_000 }, () => {
  let dir: string;
  let redis: TestRedisTls;
  let sys: Services;
  let ports: number[];
  const name = "tls.bin";

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-redis-tls-e2e-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, `media/${name}`), randomBytes(3 * 1024 * 1024 + 5));
    redis = await redisTlsForTests({ password: "secret" });
    sys = new Services(dir);
    ports = await freePorts(8);
    const [t1, t2, checksum, data, m1, m2, m3, m4] = ports as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    await sys.checksum(checksum, m3);
    await sys.tracker({ port: t1, checksum, metricsPort: m1, redis: redis.url, extra: ["--redis-ca", redis.caFile] });
    // the second replica trusts the CA through Node's NODE_EXTRA_CA_CERTS, without --redis-ca
    const t = startNode(
      DISTRIBUSTREAM,
      ["tracker", "--insecure-open-seeding", "--host", "127.0.0.1", "--port", `${t2}`].concat([
        "--checksum",
        `127.0.0.1:${checksum}`,
        "--metrics-port",
        `${m2}`,
        "--redis",
        redis.url,
        "--log-level",
        "info",
      ]),
      { cwd: dir, env: { NODE_EXTRA_CA_CERTS: redis.caFile } },
    );
    sys.procs.push(t);
    await t.waitFor(/tracker listening/);
    await sys.seeder({ tracker: `127.0.0.1:${t1}`, dataPort: data, metricsPort: m4 });
  });

  after(async () => {
    await sys?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("both replicas report SERVING and log the store without its password", async () => {
    for (const port of ports.slice(0, 2))
      assert.equal(await checkHealth(`127.0.0.1:${port}`), "SERVING", `tracker ${port}`);
    for (const p of sys.procs.slice(1, 3)) {
      assert.match(p.stdout() + p.stderr(), /rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+[^\n]*swarm store opened/);
      assert.doesNotMatch(p.stdout() + p.stderr(), /secret/);
    }
  });

  test("a client of the replica without the seeder downloads identical bytes: swarm state crossed TLS", async () => {
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${ports[1]}/${name}`, "-o", "out.bin", "-q"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "out.bin")), await sha256File(join(dir, `media/${name}`)));
  });

  test("a wrong password: the log names WRONGPASS and the redacted URL, gRPC health is NOT_SERVING and /healthz 503", async () => {
    const [port, metricsPort] = await freePorts(2);
    const url = redis.url.replace(":secret@", ":not-it@");
    const p = startNode(
      DISTRIBUSTREAM,
      ["tracker", "--insecure-open-seeding", "--host", "127.0.0.1", "--port", `${port}`].concat([
        "--metrics-port",
        `${metricsPort}`,
        "--redis",
        url,
        "--redis-ca",
        redis.caFile,
        "--log-level",
        "info",
      ]),
      { cwd: dir },
    );
    try {
      await p.waitFor(/tracker listening/);
      const redacted = redis.url.replace(":secret@", ":***@").replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      await p.waitFor(/swarm store connection failed/, 10_000);
      const line = (p.stdout() + p.stderr()).split("\n").find((l) => l.includes("swarm store connection failed"))!;
      assert.match(line, /WRONGPASS/);
      assert.match(line, new RegExp(redacted));
      await p.waitFor(/swarm store unreachable: health NOT_SERVING/, 10_000);
      assert.equal(await checkHealth(`127.0.0.1:${port}`), "NOT_SERVING");
      const healthz = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      assert.equal(healthz.status, 503, "/healthz follows gRPC health");
      assert.doesNotMatch(p.stdout() + p.stderr(), /not-it/);
    } finally {
      await p.kill("SIGTERM");
    }
  });

  test("a redis_ca that is missing, not a certificate, or beside a URL without TLS stops the command", async () => {
    const expect = async (args: string[], re: RegExp, env: NodeJS.ProcessEnv = {}) => {
      const p = startNode(DISTRIBUSTREAM, args, { cwd: dir, env });
      assert.equal(await p.exited, 2, p.stderr());
      assert.match(p.stderr(), re);
    };
    await expect(
      ["tracker", "--insecure-open-seeding", "--redis", redis.url, "--redis-ca", "missing.pem"],
      /^distribustream: invalid setting redis_ca from --redis-ca: cannot read missing\.pem: ENOENT/m,
    );
    writeFileSync(join(dir, "not-a-cert.pem"), "hello\n");
    writeFileSync(join(dir, "ca.yml"), "redis_ca: not-a-cert.pem\n");
    await expect(
      ["tracker", "--insecure-open-seeding", "--conf", "ca.yml", "--redis", redis.url],
      /invalid setting redis_ca from "redis_ca" in ca\.yml: not-a-cert\.pem holds no PEM certificate/,
    );
    await expect(
      ["up", "--media", "media", "--redis", "redis://:secret@127.0.0.1:1"],
      /invalid setting redis_ca: .*ca\.pem is a CA for rediss:\/\/ URLs, but the swarm store is redis:\/\/:\*\*\*@127\.0\.0\.1:1/,
      { DS_REDIS_CA: redis.caFile },
    );
  });
});
