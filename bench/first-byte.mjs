#!/usr/bin/env node
// Time from a seeder's publish to a viewer's first verified byte, on loopback:
//   node bench/first-byte.mjs [--root DIR] [MiB...]      (default 1024 10240)
// Checksum, tracker and seeder run as separate processes (`distribustream` of DIR, default this
// checkout, so that another build can be measured the same way); the file is sparse (hashing and
// serving it cost what a real one costs once it is in the page cache, without the disk). The
// viewer is the client library in this process: it joins as soon as the name is known and stops at
// its first verified byte. t0 is the seeder's "publishing" log line; ready is the tracker's
// "publish: stream ready"; hashed is the checksum service's "manifest signed" (the whole file hashed).
// Every process started here is stopped by its PID; the files are deleted at the end.
import { spawn } from "node:child_process";
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const rootAt = args.indexOf("--root");
const root = rootAt >= 0 ? args.splice(rootAt, 2)[1] : fileURLToPath(new URL("..", import.meta.url));
const sizes = args.length ? args.map(Number) : [1024, 10240];
const DS = join(root, "cmd/distribustream/bin/distribustream.js");
const { download } = await import(join(root, "packages/client/dist/index.js"));
const { createLogger } = await import(join(root, "packages/runtime/dist/index.js"));
const MiB = 1024 * 1024;

const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });

/** A service process whose JSON log lines are watched: `when(re)` resolves the `time` (ms) of the first match. */
function service(dir, argv) {
  const p = spawn(process.execPath, [DS, ...argv, "--log-level", "info"], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines = [];
  const waiters = [];
  let buf = "";
  p.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) if (w.re.test(line)) w.hit(line);
    }
  });
  let err = "";
  p.stderr.on("data", (d) => (err += d));
  const when = (re) =>
    new Promise((resolve, reject) => {
      const hit = (line) => {
        waiters.splice(waiters.indexOf(w), 1);
        resolve(Date.parse(JSON.parse(line).time));
      };
      const w = { re, hit };
      const seen = lines.find((l) => re.test(l));
      if (seen) return resolve(Date.parse(JSON.parse(seen).time));
      waiters.push(w);
      p.once("exit", (code) => reject(new Error(`${argv[0]} exited ${code}: ${err}`)));
    });
  const stop = () =>
    new Promise((resolve) => {
      if (p.exitCode !== null) return resolve();
      p.once("exit", resolve);
      process.kill(p.pid, "SIGTERM");
    });
  return { when, stop };
}

/** Joins NAME until it is known, stops at the first verified byte; resolves when that came (ms). */
async function firstByte(port, name, dir) {
  const log = createLogger("bench", { level: "silent" });
  for (;;) {
    const ac = new globalThis.AbortController();
    let at;
    try {
      await download({
        url: `pdtp://127.0.0.1:${port}/${name}`,
        output: join(dir, "out.bin"),
        listenHost: "127.0.0.1",
        log,
        signal: ac.signal,
        stallSeconds: 600,
        onProgress: (p) => {
          if (at === undefined && p.bytes > 0) {
            at = Date.now();
            ac.abort();
          }
        },
      });
    } catch (err) {
      if (at !== undefined) return at;
      if (err.exitCode !== 3) throw err;
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    return at ?? Date.now();
  }
}

const rows = [];
for (const mib of sizes) {
  const dir = mkdtempSync(join(tmpdir(), "ds-firstbyte-"));
  mkdirSync(join(dir, "media"));
  const fd = openSync(join(dir, "media/f.bin"), "w");
  ftruncateSync(fd, mib * MiB);
  closeSync(fd);
  const [pdtp, checksumPort, data, m1, m2, m3] = await Promise.all([1, 2, 3, 4, 5, 6].map(freePort));
  const procs = [];
  try {
    const checksum = service(dir, ["checksum", "--port", `${checksumPort}`, "--metrics-port", `${m1}`]);
    procs.push(checksum);
    await checksum.when(/checksum service listening/);
    const tracker = service(dir, [
      "tracker",
      "--insecure-open-seeding",
      ...["--host", "127.0.0.1", "--port", `${pdtp}`, "--checksum", `127.0.0.1:${checksumPort}`],
      ...["--metrics-port", `${m2}`],
    ]);
    procs.push(tracker);
    await tracker.when(/tracker listening/);
    const seeder = service(dir, [
      "seeder",
      ...["--tracker", `127.0.0.1:${pdtp}`, "--media", "media", "--data-host", "127.0.0.1"],
      ...["--data-port", `${data}`, "--metrics-port", `${m3}`],
    ]);
    procs.push(seeder);
    const viewer = firstByte(pdtp, "f.bin", dir);
    const t0 = await seeder.when(/"msg":"publishing"/);
    const ready = await tracker.when(/publish: stream ready/);
    const first = await viewer;
    const hashed = await checksum.when(/manifest signed/);
    rows.push({
      mib,
      publishToReadyS: (ready - t0) / 1000,
      publishToFirstByteS: (first - t0) / 1000,
      publishToFullyHashedS: (hashed - t0) / 1000,
    });
    console.error(JSON.stringify(rows.at(-1)));
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(JSON.stringify({ root, rows }, null, 1));
