import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTestCertificates } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, sha256File, startNode, type Proc } from "../support/procs.js";
import { Services } from "../support/services.js";

/** One line of stderr (a failing command says what is wrong in one line). */
function oneLine(s: string): string {
  const lines = s.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got: ${s}`);
  return lines[0]!;
}

/** Runs dsclient in `dir`; resolves with its exit code, stderr and how long it took. */
async function dsclient(dir: string, args: string[]): Promise<{ code: number; stderr: string; ms: number }> {
  const started = Date.now();
  const c = startNode(DSCLIENT, [...args, "-q"], { cwd: dir });
  const code = await c.exited;
  return { code, stderr: c.stderr(), ms: Date.now() - started };
}

/**
 * TLS on the public PDTP port and on the internal checksum service, all
 * separate processes: a throwaway CA signs a certificate for 127.0.0.1 and
 * localhost; checksum and tracker speak TLS, the tracker reaches the
 * checksum service over TLS (--checksum-ca), the seeder the tracker
 * (pdtps://, --tls-ca), and dsclient downloads over pdtps://. A scheme that
 * does not match the tracker, or a certificate not trusted, ends dsclient at
 * once with exit 8 and a message saying which.
 */
describe("TLS on the PDTP port and the checksum service", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let ca = "";
  let cert = "";
  let key = "";
  let pdtp = 0;
  let plain = 0;
  let checksumPort = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-tls-"));
    mkdirSync(join(dir, "media"));
    mkdirSync(join(dir, "tls"));
    writeFileSync(join(dir, "media/film.bin"), randomBytes(3 * 1024 * 1024 + 77));
    ({ caFile: ca, certFile: cert, keyFile: key } = makeTestCertificates(join(dir, "tls")));
    sys = new Services(dir);
    const [p, q, checksum, data, m1, m2, m3, m4] = await freePorts(8);
    pdtp = p!;
    plain = q!;
    checksumPort = checksum!;
    const tls = ["--tls-cert", cert, "--tls-key", key];
    const checksumProc = await sys.checksum(checksumPort, m1!, tls);
    assert.match(checksumProc.stdout(), /"tls":".*server\.pem"/);
    await sys.tracker({ port: pdtp, checksum: checksumPort, metricsPort: m2!, extra: [...tls, "--checksum-ca", ca] });
    await sys.seeder({
      tracker: `pdtps://127.0.0.1:${pdtp}`,
      dataPort: data!,
      metricsPort: m3!,
      extra: ["--tls-ca", ca],
    });
    // a plaintext tracker, for pdtps:// to a tracker that does not speak TLS
    await sys.tracker({ port: plain, checksum: checksumPort, metricsPort: m4!, extra: ["--checksum-ca", ca] });
  });

  after(async () => {
    await sys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("dsclient downloads over pdtps:// with the private CA, bytes identical", async () => {
    const r = await dsclient(dir, [`pdtps://127.0.0.1:${pdtp}/film.bin`, "--tls-ca", ca, "-o", "film.out"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "", "nothing on stderr (no warning about an IP as TLS server name)");
    assert.equal(await sha256File(join(dir, "film.out")), await sha256File(join(dir, "media/film.bin")));
  });

  test("pdtp:// to the TLS tracker ends at once with exit 8: use pdtps://", async () => {
    const r = await dsclient(dir, [`pdtp://127.0.0.1:${pdtp}/film.bin`, "-o", "x.out"]);
    assert.equal(r.code, 8, r.stderr);
    assert.equal(
      oneLine(r.stderr),
      `dsclient: tracker 127.0.0.1:${pdtp} speaks TLS: use a pdtps:// URL for it (pdtp:// is plaintext)`,
    );
    assert.ok(r.ms < 5_000, `took ${r.ms} ms`);
  });

  test("pdtps:// without the private CA ends at once with exit 8: certificate not trusted", async () => {
    const r = await dsclient(dir, [`pdtps://127.0.0.1:${pdtp}/film.bin`, "-o", "x.out"]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(
      oneLine(r.stderr),
      new RegExp(
        `^dsclient: TLS certificate of tracker 127\\.0\\.0\\.1:${pdtp} not trusted \\(.*certificate.*\\); for a private CA give it with --tls-ca FILE$`,
      ),
    );
    assert.ok(r.ms < 5_000, `took ${r.ms} ms`);
  });

  test("pdtps:// to a plaintext tracker ends at once with exit 8: use pdtp://", async () => {
    const r = await dsclient(dir, [`pdtps://127.0.0.1:${plain}/film.bin`, "--tls-ca", ca, "-o", "x.out"]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(
      oneLine(r.stderr),
      new RegExp(`^dsclient: tracker 127\\.0\\.0\\.1:${plain} does not speak TLS \\(.+\\): use a pdtp:// URL for it`),
    );
    assert.ok(r.ms < 5_000, `took ${r.ms} ms`);
  });

  test("dsclient info and ls over pdtps:// with the private CA; a wrong scheme or an untrusted certificate is exit 8", async () => {
    const run = async (args: string[]) => {
      const c = startNode(DSCLIENT, args, { cwd: dir });
      return { code: await c.exited, stdout: c.stdout(), stderr: c.stderr() };
    };
    const info = await run(["info", `pdtps://127.0.0.1:${pdtp}/film.bin`, "--tls-ca", ca, "--json"]);
    assert.equal(info.code, 0, info.stderr);
    const d = JSON.parse(info.stdout) as { name: string; url: string; networkKeyId: string };
    assert.equal(d.name, "film.bin");
    assert.equal(d.url, `pdtps://127.0.0.1:${pdtp}/film.bin?key=${d.networkKeyId}`);
    const plaintext = await run(["ls", `pdtp://127.0.0.1:${pdtp}`]);
    assert.equal(plaintext.code, 8, plaintext.stderr);
    assert.match(plaintext.stderr, /speaks TLS: use a pdtps:\/\/ URL for it/);
    const untrusted = await run(["ls", `pdtps://127.0.0.1:${pdtp}`]);
    assert.equal(untrusted.code, 8, untrusted.stderr);
    assert.match(untrusted.stderr, /not trusted .*--tls-ca FILE/);
  });

  test("bad TLS settings stop a command at start with exit 2, naming the setting", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["tracker", "--insecure-open-seeding", "--tls-cert", cert],
        /^distribustream: invalid setting tls_key: tls_cert is set, give its private key too$/,
      ],
      [
        ["tracker", "--insecure-open-seeding", "--tls-key", key],
        /^distribustream: invalid setting tls_cert: tls_key is set, give the certificate too$/,
      ],
      [
        ["checksum", "--tls-cert", cert, "--tls-key", ca],
        /^distribustream: invalid setting tls_key from --tls-key: .*ca\.pem holds no PEM private key/,
      ],
      [
        ["tracker", "--insecure-open-seeding", "--tls-cert", ca, "--tls-key", key],
        /^distribustream: invalid setting tls_key: .*server\.key does not go with the certificate in .*ca\.pem/,
      ],
      [
        ["tracker", "--insecure-open-seeding", "--checksum-ca", "missing.pem"],
        /^distribustream: invalid setting checksum_ca from --checksum-ca: cannot read missing\.pem: ENOENT/,
      ],
      [
        ["seeder", "--tracker", "127.0.0.1:6086", "--tls-ca", ca],
        /^distribustream: invalid setting tls_ca: .*ca\.pem is a CA for a pdtps:\/\/ tracker, but the tracker 127\.0\.0\.1:6086 is plaintext$/,
      ],
      [
        ["seeder", "--tracker", "https://x:1"],
        /^distribustream: invalid setting tracker from --tracker: expected HOST:PORT, or pdtps:\/\/HOST:PORT/,
      ],
    ];
    for (const [args, re] of cases) {
      const p = startNode(DISTRIBUSTREAM, args, { cwd: dir });
      assert.equal(await p.exited, 2, `${args.join(" ")}: ${p.stderr()}`);
      assert.match(oneLine(p.stderr()), re);
    }
  });
});

describe("distribustream up with TLS", { timeout: 120_000 }, () => {
  let dir: string;
  let up: Proc;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "ds-up-tls-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/clip.bin"), randomBytes(1024 * 1024 + 3));
  });

  after(async () => {
    if (up) assert.equal(await up.kill("SIGTERM"), 0, up.stderr());
    rmSync(dir, { recursive: true, force: true });
  });

  test("prints pdtps:// URLs, its own seeder publishes, and dsclient downloads from them", async () => {
    mkdirSync(join(dir, "tls"));
    const { caFile, certFile, keyFile } = makeTestCertificates(join(dir, "tls"));
    const [port, data, checksum, metrics] = await freePorts(4);
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`],
        ["--tls-cert", certFile, "--tls-key", keyFile],
      ),
      { cwd: dir },
    );
    const [, url] = await up.waitFor(/npx dsclient '?(pdtps:\/\/localhost:\d+\/clip\.bin[^'\s]*)/, 60_000);
    assert.match(url!, /\?key=[0-9a-f]{32}$/, "the URL pins the network key");
    assert.match(up.stdout(), /DistribuStream is up: tracker pdtps:\/\/localhost:/);
    const r = await dsclient(dir, [url!, "--tls-ca", caFile, "-o", "clip.out"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(dir, "clip.out")), await sha256File(join(dir, "media/clip.bin")));
  });
});
