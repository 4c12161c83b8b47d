import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { DSCLIENT, metric, sha256File, startNode, startUp, type Proc } from "../support/procs.js";
import { describeStream } from "../support/tracker.js";

/**
 * dsclient's command line as wget and aria2 users expect it, end to end with
 * `distribustream up` (tracker, checksum and seeder) and real dsclient
 * processes: resuming with -c, --json for scripts, several URLs at once.
 */
const MiB = 1024 * 1024;

type Event = Record<string, unknown> & { event?: string };

/** The JSON objects dsclient wrote on stderr (log lines have no `event`). */
function events(p: Proc): Event[] {
  return p
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Event)
    .filter((e) => e.event !== undefined);
}

const summaryOf = (p: Proc) => {
  const s = events(p).filter((e) => e.event === "summary");
  assert.equal(s.length, 1, `one summary; stderr: ${p.stderr()}`);
  return s[0] as Event & { bytes: number; resumedBytes: number; resumedBadChunks: number; size: number };
};

describe("dsclient command line: -c, --json, several URLs", { timeout: 300_000 }, () => {
  let dir: string;
  let up: Proc;
  let port: number;
  let metricsUrl: string;
  const size = 8 * MiB;
  const shas = new Map<string, string>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-cli-"));
    mkdirSync(join(dir, "media/films"), { recursive: true });
    for (const name of ["films/a.bin", "films/b.bin", "films/c.bin", "films/v.bin"]) {
      writeFileSync(join(dir, "media", name), randomBytes(size));
      shas.set(name, await sha256File(join(dir, "media", name)));
    }
    const sys = await startUp(dir, "films/a.bin");
    up = sys.proc;
    port = sys.port;
    metricsUrl = sys.metricsUrl;
    // `up` prints the line of the first files only: the others are published alongside
    for (const name of shas.keys()) {
      const end = Date.now() + 30_000;
      while (!(await describeStream(`127.0.0.1:${port}`, name).catch(() => undefined))) {
        assert.ok(Date.now() < end, `${name} published`);
        await sleep(100);
      }
    }
  });

  after(async () => {
    const code = await up.kill("SIGTERM");
    assert.equal(code, 0, `up exits 0 on SIGTERM; stderr: ${up.stderr()}`);
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (name: string) => `pdtp://127.0.0.1:${port}/${name}`;
  const dsclient = (args: string[]) => startNode(DSCLIENT, args, { cwd: dir });

  /**
   * A download at 2 MiB/s of `name` to `out` with -c, interrupted by SIGINT
   * once its --json progress reports about half the file: exit 130, and the
   * partial file and its record stay.
   */
  async function interruptedAtHalf(name: string, out: string) {
    const c = dsclient([url(name), "-o", out, "-c", "--json", "--max-download-rate", "2M"]);
    const end = Date.now() + 60_000;
    while (!events(c).some((e) => e.event === "progress" && (e.bytes as number) >= size / 2)) {
      assert.ok(Date.now() < end, `no progress past half; stderr: ${c.stderr()}`);
      await sleep(20);
    }
    c.child.kill("SIGINT");
    assert.equal(await c.exited, 130, c.stderr());
    const s = summaryOf(c);
    assert.equal(s.ok, false);
    assert.equal(s.error, "interrupted");
    assert.equal(s.keptPartial, join(dir, out + ".dspart"));
    assert.ok(existsSync(join(dir, out + ".dspart")) && existsSync(join(dir, out + ".dsclient")));
    assert.ok(!existsSync(join(dir, out)), "no complete file yet");
    return s;
  }

  test("interrupted at half with -c, a rerun with -c fetches only the other half", async (t) => {
    const first = await interruptedAtHalf("films/a.bin", "a-resumed.bin");
    assert.ok(first.bytes >= size / 2 && first.bytes < size, `first run got ${first.bytes} bytes`);
    const record = JSON.parse(readFileSync(join(dir, "a-resumed.bin.dsclient"), "utf8")) as Record<string, unknown>;
    assert.equal(record.name, "films/a.bin");

    // the seeder's data-plane egress of this stream (the checksum service reads the live demo from it too)
    const ofA = { stream: first.streamId as string };
    const egressBefore = await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total", ofA);
    const second = dsclient([url("films/a.bin"), "-o", "a-resumed.bin", "-c", "--json"]);
    assert.equal(await second.exited, 0, second.stderr());
    const egress = (await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total", ofA)) - egressBefore;
    assert.equal(await sha256File(join(dir, "a-resumed.bin")), shas.get("films/a.bin"));
    assert.ok(!existsSync(join(dir, "a-resumed.bin.dspart")) && !existsSync(join(dir, "a-resumed.bin.dsclient")));

    const s = summaryOf(second);
    t.diagnostic(
      `first run ${first.bytes} bytes; second: ${s.bytes} fetched, ${s.resumedBytes} resumed; egress ${egress}`,
    );
    assert.equal(s.ok, true);
    assert.equal(s.resumedBytes, first.bytes, "every chunk the first run held was kept");
    assert.equal(s.resumedBadChunks, 0);
    assert.equal(s.bytes + s.resumedBytes, size);
    assert.ok(egress < size * 0.6, `the seeder sent ${egress} bytes for the second run: about half, not all`);
    // what the client fetched, and no kept chunk again (give or take a chunk on its way at the end)
    assert.ok(egress >= s.bytes && egress - s.bytes < (record.chunkSize as number), `egress ${egress}`);
    assert.equal(s.duplicateBytes, 0, "no chunk fetched twice");
    const resumed = events(second).filter((e) => e.event === "resumed");
    assert.deepEqual(
      resumed.map((e) => ({ bytes: e.bytes, badChunks: e.badChunks })),
      [{ bytes: first.bytes, badChunks: 0 }],
    );
    const progress = events(second).filter((e) => e.event === "progress");
    assert.ok(
      progress.every((e) => e.url === url("films/a.bin") && typeof e.bytes === "number" && e.size === size),
      "progress events name the URL, bytes and size",
    );
  });

  test("a kept chunk damaged on disk is fetched again", async () => {
    await interruptedAtHalf("films/b.bin", "b-damaged.bin");
    const record = JSON.parse(readFileSync(join(dir, "b-damaged.bin.dsclient"), "utf8")) as {
      chunks: string;
      chunkSize: number;
    };
    const firstChunk = Number(/^\d+/.exec(record.chunks)![0]);
    const part = readFileSync(join(dir, "b-damaged.bin.dspart"));
    part[firstChunk * record.chunkSize + 100]! ^= 0xff;
    writeFileSync(join(dir, "b-damaged.bin.dspart"), part);

    const c = dsclient([url("films/b.bin"), "-o", "b-damaged.bin", "-c", "--json"]);
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "b-damaged.bin")), shas.get("films/b.bin"));
    const s = summaryOf(c);
    assert.equal(s.resumedBadChunks, 1);
    assert.equal(s.bytes + s.resumedBytes, size);
  });

  test("-c on a complete FILE checks it and fetches nothing; a damaged chunk of it is fetched again", async () => {
    copyFileSync(join(dir, "media/films/c.bin"), join(dir, "c-done.bin"));
    const ofC = { stream: (await describeStream(`127.0.0.1:${port}`, "films/c.bin")).streamId };
    const egressBefore = await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total", ofC);
    const c = dsclient([url("films/c.bin"), "-o", "c-done.bin", "-c", "--json"]);
    assert.equal(await c.exited, 0, c.stderr());
    const s = summaryOf(c);
    assert.deepEqual([s.bytes, s.resumedBytes, s.resumedBadChunks], [0, size, 0], c.stderr());
    const egress = (await metric(metricsUrl, "pdtp_dataplane_sent_bytes_total", ofC)) - egressBefore;
    assert.equal(egress, 0, "the seeder sent nothing");
    assert.equal(await sha256File(join(dir, "c-done.bin")), shas.get("films/c.bin"));
    assert.ok(!existsSync(join(dir, "c-done.bin.dspart")) && !existsSync(join(dir, "c-done.bin.dsclient")));

    const file = readFileSync(join(dir, "c-done.bin"));
    file[size - 5]! ^= 0xff;
    writeFileSync(join(dir, "c-done.bin"), file);
    const damaged = await sha256File(join(dir, "c-done.bin"));

    // stopped after the check, before the bad chunk is written: the file is left as it was, under its name
    const slow = dsclient([url("films/c.bin"), "-o", "c-done.bin", "-c", "--json", "--max-download-rate", "64K"]);
    const end = Date.now() + 30_000;
    while (!events(slow).some((e) => e.event === "resumed")) {
      assert.ok(Date.now() < end, `no resumed event; stderr: ${slow.stderr()}`);
      await sleep(20);
    }
    slow.child.kill("SIGINT");
    assert.equal(await slow.exited, 130, slow.stderr());
    assert.equal(await sha256File(join(dir, "c-done.bin")), damaged, "the file is back, untouched");
    assert.ok(!existsSync(join(dir, "c-done.bin.dspart")) && !existsSync(join(dir, "c-done.bin.dsclient")));
    const again = dsclient([url("films/c.bin"), "-o", "c-done.bin", "-c", "--json"]);
    assert.equal(await again.exited, 0, again.stderr());
    const s2 = summaryOf(again);
    assert.equal(s2.resumedBadChunks, 1);
    assert.equal(s2.bytes + s2.resumedBytes, size);
    assert.ok(s2.bytes > 0 && s2.bytes <= size / 8, `only the damaged chunk fetched (${s2.bytes} bytes)`);
    assert.equal(await sha256File(join(dir, "c-done.bin")), shas.get("films/c.bin"));
  });

  test("a stream that changed version since the interruption is downloaded from zero, with a line saying so", async () => {
    await interruptedAtHalf("films/v.bin", "v.bin");
    const target = `127.0.0.1:${port}`;
    const before = (await describeStream(target, "films/v.bin")).version;
    writeFileSync(join(dir, "media/films/v.bin"), randomBytes(size));
    utimesSync(join(dir, "media/films/v.bin"), new Date(), new Date(Date.now() + 5000));
    const newSha = await sha256File(join(dir, "media/films/v.bin"));
    const end = Date.now() + 60_000;
    while ((await describeStream(target, "films/v.bin").catch(() => undefined))?.version === before) {
      assert.ok(Date.now() < end, "the seeder published the new version");
      await sleep(200);
    }

    const c = dsclient([url("films/v.bin"), "-c"]);
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "v.bin")), newSha);
    const lines = c.stderr().trimEnd().split("\n");
    assert.match(
      lines[0]!,
      /^dsclient: "films\/v\.bin" changed on the tracker since v\.bin\.dspart was kept \(version \d+, \d+ bytes; now version \d+, \d+ bytes\): starting from zero$/,
    );
    assert.match(lines[1]!, /^dsclient: 8\.0 MiB to .*v\.bin in [\d.]+ s/);
    assert.equal(lines.length, 2, c.stderr());
  });

  test("without a terminal and without --quiet, a download prints exactly one summary line", async () => {
    const c = dsclient([url("films/c.bin"), "-o", "c-plain.bin"]);
    assert.equal(await c.exited, 0, c.stderr());
    assert.match(
      c.stderr(),
      /^dsclient: 8\.0 MiB to \/.*\/c-plain\.bin in [\d.]+ s \([\d.]+ MiB\/s\), \d+% from peers\n$/,
    );
    assert.equal(c.stdout(), "");
  });

  test("without -c an interrupted download leaves nothing behind", async () => {
    const c = dsclient([url("films/c.bin"), "-o", "c-gone.bin", "--json", "--max-download-rate", "2M"]);
    await c.waitFor(/"event":"progress"/);
    c.child.kill("SIGTERM");
    assert.equal(await c.exited, 143);
    assert.ok(!["c-gone.bin", "c-gone.bin.dspart", "c-gone.bin.dsclient"].some((f) => existsSync(join(dir, f))));
  });

  test("-c is refused for a live stream, and for standard output, with exit 2", async () => {
    const live = dsclient([url("demo-live"), "-c", "-o", "live.ts"]);
    assert.equal(await live.exited, 2, live.stderr());
    assert.match(live.stderr(), /^dsclient: -c cannot resume "demo-live": it is a live stream/m);
    assert.ok(!existsSync(join(dir, "live.ts")), "nothing written");
    const stdout = dsclient([url("films/c.bin"), "-c", "-o", "-"]);
    assert.equal(await stdout.exited, 2);
    assert.match(stdout.stderr(), /^dsclient: -c cannot resume a download to standard output/m);
    assert.equal(stdout.stdout(), "");
  });

  test("three URLs with -j 2 each land in their own file", async () => {
    mkdirSync(join(dir, "three"));
    const c = dsclient(["-j", "2", "-o", "three", "--json", ...["a", "b", "c"].map((n) => url(`films/${n}.bin`))]);
    assert.equal(await c.exited, 0, c.stderr());
    for (const n of ["a", "b", "c"]) {
      assert.equal(await sha256File(join(dir, "three", `${n}.bin`)), shas.get(`films/${n}.bin`), `${n}.bin`);
    }
    const ev = events(c);
    assert.equal(ev.filter((e) => e.event === "summary" && e.ok === true).length, 3);
    assert.deepEqual(ev.at(-1), { event: "total", ok: true, downloads: 3, failed: [], exitCode: 0 });
  });

  test("a bad name in a list gives its exit code, names it, and the others still complete", async () => {
    mkdirSync(join(dir, "list"));
    writeFileSync(
      join(dir, "urls.txt"),
      `# two films and a typo\n${url("films/a.bin")}\n\n${url("films/nope.bin")}\n${url("films/c.bin")}\n`,
    );
    const c = dsclient(["-i", "urls.txt", "-j", "2", "-o", "list"]);
    assert.equal(await c.exited, 3, c.stderr());
    assert.equal(await sha256File(join(dir, "list/a.bin")), shas.get("films/a.bin"));
    assert.equal(await sha256File(join(dir, "list/c.bin")), shas.get("films/c.bin"));
    assert.ok(!existsSync(join(dir, "list/nope.bin")));
    const lines = c.stderr().trimEnd().split("\n");
    assert.ok(
      lines.includes(`dsclient: ${url("films/nope.bin")}: no stream named "films/nope.bin" on 127.0.0.1:${port}`),
      c.stderr(),
    );
    assert.equal(lines.filter((l) => / MiB to .*list\/[ac]\.bin in /.test(l)).length, 2, c.stderr());
    assert.equal(lines.at(-1), `dsclient: 2 of 3 downloads succeeded; failed: ${url("films/nope.bin")} (exit 3)`);
  });
});
