import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * The three services as separate processes, finding each other by the flags
 * the README documents, then a file added to the media folder while running.
 */
describe("tracker, checksum and seeder as separate processes", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let seeder: Proc;
  let ports: number[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-svc-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/first.bin"), randomBytes(5 * 1024 * 1024 + 1));
    sys = new Services(dir);
    ports = await freePorts(6);
    const [pdtp, checksum, data, m1, m2, m3] = ports as [number, number, number, number, number, number];
    await sys.checksum(checksum, m1);
    await sys.tracker({ port: pdtp, checksum, metricsPort: m2, extra: ["--chunk-size", "65536"] });
    seeder = await sys.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: data, metricsPort: m3 });
  });

  after(async () => {
    // Reverse order of start; each drains and exits 0 on SIGTERM.
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a client downloads identical bytes with the tracker's chunk size", async () => {
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${ports[0]}/first.bin`, "-o", "first.out", "-q"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "first.out")), await sha256File(join(dir, "media/first.bin")));
    assert.ok((await metric(`http://127.0.0.1:${ports[4]}/metrics`, "pdtp_tracker_transfers_done_total")) >= 1);
    assert.ok(
      (await metric(`http://127.0.0.1:${ports[3]}/metrics`, "pdtp_checksum_bytes_hashed_total")) >= 5 * 1024 * 1024,
    );
  });

  test("a file added to the media folder later is published and downloadable", async () => {
    writeFileSync(join(dir, "media/later.bin"), randomBytes(300_000));
    await seeder.waitFor(/"name":"later.bin"[^\n]*published: ready|published: ready[^\n]*"name":"later.bin"/, 30_000);
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${ports[0]}/later.bin`, "-q"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "later.bin")), await sha256File(join(dir, "media/later.bin")));
  });

  test("health endpoints answer on every service", async () => {
    for (const port of [ports[3], ports[4], ports[5]]) {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(r.status, 200, `healthz on ${port}`);
    }
  });

  test("an invalid setting stops a service at start with a message naming it", async () => {
    const bad = startNode(DISTRIBUSTREAM, ["tracker", "--port", "notaport"], { cwd: dir });
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr(), /^distribustream: invalid setting port from --port: .*"notaport"/m);
    writeFileSync(join(dir, "bad.yml"), "port: 6086\nchunk_size: 12\n");
    const badConf = startNode(DISTRIBUSTREAM, ["tracker", "--conf", "bad.yml"], { cwd: dir });
    assert.equal(await badConf.exited, 2);
    assert.match(badConf.stderr(), /invalid setting chunk_size from "chunk_size" in bad\.yml/);
  });

  test("a tracker without seeder credentials does not start unless told to accept any seeder", async () => {
    const open = startNode(DISTRIBUSTREAM, ["tracker", "--port", "0", "--metrics-port", "0"], { cwd: dir });
    assert.equal(await open.exited, 2);
    assert.match(
      open.stderr(),
      /^distribustream: invalid setting seeder_tokens: not set, and without it any peer could publish as a seeder; issue credentials with `distribustream keys init --dir DIR`.* or accept any seeder with --insecure-open-seeding/m,
    );
  });
});
