import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js";

/**
 * The commands a container image, a compose file and a Helm chart rely on,
 * run as real processes: keys made once by `keys init` and required by the
 * services (--require-keys), `healthcheck` against live and stopped
 * services, the dashboard's token from a file, `distribustream dsclient`,
 * and a seeder whose advertised address (what viewers reach, through a
 * proxy here, as through a published port) differs from its internal one
 * (what the checksum service reads).
 */

/** `distribustream ARGS` in `dir` to its end: exit code and output. */
async function ds(dir: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const p = startNode(DISTRIBUSTREAM, args, { cwd: dir, env });
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

describe("keys init and --require-keys", { timeout: 120_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-deploy-keys-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a tracker or checksum service with --require-keys and no key file exits 2 saying how to create it", async () => {
    const [port, metrics] = await freePorts(2);
    const tracker = await ds(dir, [
      "tracker",
      "--insecure-open-seeding",
      "--require-keys",
      "--ticket-key",
      "keys/ticket-key.pem",
      "--port",
      `${port}`,
      "--metrics-port",
      `${metrics}`,
    ]);
    assert.equal(tracker.code, 2, tracker.err);
    assert.equal(
      tracker.err,
      "distribustream: invalid setting ticket_key: keys/ticket-key.pem does not exist and require_keys is set " +
        "(a deployment never creates keys by itself); create it with: distribustream keys init --dir keys\n",
    );
    const checksum = await ds(dir, ["checksum", "--network-key", "/data/keys/network-key.pem"], {
      DS_REQUIRE_KEYS: "1",
    });
    assert.equal(checksum.code, 2, checksum.err);
    assert.match(
      checksum.err,
      /^distribustream: invalid setting network_key: \/data\/keys\/network-key\.pem does not exist .*create it with: distribustream keys init --dir \/data\/keys\n$/,
    );
    assert.ok(!existsSync(join(dir, "keys")), "nothing was created");
  });

  test("keys init twice keeps the same key fingerprints and token; bad usage exits 2", async () => {
    const first = await ds(dir, ["keys", "init", "--dir", "keys"]);
    assert.equal(first.code, 0, first.err);
    const network = await ds(dir, ["network-key", "--network-key", "keys/network-key.pem"]);
    const ticket = await ds(dir, ["ticket-key", "list", "--ticket-key", "keys/ticket-key.pem"]);
    assert.match(network.out, /^[0-9a-f]{32}\n$/);
    assert.match(
      first.out,
      new RegExp(`^created keys/network-key\\.pem \\(network key ${network.out.trim()}\\)$`, "m"),
    );
    const token = readFileSync(join(dir, "keys/seeder-token"), "utf8");

    const second = await ds(dir, ["keys", "init"], { DS_KEYS_DIR: "keys", DS_DASHBOARD_AUTH: "1" });
    assert.equal(second.code, 0, second.err);
    assert.equal(
      second.out,
      first.out.replace(/^created /gm, "kept ") + "created keys/dashboard-token (dashboard access token)\n",
    );
    assert.equal((await ds(dir, ["network-key", "--network-key", "keys/network-key.pem"])).out, network.out);
    assert.equal((await ds(dir, ["ticket-key", "list", "--ticket-key", "keys/ticket-key.pem"])).out, ticket.out);
    assert.equal(readFileSync(join(dir, "keys/seeder-token"), "utf8"), token);
    assert.ok(!second.out.includes(token.trim()), "no secret printed");

    const noDir = await ds(dir, ["keys", "init"]);
    assert.equal(noDir.code, 2);
    assert.equal(noDir.err, "distribustream: keys init: give the folder with --dir DIR (or DS_KEYS_DIR)\n");

    // a private key every user may read is refused, not trusted
    const keyFile = join(dir, "keys/network-key.pem");
    chmodSync(keyFile, 0o644);
    try {
      const open = await ds(dir, ["checksum", "--port", "0", "--metrics-port", "0", "--network-key", keyFile]);
      assert.equal(open.code, 2, open.err);
      assert.equal(
        open.err,
        `distribustream: invalid setting network_key: ${keyFile} holds a secret but is readable by every user (mode 0644): ` +
          `chmod 600 ${keyFile} (640 to share it with a group)\n`,
      );
    } finally {
      chmodSync(keyFile, 0o600);
    }
  });

  test("with the keys made, --require-keys services start and enforce the seeder credential", async () => {
    const sys = new Services(dir);
    try {
      mkdirSync(join(dir, "media"), { recursive: true });
      writeFileSync(join(dir, "media/small.bin"), randomBytes(300_000));
      const [pdtp, checksum, data, m1, m2, m3] = (await freePorts(6)) as [
        number,
        number,
        number,
        number,
        number,
        number,
      ];
      sys.start(
        ["checksum", "--port", `${checksum}`, "--metrics-port", `${m1}`, "--require-keys"].concat([
          "--network-key",
          "keys/network-key.pem",
        ]),
      );
      await sys.procs[0]!.waitFor(/checksum service listening/);
      await sys.tracker({
        port: pdtp,
        checksum,
        metricsPort: m2,
        seederTokens: "keys/seeder-tokens",
        extra: ["--require-keys", "--ticket-key", "keys/ticket-key.pem"],
      });
      await sys.seeder({
        tracker: `127.0.0.1:${pdtp}`,
        dataPort: data,
        metricsPort: m3,
        tokenFile: "keys/seeder-token",
      });
      const key = (await ds(dir, ["network-key", "--network-key", "keys/network-key.pem"])).out.trim();
      const viewer = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/small.bin?key=${key}`, "-o", "small.out", "-q"], {
        cwd: dir,
      });
      assert.equal(await viewer.exited, 0, viewer.stderr());
      assert.equal(await sha256File(join(dir, "small.out")), await sha256File(join(dir, "media/small.bin")));
    } finally {
      await sys.stop();
    }
  });
});

describe("healthcheck, the dashboard's token file and distribustream dsclient", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let redis: TestRedis;
  let pdtp = 0;
  let checksumPort = 0;
  let dashPort = 0;
  let tracker: Proc;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-deploy-health-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(2 * 1024 * 1024 + 5));
    assert.equal((await ds(dir, ["keys", "init", "--dir", "keys", "--dashboard-auth"])).code, 0);
    redis = await redisForTests();
    sys = new Services(dir);
    const [p, c, d, dash, m1, m2, m3] = (await freePorts(7)) as number[];
    pdtp = p!;
    checksumPort = c!;
    dashPort = dash!;
    await sys.checksum(checksumPort, m1!, ["--network-key", "keys/network-key.pem", "--require-keys"]);
    tracker = await sys.tracker({
      port: pdtp,
      checksum: checksumPort,
      metricsPort: m2!,
      redis: redis.url,
      seederTokens: "keys/seeder-tokens",
      extra: ["--ticket-key", "keys/ticket-key.pem", "--require-keys"],
    });
    await sys.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: d!, metricsPort: m3!, tokenFile: "keys/seeder-token" });
  });

  after(async () => {
    await sys?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a dashboard off loopback starts with the token from DS_AUTH_TOKEN_FILE and asks for it", async () => {
    const open = await ds(dir, ["dashboard", "--redis", redis.url, "--port", `${dashPort}`, "--host", "0.0.0.0"]);
    assert.equal(open.code, 2);
    assert.match(open.err, /would be open to anyone: set --auth-token, --auth-token-file, --auth-file/);
    const dashboard = startNode(
      DISTRIBUSTREAM,
      ["dashboard", "--redis", redis.url, "--port", `${dashPort}`, "--host", "0.0.0.0"],
      { cwd: dir, env: { DS_AUTH_TOKEN_FILE: "keys/dashboard-token" } },
    );
    sys.procs.push(dashboard);
    await dashboard.waitFor(/DistribuStream dashboard: http/);
    const token = readFileSync(join(dir, "keys/dashboard-token"), "utf8").trim();
    const url = `http://127.0.0.1:${dashPort}/api/stats.json`;
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.ok(!dashboard.stdout().includes(token) && !dashboard.stderr().includes(token), "the token is never logged");

    const health = await ds(dir, ["healthcheck", `http://127.0.0.1:${dashPort}/healthz`]);
    assert.equal(health.code, 0, health.err);
    assert.equal(health.out, `http://127.0.0.1:${dashPort}/healthz: 200 OK\n`);
    const locked = await ds(dir, ["healthcheck", url]);
    assert.equal(locked.code, 1);
    assert.equal(locked.err, `distribustream healthcheck: ${url} answered 401 Unauthorized\n`);

    writeFileSync(join(dir, "short-token"), "abc\n", { mode: 0o600 });
    const short = await ds(dir, ["dashboard", "--redis", redis.url, "--auth-token-file", "short-token"]);
    assert.equal(short.code, 2);
    assert.equal(
      short.err,
      "distribustream: invalid setting auth_token_file: short-token does not hold a token (one line of at least 16 characters)\n",
    );
    const missing = await ds(dir, ["dashboard", "--redis", redis.url, "--auth-token-file", "keys/nope"]);
    assert.equal(missing.code, 2);
    assert.equal(missing.err, "distribustream: invalid setting auth_token_file: cannot read keys/nope: ENOENT\n");
  });

  test("healthcheck: 0 for a serving tracker and checksum service, 2 for bad usage, 1 once the tracker stopped", async () => {
    for (const port of [pdtp, checksumPort]) {
      const r = await ds(dir, ["healthcheck", `grpc://127.0.0.1:${port}`]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `grpc://127.0.0.1:${port}: SERVING\n`);
    }
    for (const args of [["tracker:6086"], ["grpc://127.0.0.1:1", "--timeout", "soon"], []]) {
      const r = await ds(dir, ["healthcheck", ...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, /usage: distribustream healthcheck \[--timeout MS\] \[--ca FILE\.pem\] TARGET/);
    }
    const bad = await ds(dir, ["healthcheck", "tracker:6086"]);
    assert.match(bad.err, /^distribustream healthcheck: bad target "tracker:6086": expected grpc:\/\/HOST:PORT/);

    assert.equal(await tracker.kill("SIGTERM"), 0);
    const stopped = await ds(dir, ["healthcheck", `grpc://127.0.0.1:${pdtp}`, "--timeout", "2000"]);
    assert.equal(stopped.code, 1);
    assert.match(
      stopped.err,
      new RegExp(`^distribustream healthcheck: grpc://127\\.0\\.0\\.1:${pdtp} did not answer a health check: .*\\n$`),
    );
    // a new tracker on the same keys serves the same stream again, for the next test
    tracker = await sys.tracker({
      port: pdtp,
      checksum: checksumPort,
      metricsPort: (await freePorts(1))[0]!,
      redis: redis.url,
      seederTokens: "keys/seeder-tokens",
      extra: ["--ticket-key", "keys/ticket-key.pem", "--require-keys"],
    });
  });

  test("distribustream dsclient is the dsclient command: same bytes, same exit codes and messages", async () => {
    const key = (await ds(dir, ["network-key", "--network-key", "keys/network-key.pem"])).out.trim();
    const url = `pdtp://127.0.0.1:${pdtp}/film.bin?key=${key}`;
    const got = await ds(dir, ["dsclient", url, "-o", "film.out", "-q", "--stall", "60"]);
    assert.equal(got.code, 0, got.err);
    assert.equal(await sha256File(join(dir, "film.out")), await sha256File(join(dir, "media/film.bin")));

    const viaBin = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/nope.bin`, "-q"], { cwd: dir });
    const viaCmd = await ds(dir, ["dsclient", `pdtp://127.0.0.1:${pdtp}/nope.bin`, "-q"]);
    assert.equal(await viaBin.exited, 3);
    assert.equal(viaCmd.code, 3);
    assert.equal(viaCmd.err, viaBin.stderr());
    const usage = await ds(dir, ["dsclient", "--no-such-option"]);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /^dsclient: unknown option '--no-such-option'/);
    const help = await ds(dir, ["dsclient", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: dsclient \[options\] <url\.\.\.>/);
    assert.match(help.out, /Exit codes:/);
  });
});

describe(
  "a seeder advertised through a proxy, read by the checksum service at its internal address",
  { timeout: 120_000 },
  () => {
    let dir: string;
    let sys: Services;
    let proxy: TcpProxy | undefined;

    before(() => {
      dir = mkdtempSync(join(tmpdir(), "ds-deploy-addr-"));
      mkdirSync(join(dir, "media"));
      writeFileSync(join(dir, "media/film.bin"), randomBytes(3 * 1024 * 1024 + 11));
      sys = new Services(dir);
    });

    after(async () => {
      await proxy?.close();
      await sys.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test("viewers reach the advertised HOST:PORT, the checksum service the internal one: bytes identical", async () => {
      const [pdtp, checksum, data, advertised, m1, m2, m3] = (await freePorts(7)) as number[];
      await sys.checksum(checksum!, m1!);
      await sys.tracker({ port: pdtp!, checksum: checksum!, metricsPort: m2! });
      // The data plane binds 127.0.0.3 only: the connection's address (127.0.0.1) does not reach it, and the
      // advertised one (127.0.0.2, the proxy) does not listen until the file is published, so the publish
      // succeeding shows the checksum service read the internal address.
      const seeder = sys.start(
        ["seeder", "--tracker", `127.0.0.1:${pdtp}`, "--media", "media", "--data-host", "127.0.0.3"].concat(
          ["--data-port", `${data}`, "--metrics-port", `${m3}`],
          ["--advertise", `127.0.0.2:${advertised}`, "--internal-address", `127.0.0.3:${data}`],
        ),
      );
      await seeder.waitFor(/published: ready/, 60_000);
      proxy = await startTcpProxy([{ host: "127.0.0.3", port: data! }], {
        listen: { host: "127.0.0.2", port: advertised! },
      });
      const viewer = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", "film.out", "-q"], { cwd: dir });
      assert.equal(await viewer.exited, 0, viewer.stderr());
      assert.equal(await sha256File(join(dir, "film.out")), await sha256File(join(dir, "media/film.bin")));
      assert.ok(proxy.accepted[0]! >= 1, "the viewer fetched through the advertised address");
    });

    test("a seeder given a bad address stops at start naming the setting (exit 2)", async () => {
      const r = await ds(dir, ["seeder", "--media", "media", "--advertise", "seed:99999"]);
      assert.equal(r.code, 2);
      assert.equal(
        r.err,
        'distribustream: invalid setting advertise from --advertise: not a data address: "seed:99999" (port "99999" is not 1-65535; expected HOST or HOST:PORT) (got "seed:99999")\n',
      );
      const env = await ds(dir, ["seeder", "--media", "media"], { DS_INTERNAL_ADDRESS: "http://seeder:8000/" });
      assert.equal(env.code, 2);
      assert.match(
        env.err,
        /^distribustream: invalid setting internal_address from DS_INTERNAL_ADDRESS: not a data address/,
      );
    });
  },
);

describe("metrics bind address, liveness apart from readiness, drain delay", { timeout: 120_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-deploy-drain-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** GET http://HOST:PORT/PATH: "STATUS BODY", or the connection error's code. */
  const get = (host: string, port: number | undefined, path: string) =>
    fetch(`http://${host}:${port}${path}`).then(
      async (r) => `${r.status} ${(await r.text()).trim()}`,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );

  test("metrics listen on loopback unless --metrics-host says otherwise", async () => {
    const [port, metrics, port2, metrics2] = await freePorts(4);
    const common = ["checksum", "--network-key", "network-key.pem"];
    const local = startNode(DISTRIBUSTREAM, [...common, "--port", `${port}`, "--metrics-port", `${metrics}`], {
      cwd: dir,
    });
    const open = startNode(
      DISTRIBUSTREAM,
      [...common, "--port", `${port2}`, "--metrics-port", `${metrics2}`, "--metrics-host", "0.0.0.0"],
      { cwd: dir },
    );
    try {
      await local.waitFor(/checksum service listening/);
      await open.waitFor(/checksum service listening/);
      assert.equal(await get("127.0.0.1", metrics, "/livez"), "200 alive");
      // 127.0.0.2 is loopback too, but not the address the default binds
      assert.equal(await get("127.0.0.2", metrics, "/livez"), "ECONNREFUSED");
      assert.equal(await get("127.0.0.2", metrics2, "/livez"), "200 alive");
    } finally {
      await local.kill();
      await open.kill();
    }
  });

  test("a tracker told to stop answers NOT_SERVING and goes on serving for --drain-delay, then exits 0", async () => {
    const [port, metrics] = await freePorts(2);
    const tracker = startNode(
      DISTRIBUSTREAM,
      [
        "tracker",
        "--insecure-open-seeding",
        "--port",
        `${port}`,
        "--metrics-port",
        `${metrics}`,
        "--checksum",
        "127.0.0.1:1",
        "--drain-delay",
        "4",
      ],
      { cwd: dir },
    );
    try {
      await tracker.waitFor(/tracker listening/);
      assert.equal((await ds(dir, ["healthcheck", `grpc://127.0.0.1:${port}`])).code, 0);
      const stopAt = Date.now();
      tracker.child.kill("SIGTERM");
      await tracker.waitFor(/closing after the drain delay/);
      const health = await ds(dir, ["healthcheck", `grpc://127.0.0.1:${port}`]);
      assert.equal(health.code, 1, health.err);
      assert.match(health.err, /NOT_SERVING/);
      // still serving: a viewer's call is answered (an unknown name: NOT_FOUND, exit 3)
      const info = await ds(dir, ["dsclient", "info", `pdtp://127.0.0.1:${port}/nothing-here`]);
      assert.equal(info.code, 3, info.err);
      assert.equal(await get("127.0.0.1", metrics, "/livez"), "200 alive");
      assert.equal(await get("127.0.0.1", metrics, "/healthz"), "503 not serving");
      assert.ok(Date.now() - stopAt < 4000, "the checks ran inside the delay");
      assert.equal(await tracker.exited, 0);
      assert.ok(Date.now() - stopAt >= 4000, "it did not close before the delay");
    } finally {
      await tracker.kill("SIGKILL");
    }
  });
});
