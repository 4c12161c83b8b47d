import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/** `distribustream ARGS` in `dir`; resolves with its stdout, asserting exit 0. */
async function distribustream(dir: string, args: string[]): Promise<{ out: string; err: string }> {
  const p = startNode(DISTRIBUSTREAM, args, { cwd: dir });
  assert.equal(await p.exited, 0, p.stderr());
  return { out: p.stdout(), err: p.stderr() };
}

/**
 * The keys, with the services as separate processes: viewers pin the network
 * key (?key= or --network-key) and refuse a tracker offering another; the
 * ticket key rotates in the middle of downloads without dropping a session
 * or refusing a ticket.
 */
describe("network key pinning and ticket key rotation", { timeout: 180_000 }, () => {
  let dir: string;
  let sys: Services;
  let tracker: Proc;
  let pdtp = 0;
  let trackerMetrics = "";
  let fingerprint = "";
  const SIZE = 24 * 1024 * 1024 + 77;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-keys-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(SIZE));
    sys = new Services(dir);
    const [p, checksum, data, m1, m2, m3] = (await freePorts(6)) as [number, number, number, number, number, number];
    pdtp = p;
    trackerMetrics = `http://127.0.0.1:${m2}/metrics`;
    await sys.checksum(checksum, m1);
    tracker = await sys.tracker({ port: pdtp, checksum, metricsPort: m2, extra: ["--ticket-key-overlap", "1"] });
    await sys.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: data, metricsPort: m3 });
    fingerprint = (await distribustream(dir, ["network-key"])).out.trim();
    assert.match(fingerprint, /^[0-9a-f]{32}$/);
  });

  after(async () => {
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a viewer pinning the network key by ?key= or by its key file downloads identical bytes", async () => {
    const url = `pdtp://127.0.0.1:${pdtp}/film.bin?key=${fingerprint}`;
    const a = startNode(DSCLIENT, [url, "-o", "a.out", "-q"], { cwd: dir });
    const b = startNode(
      DSCLIENT,
      [`pdtp://127.0.0.1:${pdtp}/film.bin`, "--network-key", ".distribustream/network-key.pem", "-o", "b.out", "-q"],
      { cwd: dir },
    );
    assert.equal(await a.exited, 0, a.stderr());
    assert.equal(await b.exited, 0, b.stderr());
    const want = await sha256File(join(dir, "media/film.bin"));
    assert.equal(await sha256File(join(dir, "a.out")), want);
    assert.equal(await sha256File(join(dir, "b.out")), want);
  });

  test("a viewer pinning another key refuses the tracker (exit 6) and writes nothing", async () => {
    const other = randomBytes(16).toString("hex");
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/film.bin?key=${other}`, "-o", "c.out", "-q"], {
      cwd: dir,
    });
    assert.equal(await c.exited, 6, c.stderr());
    assert.match(
      c.stderr(),
      new RegExp(
        `^dsclient: tracker 127.0.0.1:${pdtp} signs with network key ${fingerprint}, not the pinned ${other}: refusing it$`,
        "m",
      ),
    );
    const d = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/film.bin`, "--network-key", "no-such.pem"], { cwd: dir });
    assert.equal(await d.exited, 2, d.stderr());
    assert.match(d.stderr(), /no-such.pem is neither a key fingerprint \(32 hex digits\) nor an existing file/);
    const e = startNode(
      DSCLIENT,
      [`pdtp://127.0.0.1:${pdtp}/film.bin?key=${fingerprint}`, "--network-key", other, "-o", "e.out"],
      { cwd: dir },
    );
    assert.equal(await e.exited, 2, e.stderr());
    assert.match(e.stderr(), /--network-key [0-9a-f]{32} and the URL's \?key=[0-9a-f]{32} differ/);
  });

  test("rotating the ticket key mid-download drops no session and refuses no ticket", async () => {
    const before = (await distribustream(dir, ["ticket-key", "list"])).out.trim().split("\n");
    assert.equal(before.length, 1);
    const refusedBefore = await metric(trackerMetrics, "pdtp_tracker_transfers_failed_total", { reason: "refused" });
    const viewers = [0, 1, 2].map((i) =>
      startNode(
        DSCLIENT,
        [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", `r${i}.out`, "--max-download-rate", "3M", "--log-level", "info"],
        { cwd: dir },
      ),
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const { out, err } = await distribustream(dir, ["ticket-key", "rotate"]);
    const fresh = out.trim();
    assert.match(err, new RegExp(`ticket key ${fresh} added to .*ticket-key.pem`));
    await tracker.waitFor(new RegExp(`"keyId":"${fresh}"[^\\n]*signing tickets with a new key`), 10_000);
    const fromPeersAtSwitch = await metric(trackerMetrics, "pdtp_tracker_delivered_bytes_total", {
      stream: "film.bin",
      source: "peer",
    });
    const codes = await Promise.all(viewers.map((v) => v.exited));
    assert.deepEqual(codes, [0, 0, 0], viewers.map((v) => v.stderr()).join("\n"));
    const want = await sha256File(join(dir, "media/film.bin"));
    for (const i of [0, 1, 2]) assert.equal(await sha256File(join(dir, `r${i}.out`)), want);
    for (const v of viewers) {
      assert.equal(v.stderr().match(/"msg":"welcomed"/g)?.length, 1, "one session per viewer: none was dropped");
    }
    assert.equal(
      await metric(trackerMetrics, "pdtp_tracker_transfers_failed_total", { reason: "refused" }),
      refusedBefore,
      "no ticket refused",
    );
    const fromPeersAfter = await metric(trackerMetrics, "pdtp_tracker_delivered_bytes_total", {
      stream: "film.bin",
      source: "peer",
    });
    assert.ok(fromPeersAfter > fromPeersAtSwitch, "peers served each other with tickets of the new key");
    assert.deepEqual((await distribustream(dir, ["ticket-key", "list"])).out.trim().split("\n"), [
      before[0]!.split(/\s/)[0],
      `${fresh}  newest: signs once published`,
    ]);
  });
});
