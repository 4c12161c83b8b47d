import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HttpOrigin } from "../support/httpOrigin.js";
import { DSCLIENT, freePorts, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

const MiB = 1024 * 1024;
const SIZE = 6 * MiB + 7;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Occurrences of `re` in `text`. */
const count = (text: string, re: RegExp) => text.match(new RegExp(re.source, "g"))?.length ?? 0;

/**
 * Publishing an HTTP origin, end to end: a real HTTP server as the origin
 * (ETag, byte ranges, If-Match, If-Range) whose file the test swaps, and
 * checksum, tracker and `seeder --origin` as separate processes. Viewers get
 * the origin's bytes, a new version after it changes, and a download that
 * spans the change never mixes the two.
 */
describe("publishing an HTTP origin", { timeout: 240_000 }, () => {
  let dir: string;
  let sys: Services;
  let origin: HttpOrigin;
  let seeder: Proc;
  let pdtp = 0;
  let v1: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-origin-"));
    v1 = randomBytes(SIZE);
    origin = await new HttpOrigin(v1).start();
    sys = new Services(dir);
    const [p, checksum, data, m1, m2, m3] = (await freePorts(6)) as [number, number, number, number, number, number];
    pdtp = p;
    // the test's origin is on loopback, which the origin policy denies unless allowed
    await sys.checksum(checksum, m1, ["--origin-allow", "127.0.0.1"]);
    await sys.tracker({ port: pdtp, checksum, metricsPort: m2 });
    seeder = sys.start(
      ["seeder", "--tracker", `127.0.0.1:${pdtp}`, "--origin", `${origin.url} films/film.bin`].concat(
        ["--origin-allow", "127.0.0.1", "--origin-poll", "0.5", "--data-host", "127.0.0.1", "--data-port", `${data}`],
        ["--metrics-port", `${m3}`],
      ),
    );
    await seeder.waitFor(/published: ready/, 30_000);
  });

  after(async () => {
    try {
      await sys.stop();
    } finally {
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const url = () => `pdtp://127.0.0.1:${pdtp}/films/film.bin`;
  const seederLog = () => seeder.stdout() + seeder.stderr();

  /** Waits until the seeder has published `n` versions as ready. */
  const readyVersions = async (n: number) => {
    const deadline = Date.now() + 30_000;
    while (count(seederLog(), /published: ready/) < n) {
      if (Date.now() > deadline) throw new Error(`seeder did not publish version ${n}:\n${seederLog()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  test("a viewer gets exactly the origin's bytes, hashed by the checksum service from the origin itself", async () => {
    const c = startNode(DSCLIENT, [url(), "-o", "v1.bin", "--quiet"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "v1.bin")), sha(v1));
    // the checksum service read the whole file from the origin, conditional on the published ETag
    const whole = origin.requests.filter((r) => r.headers.range === `bytes=0-${SIZE - 1}`);
    assert.equal(whole.length, 1, "one whole-file range request (the checksum service's)");
    assert.equal(whole[0]!.headers["if-match"], origin.etag);
    // every chunk range the seeder relayed was conditional on it too
    const reads = origin.requests.filter((r) => r.headers.range !== "bytes=0-0");
    assert.ok(reads.length > 1);
    for (const r of reads) assert.equal(r.headers["if-match"], origin.etag, `conditional: ${r.headers.range}`);
  });

  test("when the origin changes, the seeder publishes a new version and new viewers get it", async () => {
    const v2 = randomBytes(SIZE + 1000);
    origin.swap(v2);
    await seeder.waitFor(/origin changed, publishing new version/, 10_000);
    await readyVersions(2);
    const c = startNode(DSCLIENT, [url(), "-o", "v2.bin", "--quiet"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "v2.bin")), sha(v2));
    v1 = v2; // the version the next test starts from
  });

  test("a download spanning a change ends with the old bytes or fails clearly, never mixing versions", async (t) => {
    const old = v1;
    // 1 MiB/s: the download takes about 6 s; the origin changes after its first MiB
    const c = spawn(process.execPath, [DSCLIENT, url(), "-o", "-", "--quiet", "--max-download-rate", "1M"], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const parts: Buffer[] = [];
    let got = 0;
    let stderr = "";
    let swapped = false;
    const v3 = randomBytes(SIZE - 3000);
    c.stdout.on("data", (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (!swapped && got >= MiB) {
        swapped = true;
        origin.swap(v3);
      }
    });
    c.stderr.on("data", (d) => (stderr += d));
    const started = Date.now();
    const code = await new Promise<number | null>((r) => c.on("close", r));
    const out = Buffer.concat(parts);
    t.diagnostic(
      `exit ${code} after ${Date.now() - started} ms, ${out.length} of ${old.length} bytes; ${stderr.trim()}`,
    );
    assert.ok(swapped, `the origin changed mid-download (${out.length} bytes written; stderr: ${stderr})`);
    assert.ok(out.length <= old.length, "never more than the old version");
    assert.ok(out.equals(old.subarray(0, out.length)), "what was written is a prefix of the old version");
    if (code === 0) {
      assert.equal(out.length, old.length, "a completed download is exactly the old version");
    } else {
      assert.equal(code, 7, `exit status 7 (the tracker ended the download); stderr: ${stderr}`);
      assert.match(stderr, /^dsclient: "films\/film\.bin" changed during the download/m);
      assert.ok(out.length < old.length);
      assert.ok(Date.now() - started < 45_000, "failed promptly, not after the 60 s stall timeout");
    }
    // and the name now gives the new version
    await readyVersions(3);
    const next = startNode(DSCLIENT, [url(), "-o", "v3.bin", "--quiet"], { cwd: dir });
    assert.equal(await next.exited, 0, next.stderr());
    assert.equal(await sha256File(join(dir, "v3.bin")), sha(v3));
    v1 = v3;
  });

  test("a download spanning a change finishes the old version from a peer that still holds it", async () => {
    const old = v1;
    // a viewer that completed the current version and keeps serving it
    const holder = startNode(DSCLIENT, [url(), "-o", "held.bin", "--quiet", "--linger", "60"], { cwd: dir });
    await waitForFile(join(dir, "held.bin"), 30_000);
    const c = spawn(process.execPath, [DSCLIENT, url(), "-o", "-", "--quiet", "--max-download-rate", "1M"], {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const h = createHash("sha256");
    let got = 0;
    let stderr = "";
    let swapped = false;
    c.stdout.on("data", (d: Buffer) => {
      h.update(d);
      got += d.length;
      if (!swapped && got >= MiB) {
        swapped = true;
        origin.swap(randomBytes(SIZE));
      }
    });
    c.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => c.on("close", r));
    await holder.kill("SIGTERM");
    assert.ok(swapped, "the origin changed mid-download");
    assert.equal(code, 0, stderr);
    assert.equal(got, old.length);
    assert.equal(h.digest("hex"), sha(old), "exactly the old version, finished from the peer");
    await readyVersions(4);
  });
});

/**
 * The origin policy, where each fetch happens: a seeder (an authenticated one
 * is enough) cannot make itself or the checksum service read from loopback,
 * private or link-local addresses unless the operator allowed the range.
 */
describe("an origin on a denied address", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let origin: HttpOrigin;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-origin-deny-"));
    origin = await new HttpOrigin(randomBytes(100_000)).start();
    sys = new Services(dir);
  });
  after(async () => {
    try {
      await sys.stop();
    } finally {
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("is read neither by a seeder nor by the checksum service that did not allow it; both say how to allow it", async () => {
    const [pdtp, checksum, d1, d2, m1, m2, m3, m4] = (await freePorts(8)) as number[] as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    await sys.checksum(checksum, m1); // no --origin-allow: the default policy
    await sys.tracker({ port: pdtp, checksum, metricsPort: m2 });
    const seeder = (data: number, metrics: number, name: string, allow: string[]) =>
      sys.start(
        ["seeder", "--tracker", `127.0.0.1:${pdtp}`, "--origin", `${origin.url} ${name}`, ...allow].concat(
          ["--data-host", "127.0.0.1", "--data-port", `${data}`, "--metrics-port", `${metrics}`],
          ["--log-level", "info"],
        ),
      );
    // a seeder with the default policy refuses its own origin before any request
    const strict = seeder(d1, m3, "strict.bin", []);
    await strict.waitFor(/origin not published/, 30_000);
    assert.match(
      strict.stdout() + strict.stderr(),
      /127\.0\.0\.1 is a loopback address, which the origin policy denies; allow its range with --origin-allow CIDR/,
    );
    assert.equal(origin.requests.length, 0, "the seeder sent the origin nothing");
    // a seeder that allows loopback probes it, but the checksum service refuses to read it
    const lax = seeder(d2, m4, "lax.bin", ["--origin-allow", "127.0.0.0/8"]);
    await lax.waitFor(/origin policy denies/, 30_000);
    assert.match(
      lax.stdout() + lax.stderr(),
      /manifest not computed: .*127\.0\.0\.1 is a loopback address, which the origin policy denies/,
    );
    assert.deepEqual(
      origin.requests.map((r) => r.headers.range),
      origin.requests.map(() => "bytes=0-0"),
      "only the seeder's probes reached the origin, never the checksum service's read",
    );
    assert.ok(origin.requests.length >= 1);
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/lax.bin`, "-o", "lax.bin", "--quiet"], { cwd: dir });
    assert.notEqual(await c.exited, 0, "nothing published to download");
  });
});

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
