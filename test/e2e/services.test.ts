import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";

/**
 * The three services as separate processes, finding each other by the flags
 * the README documents, then a file added to the media folder while running.
 */
describe("tracker, checksum and seeder as separate processes", { timeout: 120_000 }, () => {
  let dir: string;
  let procs: Record<"checksum" | "tracker" | "seeder", Proc>;
  let ports: number[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-svc-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/first.bin"), randomBytes(5 * 1024 * 1024 + 1));
    ports = await freePorts(6);
    const [pdtp, checksum, data, m1, m2, m3] = ports;
    const at = (...args: string[]) => [...args, "--log-level", "info"];
    const checksumProc = startNode(
      DISTRIBUSTREAM,
      at("checksum", "--host", "127.0.0.1", "--port", `${checksum}`, "--metrics-port", `${m1}`),
      { cwd: dir },
    );
    await checksumProc.waitFor(/checksum service listening/);
    const trackerProc = startNode(
      DISTRIBUSTREAM,
      at(
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        `${pdtp}`,
        "--checksum",
        `127.0.0.1:${checksum}`,
        "--metrics-port",
        `${m2}`,
        "--chunk-size",
        "65536",
      ),
      { cwd: dir },
    );
    await trackerProc.waitFor(/tracker listening/);
    const seederProc = startNode(
      DISTRIBUSTREAM,
      at(
        "seeder",
        "--tracker",
        `127.0.0.1:${pdtp}`,
        "--media",
        "media",
        "--data-host",
        "127.0.0.1",
        "--data-port",
        `${data}`,
        "--metrics-port",
        `${m3}`,
      ),
      { cwd: dir },
    );
    procs = { checksum: checksumProc, tracker: trackerProc, seeder: seederProc };
    await seederProc.waitFor(/published: ready/, 30_000);
  });

  after(async () => {
    // Reverse order of start; each drains and exits 0 on SIGTERM.
    for (const name of ["seeder", "tracker", "checksum"] as const) {
      assert.equal(await procs[name].kill("SIGTERM"), 0, `${name} exit status; stderr: ${procs[name].stderr()}`);
    }
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
    await procs.seeder.waitFor(
      /"name":"later.bin"[^\n]*published: ready|published: ready[^\n]*"name":"later.bin"/,
      30_000,
    );
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
});
