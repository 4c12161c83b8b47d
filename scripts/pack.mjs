#!/usr/bin/env node
// Packs DistribuStream as one npm package, distribustream-VERSION.tgz, that installs
// outside the checkout: `npm install -g distribustream-VERSION.tgz` gives the commands
// distribustream, dsseed and dsclient.
//
// The package is cmd/distribustream (the `distribustream` command). The workspaces it
// runs on (@distribustream/*) are private and on no registry, so they travel inside the
// tarball, as bundled dependencies: each one's compiled code and what it serves, the
// files the container image takes (scripts/image-files.mjs). npm bundles a dependency
// with its whole dependency tree, so the third-party packages are bundled too: the
// production tree of package-lock.json, installed here as the image's is (npm ci
// --omit=dev --ignore-scripts). The tarball is thus self-contained: an install asks no
// registry for anything, gets the versions the tests ran with, and runs no install
// script. Every workspace has the same version, the package's.
//   node scripts/pack.mjs [OUT]   writes OUT/distribustream-VERSION.tgz (default OUT: .)
//                                 and prints its path; build first (npm run build)
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { copyRunnable, runnableWorkspaces } from "./image-files.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = resolve(process.argv[2] ?? ".");
const TOP = "cmd/distribustream";
const SCOPE = "@distribustream/";

const fail = (msg) => {
  console.error(`pack: ${msg}`);
  process.exit(1);
};
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));

const rootPkg = readJson(join(root, "package.json"));
const workspaces = runnableWorkspaces().map((ws) => ({ ws, pkg: readJson(join(root, ws, "package.json")) }));
const top = workspaces.find((w) => w.ws === TOP) ?? fail(`${TOP} is not a workspace`);
const bundled = workspaces.filter((w) => w !== top);
const version = top.pkg.version;

// one version for everything, and every third-party dependency pinned once
const dependencies = {};
for (const { ws, pkg } of workspaces) {
  if (pkg.version !== version)
    fail(`${ws} is version ${pkg.version}, ${TOP} ${version}: give every workspace one version`);
  for (const [name, spec] of Object.entries(pkg.dependencies ?? {})) {
    if (name.startsWith(SCOPE)) {
      if (!bundled.some((b) => b.pkg.name === name)) fail(`${ws} depends on ${name}, which is no workspace`);
    } else if (dependencies[name] !== undefined && dependencies[name] !== spec) {
      fail(`${name} is pinned at ${dependencies[name]} and at ${spec} (${ws}): pin one version`);
    } else {
      dependencies[name] = spec;
    }
  }
}

const work = mkdtempSync(join(tmpdir(), "ds-pack-"));
const stage = join(work, "package");
try {
  // the production dependency tree of the lockfile, as the image's deps stage makes it
  const deps = join(work, "deps");
  for (const file of ["package.json", "package-lock.json"]) cpSync(join(root, file), join(deps, file));
  for (const ws of rootPkg.workspaces) cpSync(join(root, ws, "package.json"), join(deps, ws, "package.json"));
  execFileSync("npm", ["ci", "--omit=dev", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], {
    cwd: deps,
    stdio: ["ignore", "ignore", "inherit"],
  });
  copyRunnable(TOP, stage);
  renameSync(join(deps, "node_modules"), join(stage, "node_modules"));
  // workspace links (and npm's own bookkeeping) out; the workspaces' files in, as real folders
  for (const { pkg } of workspaces) rmSync(join(stage, "node_modules", pkg.name), { recursive: true, force: true });
  rmSync(join(stage, "node_modules", "@distribustream"), { recursive: true, force: true });
  rmSync(join(stage, "node_modules", ".bin"), { recursive: true, force: true });
  rmSync(join(stage, "node_modules", ".package-lock.json"), { force: true });
  for (const { ws, pkg } of bundled) {
    const dest = join(stage, "node_modules", pkg.name);
    copyRunnable(ws, dest);
    const { devDependencies: _dev, scripts: _scripts, ...kept } = pkg;
    writeFileSync(join(dest, "package.json"), JSON.stringify(kept, null, 2) + "\n");
    if (existsSync(join(deps, ws, "node_modules"))) {
      cpSync(join(deps, ws, "node_modules"), join(dest, "node_modules"), { recursive: true, verbatimSymlinks: true });
    }
  }
  // a command package: no library entry points (the workspace declares some for the build)
  const { devDependencies: _d, scripts: _s, private: _p, main: _m, types: _t, exports: _e, ...topPkg } = top.pkg;
  const manifest = {
    ...topPkg,
    description: rootPkg.description,
    license: rootPkg.license,
    engines: rootPkg.engines,
    bin: { ...top.pkg.bin, dsclient: "./bin/dsclient.js" },
    dependencies: {
      ...Object.fromEntries(Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b))),
      ...Object.fromEntries(bundled.map(({ pkg }) => [pkg.name, version])),
    },
    bundleDependencies: true,
  };
  for (const bin of Object.values(manifest.bin)) {
    if (!existsSync(join(stage, bin))) fail(`bin ${bin} is missing from ${TOP}`);
    chmodSync(join(stage, bin), 0o755);
  }
  writeFileSync(join(stage, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
  mkdirSync(out, { recursive: true });
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", out], {
      cwd: stage,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const file = join(out, packed[0].filename);
  console.error(`pack: ${packed[0].entryCount} files, ${(packed[0].size / 1e6).toFixed(1)} MB`);
  console.log(file);
} finally {
  rmSync(work, { recursive: true, force: true });
}
