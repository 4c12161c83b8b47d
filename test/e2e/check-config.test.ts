import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, freePorts, startNode } from "../support/procs.js";

/**
 * `--check-config`: the services' preflight run alone, as a Helm chart's
 * test or an operator runs it before a rollout. It must accept what a start
 * accepts, refuse what a start refuses with the start's own message and exit
 * code, and do nothing else: no port bound, no key created, no connection.
 */

async function ds(dir: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const p = startNode(DISTRIBUSTREAM, args, { cwd: dir, env });
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

/** Holds 127.0.0.1:port and 0.0.0.0:port's wildcard, so that any bind of it by the command fails. */
function hold(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(port, () => resolve(s));
  });
}

describe("--check-config", { timeout: 60_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-check-config-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a good tracker config: exit 0, the settings printed with the password masked; no port bound, no key created, no Redis reached", async () => {
    const [port, metrics] = await freePorts(2);
    const held = await Promise.all([hold(port!), hold(metrics!)]);
    try {
      const r = await ds(
        dir,
        [
          "tracker",
          "--check-config",
          "--insecure-open-seeding",
          "--port",
          `${port}`,
          "--ticket-key",
          "keys/ticket-key.pem",
        ],
        // nothing listens on port 1: a connection attempt would keep the process retrying
        { DS_METRICS_PORT: `${metrics}`, DS_REDIS: "redis://:hunter2-secret@127.0.0.1:1" },
      );
      assert.equal(r.code, 0, r.err);
      assert.equal(r.err, "");
      const [first, json] = r.out.trimEnd().split("\n");
      assert.equal(first, "configuration ok");
      const settings = JSON.parse(json!) as Record<string, unknown>;
      assert.equal(settings.port, port);
      assert.equal(settings.metricsPort, metrics);
      assert.equal(settings.redis, "redis://:***@127.0.0.1:1");
      assert.doesNotMatch(r.out, /hunter2/);
    } finally {
      await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
    }
    assert.deepEqual(readdirSync(dir), [], "the check created no file (the tracker would create its ticket key)");
  });

  test("the dashboard's token is redacted; the seeder checks its token file and media folder", async () => {
    const dash = await ds(dir, ["dashboard", "--check-config", "--host", "0.0.0.0", "--redis", "redis://r:6379"], {
      DS_AUTH_TOKEN: "a-dashboard-token-of-32-characters",
    });
    assert.equal(dash.code, 0, dash.err);
    assert.equal(JSON.parse(dash.out.split("\n")[1]!).authToken, "[redacted]");
    assert.doesNotMatch(dash.out, /a-dashboard-token/);

    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "token"), "not a token\n", { mode: 0o600 });
    const seeder = await ds(dir, ["seeder", "--check-config", "--media", "media", "--token-file", "token"]);
    assert.equal(seeder.code, 2);
    assert.equal(
      seeder.err,
      "distribustream: invalid setting seeder_token_file: token does not hold a seeder token (expected dss_<id>_<secret>)\n",
    );
    const noMedia = await ds(dir, ["seeder", "--check-config", "--media", "nowhere"]);
    assert.equal(noMedia.code, 2);
    assert.match(noMedia.err, /^distribustream: invalid setting media: folder \S+nowhere does not exist\n$/);
    rmSync(join(dir, "media"), { recursive: true });
    rmSync(join(dir, "token"));
  });

  test("a misspelt flag: commander's message, non-zero exit", async () => {
    const r = await ds(dir, ["tracker", "--check-config", "--tiket-key", "k.pem"]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /^error: unknown option '--tiket-key'\n\(Did you mean --ticket-key\?\)/);
  });

  test("a bad environment value: exit 2 naming the setting, the same message as a start", async () => {
    const env = { DS_METRICS_PORT: "99999" };
    const check = await ds(dir, ["checksum", "--check-config"], env);
    const start = await ds(dir, ["checksum"], env);
    assert.equal(check.code, 2);
    assert.match(check.err, /^distribustream: invalid setting metrics_port from DS_METRICS_PORT: .*\(got "99999"\)\n$/);
    assert.deepEqual(start, { ...check, out: "" });
  });

  test("a missing key file with --require-keys, and a key file that holds no key: exit 2, as a start", async () => {
    const missing = ["checksum", "--require-keys", "--network-key", "keys/network-key.pem"];
    const check = await ds(dir, [...missing, "--check-config"]);
    assert.equal(check.code, 2);
    assert.equal(
      check.err,
      "distribustream: invalid setting network_key: keys/network-key.pem does not exist and require_keys is set " +
        "(a deployment never creates keys by itself); create it with: distribustream keys init --dir keys\n",
    );
    assert.deepEqual(await ds(dir, missing), check);

    writeFileSync(join(dir, "ticket-key.pem"), "-----BEGIN CERTIFICATE-----\n", { mode: 0o600 });
    const bad = [
      "tracker",
      "--insecure-open-seeding",
      "--ticket-key",
      "ticket-key.pem",
      "--port",
      "0",
      "--metrics-port",
      "0",
    ];
    const badCheck = await ds(dir, [...bad, "--check-config"]);
    assert.equal(badCheck.code, 2);
    assert.equal(badCheck.err, "distribustream: invalid setting ticket_key: ticket-key.pem holds no PEM private key\n");
    assert.deepEqual(await ds(dir, bad), badCheck);
  });
});
