import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";
import { HostilePeer } from "../support/hostilePeer.js";
import { Services } from "../support/services.js";
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.js";

/** The hostile peer's address: its sessions reach the tracker through a proxy connecting from it. */
const HOSTILE_HOST = "127.0.0.2";

/** The tracker's per-peer upload slots (DEFAULT_LIMITS.maxUploadsPeer): transfers it can have in flight at a ban. */
const PEER_UPLOAD_SLOTS = 4;
const BAN_AFTER_BAD = 3;

/**
 * A hostile peer in a swarm of ten honest viewers: it claims every chunk,
 * serves garbage or 416, and replays tickets. Every honest viewer finishes
 * with the seeder's exact bytes, the tracker bans the hostile peer after
 * three bad transfers, and every replayed ticket is refused.
 */
describe("a hostile peer among ten honest viewers", { timeout: 180_000 }, () => {
  let dir: string;
  let sys: Services;
  let tracker: Proc;
  let hostile: HostilePeer;
  let proxy: TcpProxy;
  let target = "";
  let trackerMetrics = "";
  const SIZE = 16 * 1024 * 1024 + 4321;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-hostile-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(SIZE));
    sys = new Services(dir);
    const [pdtp, checksum, data, m1, m2, m3] = (await freePorts(6)) as [number, number, number, number, number, number];
    target = `127.0.0.1:${pdtp}`;
    trackerMetrics = `http://127.0.0.1:${m2}/metrics`;
    await sys.checksum(checksum, m1);
    tracker = await sys.tracker({ port: pdtp, checksum, metricsPort: m2 });
    await sys.seeder({ tracker: target, dataPort: data, metricsPort: m3 });
    proxy = await startTcpProxy([{ host: "127.0.0.1", port: pdtp }], { localAddress: HOSTILE_HOST });
    hostile = new HostilePeer(`127.0.0.1:${proxy.port}`, HOSTILE_HOST);
    await hostile.join("film.bin");
  });

  after(async () => {
    hostile.close();
    await proxy.close();
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("every honest viewer gets the exact bytes, and the hostile peer is banned after 3 bad transfers", async () => {
    const viewers = Array.from({ length: 10 }, (_, i) =>
      startNode(DSCLIENT, [`pdtp://${target}/film.bin`, "-o", `v${i}.out`, "-q", "--max-download-rate", "4M"], {
        cwd: dir,
      }),
    );
    const codes = await Promise.all(viewers.map((v) => v.exited));
    assert.deepEqual(codes, Array(10).fill(0), viewers.map((v) => v.stderr()).join("\n"));
    const want = await sha256File(join(dir, "media/film.bin"));
    for (let i = 0; i < 10; i++) assert.equal(await sha256File(join(dir, `v${i}.out`)), want, `viewer ${i}`);

    assert.equal(await metric(trackerMetrics, "pdtp_tracker_sources_banned_total", { reason: "bad_data" }), 1);
    await tracker.waitFor(
      new RegExp(`"serverId":"${hostile.peerId}","host":"${HOSTILE_HOST}"[^\\n]*"source banned"`),
      5_000,
    );
    // it was used (it claimed everything), and after the third bad transfer no new one was sent its way:
    // at most the transfers already in flight on its upload slots followed
    assert.ok(hostile.served >= BAN_AFTER_BAD, `hostile peer served ${hostile.served} requests`);
    assert.ok(hostile.served <= BAN_AFTER_BAD + PEER_UPLOAD_SLOTS, `hostile peer served ${hostile.served} requests`);
  });

  test("back in a new session from the same address, the banned peer is never sent a viewer", async () => {
    const again = new HostilePeer(`127.0.0.1:${proxy.port}`, HOSTILE_HOST);
    try {
      await again.join("film.bin");
      const viewers = Array.from({ length: 3 }, (_, i) =>
        startNode(DSCLIENT, [`pdtp://${target}/film.bin`, "-o", `w${i}.out`, "-q"], { cwd: dir }),
      );
      assert.deepEqual(await Promise.all(viewers.map((v) => v.exited)), [0, 0, 0]);
      const want = await sha256File(join(dir, "media/film.bin"));
      for (let i = 0; i < 3; i++) assert.equal(await sha256File(join(dir, `w${i}.out`)), want);
      assert.equal(again.served, 0, "a banned address serves nothing, whatever it claims");
    } finally {
      again.close();
    }
  });

  test("replayed tickets are refused: without the fetcher's proof, for a wider range, seen elsewhere, expired", async () => {
    const now = await hostile.replay(false);
    const expired = await hostile.replay(true);
    const all = [...now, ...expired];
    assert.ok(all.length >= 3, JSON.stringify(all));
    for (const r of all) assert.equal(r.status, 403, JSON.stringify(r));
    const says = (what: string) => all.filter((r) => r.what === what).map((r) => r.body.trim());
    assert.ok(says("no proof").length > 0);
    for (const b of says("no proof")) assert.equal(b, "request carries no fetcher proof");
    for (const b of says("wider range")) assert.equal(b, "requested range is outside the ticket");
    for (const b of says("seen ticket")) assert.equal(b, "ticket is for another server");
    assert.ok(says("expired").length > 0);
    for (const b of says("expired")) assert.equal(b, "ticket expired");
  });
});
