import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { DISTRIBUSTREAM, freePorts, metric, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * Stream retirement: a stream no peer and no seeder has been in for the
 * tracker's --stream-retire-after is removed from the swarm store (its name
 * is unknown afterwards), and never while its seeder is in it.
 */
let dir: string;
let sys: Services;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "ds-retire-"));
  mkdirSync(join(dir, "media"));
  writeFileSync(join(dir, "media", "gone.bin"), randomBytes(300_000));
  sys = new Services(dir);
});
after(async () => {
  await sys.stop(new Set(sys.procs));
  rmSync(dir, { recursive: true, force: true });
});

/** `dsclient info` of the stream: its exit code. */
async function info(port: number): Promise<number> {
  const p = startNode(DISTRIBUSTREAM, ["dsclient", "info", `pdtp://127.0.0.1:${port}/gone.bin`], { cwd: dir });
  return p.exited;
}

test(
  "a stream with no peer and no seeder is retired after the grace period, not before",
  { timeout: 90_000 },
  async () => {
    const [port, cs, csm, tm, dp, sm] = await freePorts(6);
    await sys.checksum(cs!, csm!);
    const tracker = await sys.tracker({
      port: port!,
      checksum: cs!,
      metricsPort: tm!,
      extra: ["--stream-retire-after", "2"],
    });
    const seeder = await sys.seeder({ tracker: `127.0.0.1:${port}`, dataPort: dp!, metricsPort: sm! });
    assert.equal(await info(port!), 0);
    // three grace periods with its seeder in it: kept
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(await info(port!), 0, "a stream its seeder is in is never retired");
    assert.equal(await seeder.kill(), 0);
    await tracker.waitFor(/stream retired: no peer and no seeder/, 30_000);
    assert.equal(await info(port!), 3, "the retired stream's name is unknown");
    assert.equal(await metric(`http://127.0.0.1:${tm}/metrics`, "pdtp_tracker_streams_retired_total"), 1);
  },
);
