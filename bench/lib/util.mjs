import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { closeSync, createReadStream, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const DS = join(root, "cmd/distribustream/bin/distribustream.js");
export const DSCLIENT = join(root, "packages/client/bin/dsclient.js");
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

// picked outside the ephemeral range, where a connection elsewhere on the machine cannot take it first
export { freePort } from "@distribustream/swarm-store/testing";

/** A file of `bytes` random bytes (1 MiB blocks of fresh randomness). */
export function randomFile(path, bytes) {
  const fd = openSync(path, "w");
  const buf = Buffer.alloc(MiB);
  for (let left = bytes; left > 0; left -= MiB) writeSync(fd, randomFillSync(buf), 0, Math.min(MiB, left));
  closeSync(fd);
}

export async function sha256File(path) {
  const h = createHash("sha256");
  for await (const piece of createReadStream(path, { highWaterMark: MiB })) h.update(piece);
  return h.digest("hex");
}

export const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** Nearest-rank percentile. */
export const percentile = (xs, p) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
};

export const round = (x, digits = 3) => (typeof x === "number" && Number.isFinite(x) ? +x.toFixed(digits) : null);
export const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && b > 0 ? round(a / b, 3) : null);

/** "8M" -> bytes/s (as dsclient --max-download-rate reads it); "0" -> 0 (no limit). */
export function parseRate(text) {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)$/i.exec(String(text).trim());
  if (!m) throw new Error(`"${text}" is not a rate (examples: 8M, 500K, 1048576, 0 for none)`);
  return Math.round(Number(m[1]) * { "": 1, K: 1024, M: MiB, G: GiB }[m[2].toUpperCase()]);
}

/** A bitrate as encoders write it, decimal: "2M" -> 2 000 000 bits/s, "1500k" -> 1 500 000. */
export function parseBits(text) {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)$/.exec(String(text).trim());
  if (!m) throw new Error(`"${text}" is not a bitrate in bits/s (examples: 2M, 1500k, 64000)`);
  return Math.round(Number(m[1]) * { "": 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()]);
}

/** "256M"/"1G"/"4096K"/"1048576" -> bytes; a plain number without unit means MiB. */
export function parseSize(text) {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)i?B?$/i.exec(String(text).trim());
  if (!m) throw new Error(`"${text}" is not a size (examples: 256M, 1G, 64K)`);
  const unit = m[2] ? { K: 1024, M: MiB, G: GiB }[m[2].toUpperCase()] : MiB;
  return Math.round(Number(m[1]) * unit);
}

export function which(cmd) {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = join(dir || ".", cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function firstLine(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] || undefined;
}

function npmVersion(dir, name) {
  try {
    return JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

export function machine() {
  const cpus = os.cpus();
  let osName;
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1];
  } catch {
    /* unknown */
  }
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model,
    cpus: cpus.length,
    memoryGiB: round(os.totalmem() / GiB, 1),
    kernel: os.release(),
    os: osName,
    loadAverageAtStart: os.loadavg().map((x) => round(x, 2)),
  };
}

export function versions(anchorsDir) {
  let commit;
  try {
    commit = execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], {
      encoding: "utf8",
    }).trim();
    if (dirty) commit += "+dirty";
  } catch {
    /* not a git checkout */
  }
  const v = {
    node: process.version,
    distribustream: JSON.parse(readFileSync(join(root, "cmd/distribustream/package.json"), "utf8")).version,
    commit,
  };
  if (which("aria2c")) v.aria2 = firstLine("aria2c", ["--version"]);
  if (which("nginx")) v.nginx = firstLine("nginx", ["-v"]);
  if (which("curl")) v.curl = firstLine("curl", ["--version"]);
  if (which("sha256sum")) v.sha256sum = firstLine("sha256sum", ["--version"]);
  if (which("redis-server")) v.redis = firstLine("redis-server", ["--version"]);
  if (which("ffmpeg")) v.ffmpeg = firstLine("ffmpeg", ["-version"]);
  for (const n of ["webtorrent", "bittorrent-tracker", "create-torrent"]) {
    const x = npmVersion(anchorsDir, n);
    if (x) v[n] = x;
  }
  return v;
}
