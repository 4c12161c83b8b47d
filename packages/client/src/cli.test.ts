import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

const CLI = fileURLToPath(new URL("./cli.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "dsclient-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "not-a-cert.txt"), "hello\n");

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function oneLine(s: string): string {
  const lines = s.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got: ${s}`);
  return lines[0]!;
}

test("--help documents usage and the exit codes", async () => {
  const r = await run(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: dsclient \[options\] <url\.\.\.>/);
  for (const flag of ["-c, --continue", "-i, --input-file", "-j, --jobs", "--json"])
    assert.ok(r.stdout.includes(flag), flag);
  for (const code of ["0", "1", "2", "3", "4", "5", "6", "7", "8"])
    assert.match(r.stdout, new RegExp(`^  ${code}  `, "m"));
});

test("usage errors exit 2 with one line naming the problem", async () => {
  const cases: [string[], RegExp, Record<string, string>?][] = [
    [["--bogus", "pdtp://h/x"], /^dsclient: unknown option '--bogus'$/],
    [[], /^dsclient: missing URL/],
    [["http://127.0.0.1/x"], /^dsclient: unsupported scheme "http:"/],
    [["pdtp://h/a/../b"], /^dsclient: stream name .* segment/],
    [["pdtp://h/x", "--linger", "soon"], /^dsclient: invalid setting linger from --linger/],
    [["pdtp://h/x", "--listen-port", "70000"], /^dsclient: invalid setting listen_port from --listen-port/],
    [["pdtp://h/x", "--log-level", "loud"], /^dsclient: invalid setting log_level/],
    [["pdtp://h/x", "--max-download-rate", "fast"], /^dsclient: invalid setting max_download_rate .*not a rate/],
    [
      ["pdtp://h/x"],
      /^dsclient: invalid setting connect_attempts from DS_CONNECT_ATTEMPTS/,
      { DS_CONNECT_ATTEMPTS: "0" },
    ],
    [["pdtp://h/x", "--url", "pdtp://h/y"], /^dsclient: two different URLs/],
    [["pdtps://h/x", "--tls-ca", "missing.pem"], /^dsclient: invalid setting tls_ca: cannot read missing.pem: ENOENT$/],
    [["pdtps://h/x", "--tls-ca", "not-a-cert.txt"], /^dsclient: invalid setting tls_ca: not-a-cert.txt holds no PEM/],
    [["pdtps://h/x"], /^dsclient: invalid setting tls_ca: cannot read nope.pem: ENOENT$/, { DS_TLS_CA: "nope.pem" }],
    [["pdtp://h/x", "extra"], /^dsclient: not a URL: "extra" .*\(argument 2\)$/],
    [
      ["pdtp://h/a.bin", "pdtp://h/b/a.bin"],
      /^dsclient: pdtp:\/\/h\/a\.bin and pdtp:\/\/h\/b\/a\.bin would both write .*a\.bin$/,
    ],
    [
      ["-o", "not-a-cert.txt", "pdtp://h/a", "pdtp://h/b"],
      /^dsclient: -o not-a-cert\.txt with 2 URLs: give a directory/,
    ],
    [["-o", "-", "pdtp://h/a", "pdtp://h/b"], /^dsclient: -o - with 2 URLs: give a directory/],
    [["-i", "no-such-list.txt"], /^dsclient: cannot read the URL list no-such-list\.txt: ENOENT$/],
    [["--url", "pdtp://h/a", "pdtp://h/b", "pdtp://h/c"], /^dsclient: --url takes one URL/],
    [
      ["-j", "2", "--listen-port", "9000", "pdtp://h/a", "pdtp://h/b"],
      /^dsclient: listen_port 9000 with 2 downloads at once/,
    ],
    [["-j", "0", "pdtp://h/x"], /^dsclient: invalid setting jobs from --jobs/],
    [["-c", "-o", "-", "pdtp://127.0.0.1:1/x"], /^dsclient: -c cannot resume a download to standard output/],
    [["pdtp://h/x"], /^dsclient: invalid setting continue from DS_CONTINUE/, { DS_CONTINUE: "perhaps" }],
    [["pdtp://h/x", "--prebuffer", "soon"], /^dsclient: invalid setting prebuffer from --prebuffer/],
    [["pdtp://h/x", "--prebuffer", "-1"], /^dsclient: invalid setting prebuffer from --prebuffer/],
    [["pdtp://h/x", "--prebuffer", "0.5"], /^dsclient: invalid setting prebuffer from --prebuffer/],
    [["pdtp://h/x"], /^dsclient: invalid setting prebuffer from DS_PREBUFFER/, { DS_PREBUFFER: "999999" }],
    [["pdtp://h/x"], /^dsclient: invalid setting from_start from DS_FROM_START/, { DS_FROM_START: "maybe" }],
  ];
  await Promise.all(
    cases.map(async ([args, re, env]) => {
      const r = await run(args, env);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), re);
      assert.equal(r.stdout, "");
    }),
  );
});

test("--tls-ca with a plaintext pdtp:// URL is a usage error", async () => {
  const ca = join(dir, "ca.pem");
  writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  const r = await run(["pdtp://h/x", "--tls-ca", ca]);
  assert.equal(r.code, 2);
  assert.match(oneLine(r.stderr), /tls_ca is for pdtps:\/\/ URLs \(TLS\), but "pdtp:\/\/h\/x" is plaintext/);
});

test("a --conf file with an unknown key is a usage error naming it", async () => {
  const conf = join(dir, "c.yml");
  writeFileSync(conf, "listen_port: 9000\nfile_root: media\n");
  const r = await run(["pdtp://h/x", "--conf", conf]);
  assert.equal(r.code, 2);
  assert.match(oneLine(r.stderr), /unknown setting "file_root"/);
});

test("an unreachable tracker exits 4 after the bounded attempts", async () => {
  const started = Date.now();
  const r = await run(["pdtp://127.0.0.1:1/x.bin", "--connect-attempts", "2", "-o", "-"]);
  assert.equal(r.code, 4, r.stderr);
  assert.equal(oneLine(r.stderr), "dsclient: tracker 127.0.0.1:1 unreachable after 2 attempts (connect ECONNREFUSED)");
  assert.equal(r.stdout, "", "nothing on stdout");
  assert.ok(Date.now() - started >= 500, "waited the 0.5 s backoff between the attempts");
});

test("--url works like the argument (the original's form)", async () => {
  const r = await run(["--url", "pdtp://127.0.0.1:1/x.bin"], { DS_CONNECT_ATTEMPTS: "1" });
  assert.equal(r.code, 4);
  assert.match(oneLine(r.stderr), /unreachable after 1 attempt \(/);
});

test("-i reads URLs from a file or standard input, skipping blank lines and # comments; a bad line is named", async () => {
  writeFileSync(join(dir, "urls.txt"), "# films\n\n  pdtp://h/a.bin  \nhttp://h/b.bin\n");
  const r = await run(["-i", "urls.txt"]);
  assert.equal(r.code, 2);
  assert.match(oneLine(r.stderr), /^dsclient: unsupported scheme "http:" .*\(urls\.txt:4\)$/);
});

test("several URLs: one exit status, the first failure's; a line names each URL that failed", async () => {
  const r = await run(
    ["-j", "2", "pdtp://127.0.0.1:1/a.bin", "pdtp://127.0.0.1:1/b.bin", "--connect-attempts", "1"],
    {},
  );
  assert.equal(r.code, 4, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 3, r.stderr);
  assert.ok(
    lines.includes(
      "dsclient: pdtp://127.0.0.1:1/a.bin: tracker 127.0.0.1:1 unreachable after 1 attempt (connect ECONNREFUSED)",
    ),
  );
  assert.ok(
    lines.includes(
      "dsclient: pdtp://127.0.0.1:1/b.bin: tracker 127.0.0.1:1 unreachable after 1 attempt (connect ECONNREFUSED)",
    ),
  );
  assert.equal(
    lines[2],
    "dsclient: 0 of 2 downloads succeeded; failed: pdtp://127.0.0.1:1/a.bin (exit 4), pdtp://127.0.0.1:1/b.bin (exit 4)",
  );
});

test("--json: a failure is one summary object with the exit code and the error", async () => {
  const r = await run(["--json", "pdtp://127.0.0.1:1/x.bin", "--connect-attempts", "1"]);
  assert.equal(r.code, 4);
  const e = JSON.parse(oneLine(r.stderr)) as Record<string, unknown>;
  assert.deepEqual(
    { event: e.event, url: e.url, ok: e.ok, exitCode: e.exitCode, error: e.error, bytes: e.bytes },
    {
      event: "summary",
      url: "pdtp://127.0.0.1:1/x.bin",
      ok: false,
      exitCode: 4,
      error: "tracker 127.0.0.1:1 unreachable after 1 attempt (connect ECONNREFUSED)",
      bytes: 0,
    },
  );
});
