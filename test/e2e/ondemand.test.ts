import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DSCLIENT, freePorts, metric, sha256File, startNode, startUp, type Proc } from "../support/procs.js";

/**
 * End to end with separate processes on loopback: `distribustream up` (tracker,
 * checksum and seeder in one process) and real `dsclient` processes.
 */
const MiB = 1024 * 1024;

describe("on-demand delivery with distribustream up and dsclient", { timeout: 300_000 }, () => {
  let dir: string;
  let up: Proc;
  let port: number;
  let metricsUrl: string;
  let sourceSha: string;
  const size = 32 * MiB;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-e2e-"));
    mkdirSync(join(dir, "media/videos"), { recursive: true });
    writeFileSync(join(dir, "media/videos/big.bin"), randomBytes(size));
    sourceSha = await sha256File(join(dir, "media/videos/big.bin"));
    const sys = await startUp(dir, "videos/big.bin");
    up = sys.proc;
    port = sys.port;
    metricsUrl = sys.metricsUrl;
  });

  after(async () => {
    const code = await up.kill("SIGTERM");
    assert.equal(code, 0, `up exits 0 on SIGTERM; stderr: ${up.stderr()}`);
    rmSync(dir, { recursive: true, force: true });
  });

  const url = () => `pdtp://127.0.0.1:${port}/videos/big.bin`;
  const client = (args: string[]) => startNode(DSCLIENT, [url(), ...args, "--quiet"], { cwd: dir });

  test("five clients started together all get identical bytes, mostly from each other", async (t) => {
    const before = await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total");
    const clients = [1, 2, 3, 4, 5].map((i) => client(["-o", `out${i}.bin`, "--linger", "3"]));
    const codes = await Promise.all(clients.map((c) => c.exited));
    codes.forEach((code, i) => assert.equal(code, 0, `client ${i + 1} exit; stderr: ${clients[i]!.stderr()}`));
    for (let i = 1; i <= 5; i++) assert.equal(await sha256File(join(dir, `out${i}.bin`)), sourceSha, `out${i}.bin`);
    const egress = (await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total")) - before;
    const copies = egress / size;
    t.diagnostic(`seeder data-plane egress for 5 clients: ${copies.toFixed(2)} copies of the file`);
    assert.ok(copies < 2.5, `seeder egress ${copies.toFixed(2)} copies, want well under 5`);
    assert.ok((await metric(metricsUrl, "pdtp_tracker_delivered_bytes_total", { source: "peer" })) > 0);
  });

  test("the default output is the name's last segment in the current folder", async () => {
    const sub = mkdtempSync(join(dir, "cwd-"));
    const c = startNode(DSCLIENT, [url(), "--quiet"], { cwd: sub });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(sub, "big.bin")), sourceSha);
  });

  test("a client writing to a slowly read pipe delivers the bytes in order", async () => {
    const c = spawn(process.execPath, [DSCLIENT, url(), "-o", "-", "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
    const h = createHash("sha256");
    let bytes = 0;
    c.stdout.on("data", (d: Buffer) => {
      h.update(d);
      bytes += d.length;
      c.stdout.pause();
      setTimeout(() => c.stdout.resume(), 2); // a slow reader: about 64 KiB per 2 ms at most
    });
    let stderr = "";
    c.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => c.on("close", r));
    assert.equal(code, 0, stderr);
    assert.equal(bytes, size);
    assert.equal(h.digest("hex"), sourceSha);
  });

  test("a closed pipe ends the client cleanly", async () => {
    const c = spawn(
      "sh",
      [
        "-c",
        `"${process.execPath}" "${DSCLIENT}" "${url()}" -o - --quiet | head -c 1000 | wc -c; exit "\${PIPESTATUS:-0}"`,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    let err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((r) => c.on("close", r));
    assert.equal(code, 0);
    assert.equal(out.trim(), "1000");
    assert.doesNotMatch(err, /Error|at .*\.js/, "no stack trace on a closed pipe");
  });

  test("a client killed mid-way does not stop the others", async () => {
    // 8 MiB/s each: 32 MiB takes at least 3.5 s, so a kill after 1 s is mid-way for everyone.
    const limit = ["--max-download-rate", "8M", "--max-upload-rate", "8M"];
    const victim = client(["-o", "victim.bin", ...limit]);
    const clients = [1, 2, 3].map((i) => client(["-o", `k${i}.bin`, ...limit]));
    await waitForFileBytes(join(dir, "victim.bin.dspart"), 1, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    const finishedBeforeKill = [1, 2, 3].filter((i) => existsSync(join(dir, `k${i}.bin`)));
    victim.child.kill("SIGKILL");
    assert.equal(await victim.exited, 128 + 9, "the victim was killed before it completed");
    assert.deepEqual(finishedBeforeKill, [], "the others were still downloading when the victim died");
    const codes = await Promise.all(clients.map((c) => c.exited));
    codes.forEach((code, i) => assert.equal(code, 0, clients[i]!.stderr()));
    for (let i = 1; i <= 3; i++) assert.equal(await sha256File(join(dir, `k${i}.bin`)), sourceSha);
  });

  test("an unknown name exits 3 with a one-line error", async () => {
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${port}/no/such.bin`], { cwd: dir });
    assert.equal(await c.exited, 3);
    assert.match(c.stderr(), /^dsclient: no stream named "no\/such\.bin"/m);
  });

  test("an unreachable tracker exits 4 after bounded retries", async () => {
    const [closed] = await freePorts(1);
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${closed}/x.bin`], { cwd: dir });
    assert.equal(await c.exited, 4);
    assert.match(c.stderr(), /^dsclient: tracker 127\.0\.0\.1:\d+ unreachable/m);
  });

  test("a bad URL exits 2", async () => {
    const c = startNode(DSCLIENT, ["http://127.0.0.1/x"], { cwd: dir });
    assert.equal(await c.exited, 2);
    assert.match(c.stderr(), /unsupported scheme/);
  });

  test("the tracker reports sessions and transfers in /metrics", async () => {
    assert.ok((await metric(metricsUrl, "pdtp_tracker_transfers_done_total")) > 0);
    assert.equal(await metric(metricsUrl, "pdtp_tracker_sessions", { role: "seeder" }), 1);
    const health = await fetch(metricsUrl.replace("/metrics", "/healthz"));
    assert.equal(health.status, 200);
  });
});

async function waitForFileBytes(path: string, min: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (statSync(path).size >= min) return;
    } catch {
      /* not there yet */
    }
    if (Date.now() > end) throw new Error(`${path} did not appear`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
