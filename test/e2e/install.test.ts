import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePorts, ROOT, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * Installing outside the checkout: the package `npm run package` makes,
 * installed with `npm install -g --prefix` into a temporary folder, gives
 * working distribustream, dsseed and dsclient commands that need nothing of
 * the checkout.
 */
describe("npm install -g of the packed package", () => {
  let dir: string;
  let prefix: string;
  let tarball: string;
  const version = (
    JSON.parse(readFileSync(join(ROOT, "cmd/distribustream/package.json"), "utf8")) as { version: string }
  ).version;
  const bin = (name: string) => join(prefix, "bin", name);
  /** Runs an installed command from a folder outside the checkout. */
  const installed = (name: string, args: string[]) =>
    spawnSync(bin(name), args, { cwd: join(dir, "elsewhere"), encoding: "utf8", timeout: 30_000 });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-install-"));
    prefix = join(dir, "prefix");
    mkdirSync(join(dir, "elsewhere"));
    tarball = execFileSync(process.execPath, [join(ROOT, "scripts/pack.mjs"), join(dir, "packed")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      timeout: 120_000,
    }).trim();
    execFileSync("npm", ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", tarball], {
      cwd: join(dir, "elsewhere"),
      stdio: ["ignore", "ignore", "inherit"],
      timeout: 120_000,
    });
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test("the tarball is the version's, holds compiled code only, and installs into the prefix", () => {
    assert.equal(tarball, join(dir, "packed", `distribustream-${version}.tgz`));
    const files = execFileSync("tar", ["tzf", tarball], { encoding: "utf8" }).split("\n");
    assert.ok(files.includes("package/node_modules/@distribustream/client/dist/command.js"), "the client bundled");
    assert.ok(files.includes("package/node_modules/commander/package.json"), "third-party code bundled");
    // (a third-party package installed inside one of ours, where its version differs from the root's, is not ours)
    const ours = files.filter(
      (f) =>
        /^package\/(bin|dist|node_modules\/@distribustream)\//.test(f) &&
        !/^package\/node_modules\/@distribustream\/[^/]+\/node_modules\//.test(f),
    );
    assert.ok(ours.length > 100, `${ours.length} files of ours`);
    assert.deepEqual(
      ours.filter((f) => /\.test\.js$|\.ts$|\.map$|\.tsbuildinfo$/.test(f)),
      [],
      "of ours, no tests, sources, declarations, maps or build info",
    );
    const home = realpathSync(join(prefix, "lib/node_modules/distribustream"));
    assert.ok(home.startsWith(realpathSync(prefix)) && !home.startsWith(ROOT), home);
    const client = realpathSync(join(home, "node_modules/@distribustream/client"));
    assert.ok(client.startsWith(home), `the client is a copy, not a link into the checkout: ${client}`);
  });

  test("dsclient, distribustream and dsseed answer --version with the package's version", () => {
    for (const name of ["dsclient", "distribustream", "dsseed"]) {
      const r = installed(name, ["--version"]);
      assert.deepEqual([r.status, r.stdout, r.stderr], [0, `${version}\n`, ""], name);
    }
    const sub = installed("distribustream", ["tracker", "--version"]);
    assert.deepEqual([sub.status, sub.stdout], [0, `${version}\n`]);
  });

  test("the installed commands work: keys init, and a download from services started from the checkout", async () => {
    const keys = installed("distribustream", ["keys", "init", "--dir", "keys"]);
    assert.equal(keys.status, 0, keys.stderr);
    assert.match(keys.stdout, /^created keys\/network-key\.pem \(network key [0-9a-f]{32}\)$/m);
    const check = installed("distribustream", ["checksum", "--check-config", "--network-key", "keys/network-key.pem"]);
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /^configuration ok\n/);

    const system = join(dir, "system");
    mkdirSync(join(system, "media"), { recursive: true });
    writeFileSync(join(system, "media", "film.bin"), randomBytes(3 << 20));
    const services = new Services(system);
    try {
      const [checksum, checksumMetrics, pdtp, trackerMetrics, data, seederMetrics] = await freePorts(6);
      await services.checksum(checksum!, checksumMetrics!);
      await services.tracker({ port: pdtp!, checksum: checksum!, metricsPort: trackerMetrics! });
      await services.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: data!, metricsPort: seederMetrics! });
      const download = startNode(bin("dsclient"), [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", "film.bin"], {
        cwd: join(dir, "elsewhere"),
      });
      assert.equal(await download.exited, 0, download.stderr());
      assert.equal(
        await sha256File(join(dir, "elsewhere", "film.bin")),
        await sha256File(join(system, "media", "film.bin")),
      );
    } finally {
      await services.stop();
    }
  });
});
