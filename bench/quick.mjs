#!/usr/bin/env node
// Quick on-demand figures on loopback (the full side-by-side harness is its own piece of work):
//   node bench/quick.mjs single [MiB]        one dsclient from `distribustream up` vs curl from nginx
//   node bench/quick.mjs memory [MiB...]     peak RSS of dsclient writing to a pipe
//   node bench/quick.mjs chunks [MiB] [N]    N clients at 64 KiB / 256 KiB / 1 MiB chunks: time, seeder copies, control/data
// Every process started here is stopped by its PID; all traffic stays on 127.0.0.1.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, closeSync, writeSync, rmSync, writeFileSync } from "node:fs";
import { randomFillSync } from "node:crypto";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const DS = join(root, "cmd/distribustream/bin/distribustream.js");
const DSCLIENT = join(root, "packages/client/bin/dsclient.js");
const MiB = 1024 * 1024;

const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });

function randomFile(path, mib) {
  const fd = openSync(path, "w");
  const buf = Buffer.alloc(MiB);
  for (let i = 0; i < mib; i++) writeSync(fd, randomFillSync(buf));
  closeSync(fd);
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], ...opts });
    let err = "";
    c.stderr.on("data", (d) => (err += d));
    c.on("exit", (code) => resolve({ code, ms: Number(process.hrtime.bigint() - t0) / 1e6, stderr: err }));
  });
}

async function startUp(dir, extra = []) {
  const [port, data, checksum, metrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const p = spawn(
    process.execPath,
    [
      DS,
      "up",
      "--media",
      "media",
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
      "--data-port",
      `${data}`,
      "--checksum-port",
      `${checksum}`,
      "--metrics-port",
      `${metrics}`,
      "--log-level",
      "warn",
      ...extra,
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise((resolve, reject) => {
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
      if (/npx dsclient/.test(out)) resolve();
    });
    p.on("exit", () => reject(new Error("up exited: " + out)));
  });
  return { port, metrics: `http://127.0.0.1:${metrics}/metrics`, stop: () => p.kill("SIGTERM") };
}

async function metric(url, name, label = "") {
  const text = await (await fetch(url)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(name) && l.includes(label) && !l.startsWith("#"))
    .reduce((s, l) => s + Number(l.split(" ").at(-1)), 0);
}

const [mode = "single", ...rest] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), "ds-bench-"));
mkdirSync(join(dir, "media"));
try {
  if (mode === "single") {
    const mib = Number(rest[0] ?? 1024);
    randomFile(join(dir, "media/f.bin"), mib);
    const up = await startUp(dir);
    const ngPort = await freePort();
    writeFileSync(
      join(dir, "nginx.conf"),
      `daemon off; user root; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err; events {} http { access_log off; sendfile on; server { listen 127.0.0.1:${ngPort}; root ${dir}/media; } }`,
    );
    const ng = spawn("nginx", ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    const rows = [];
    for (let i = 0; i < 3; i++) {
      const d = await run(process.execPath, [
        DSCLIENT,
        `pdtp://127.0.0.1:${up.port}/f.bin`,
        "-o",
        join(dir, `d${i}.bin`),
        "-q",
      ]);
      const c = await run("curl", ["-sf", "-o", join(dir, `c${i}.bin`), `http://127.0.0.1:${ngPort}/f.bin`]);
      if (d.code !== 0 || c.code !== 0) throw new Error(`dsclient exit ${d.code} ${d.stderr}, curl exit ${c.code}`);
      rows.push({ dsclient: (mib / d.ms) * 1000, curl: (mib / c.ms) * 1000 });
      rmSync(join(dir, `d${i}.bin`));
      rmSync(join(dir, `c${i}.bin`));
    }
    ng.kill("SIGTERM");
    up.stop();
    const med = (k) => rows.map((r) => r[k]).sort((a, b) => a - b)[1];
    console.log(
      JSON.stringify({
        mode,
        mib,
        runs: rows,
        medianMBps: { dsclient: med("dsclient"), curl: med("curl") },
        ratio: med("dsclient") / med("curl"),
      }),
    );
  } else if (mode === "memory") {
    const sizes = rest.length ? rest.map(Number) : [64, 1024];
    for (const s of sizes) randomFile(join(dir, `media/m${s}.bin`), s);
    const up = await startUp(dir);
    const out = {};
    for (const s of sizes) {
      const r = execFileSync(
        "sh",
        [
          "-c",
          `/usr/bin/time -f %M "${process.execPath}" ${process.env.NODE_FLAGS ?? ""} "${DSCLIENT}" pdtp://127.0.0.1:${up.port}/m${s}.bin -o - -q 2>&1 >/dev/null | tail -1`,
        ],
        { encoding: "utf8" },
      );
      out[`${s}MiB`] = Number(r.trim()) / 1024;
    }
    up.stop();
    console.log(JSON.stringify({ mode, peakRssMB: out }));
  } else if (mode === "chunks") {
    const mib = Number(rest[0] ?? 256);
    const n = Number(rest[1] ?? 5);
    randomFile(join(dir, "media/f.bin"), mib);
    const results = [];
    for (const cs of [64 * 1024, 256 * 1024, 1024 * 1024]) {
      rmSync(join(dir, ".distribustream"), { recursive: true, force: true });
      const up = await startUp(dir, ["--chunk-size", `${cs}`]);
      const seederBefore = await metric(up.metrics, "pdtp_dataplane_sent_bytes_total"); // the checksum service's read
      const t0 = Date.now();
      const rs = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          run(process.execPath, [
            DSCLIENT,
            `pdtp://127.0.0.1:${up.port}/f.bin`,
            "-o",
            join(dir, `o${i}.bin`),
            "-q",
            "--linger",
            "2",
          ]),
        ),
      );
      const ms = Date.now() - t0 - 2000;
      const control = await metric(up.metrics, "pdtp_tracker_control_bytes_total");
      const delivered = await metric(up.metrics, "pdtp_tracker_delivered_bytes_total");
      const seeder = (await metric(up.metrics, "pdtp_dataplane_sent_bytes_total")) - seederBefore;
      up.stop();
      results.push({
        chunkKiB: cs / 1024,
        ok: rs.every((r) => r.code === 0),
        allDoneS: ms / 1000,
        seederCopies: seeder / (mib * MiB),
        controlOverData: control / delivered,
      });
      await new Promise((r) => setTimeout(r, 500));
    }
    console.log(JSON.stringify({ mode, mib, clients: n, results }, null, 1));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
