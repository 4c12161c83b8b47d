// The anchors the scenarios compare DistribuStream with, how they are installed and why one is skipped.
// npm anchors (webtorrent, bittorrent-tracker, create-torrent) go into bench/anchors/webtorrent with their
// own package.json and lock file, installed on demand with --ignore-scripts (WebRTC is stubbed out: the
// benchmark runs BitTorrent over TCP); the others are Debian packages (aria2, nginx-light, curl, time, ffmpeg).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { root, which } from "./util.mjs";

export const ANCHORS_DIR = join(root, "bench/anchors/webtorrent");
export const DEBIAN_PACKAGES = {
  aria2c: "aria2",
  nginx: "nginx-light",
  curl: "curl",
  "/usr/bin/time": "time",
  ip: "iproute2", // brings loopback up in the harness's own network namespace
  ffmpeg: "ffmpeg", // the live scenario's source and HLS segmenter
};

const npmInstalled = () =>
  ["webtorrent", "bittorrent-tracker", "create-torrent"].every((n) =>
    existsSync(join(ANCHORS_DIR, "node_modules", n, "package.json")),
  );

/** Installs the npm anchors into bench/anchors/webtorrent (network needed). Returns an error message or undefined. */
export function installNpmAnchors(log = console.error) {
  if (npmInstalled()) return undefined;
  log(`bench: installing the BitTorrent anchors into ${ANCHORS_DIR} (npm ci --ignore-scripts)`);
  try {
    execFileSync("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], {
      cwd: ANCHORS_DIR,
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 10 * 60_000,
    });
  } catch (err) {
    return `npm ci in bench/anchors/webtorrent failed: ${`${err.stderr ?? err.message}`.trim().split("\n").slice(-3).join(" ")}`;
  }
  return npmInstalled() ? undefined : "npm ci finished but the packages are not there";
}

/** Installs the Debian packages that are missing (apt-get, as root). Returns what it could not do. */
export function installDebianPackages(log = console.error) {
  const missing = Object.entries(DEBIAN_PACKAGES)
    .filter(([bin]) => !(bin.startsWith("/") ? existsSync(bin) : which(bin)))
    .map(([, pkg]) => pkg);
  if (missing.length === 0) return undefined;
  if (process.getuid?.() !== 0 || !which("apt-get")) {
    return `missing ${missing.join(", ")}: install them with apt-get install -y ${missing.join(" ")} (as root)`;
  }
  log(`bench: apt-get install -y ${missing.join(" ")}`);
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
    execFileSync("apt-get", ["install", "-y", "-qq", ...missing], { stdio: "inherit", env });
  } catch (err) {
    return `apt-get install ${missing.join(" ")} failed: ${err.message}`;
  }
  return undefined;
}

/** Why each system cannot run here (undefined: it can). */
export function availability() {
  const npm = npmInstalled()
    ? undefined
    : "npm anchors not installed in bench/anchors/webtorrent (run: npm run bench -- setup)";
  const bin = (b, pkg) => (which(b) ? undefined : `${b} not found (Debian package ${pkg})`);
  return {
    ds: existsSync(join(root, "cmd/distribustream/dist/main.js")) ? undefined : "not built (run: npm run build)",
    webtorrent: npm,
    aria2: bin("aria2c", "aria2") ?? (npm ? `${npm}; aria2 uses its bittorrent-tracker and create-torrent` : undefined),
    http: bin("nginx", "nginx-light") ?? bin("curl", "curl"),
    time: existsSync("/usr/bin/time") ? undefined : "/usr/bin/time not found (Debian package time)",
    redis:
      which("redis-server") && which("redis-cli")
        ? undefined
        : "redis-server/redis-cli not found (Debian package redis-server)",
    sha256sum: which("sha256sum") ? undefined : "sha256sum not found (Debian package coreutils)",
    ffmpeg: bin("ffmpeg", "ffmpeg"),
    hls: bin("nginx", "nginx-light") ?? bin("ffmpeg", "ffmpeg"),
  };
}
