import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/** A human log line: local time, level, who logs, the message. */
const HUMAN = /^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) [\w/ -]+: \S/;

/** The lines of `text` that are log records, in either format (the rest is what the command prints itself). */
function logLines(text: string): string[] {
  return text.split(/\r?\n/).filter((l) => l.startsWith("{") || HUMAN.test(l));
}

function assertHuman(text: string, what: string): string[] {
  const lines = logLines(text);
  assert.ok(lines.length >= 1, `${what}: log lines expected in:\n${text}`);
  for (const line of lines) {
    assert.match(line, HUMAN, `${what}: a human line`);
    assert.throws(() => JSON.parse(line) as unknown, SyntaxError, `${what}: no JSON: ${line}`);
  }
  return lines;
}

function assertJson(text: string, what: string): void {
  const lines = logLines(text);
  assert.ok(lines.length >= 2, `${what}: log lines expected in:\n${text}`);
  for (const line of lines) {
    const rec = JSON.parse(line) as { msg?: unknown; level?: unknown; time?: unknown };
    assert.equal(typeof rec.msg, "string", `${what}: ${line}`);
    assert.equal(typeof rec.level, "number");
  }
}

/**
 * Runs `node script args` on a pseudo-terminal (util-linux `script`), as a
 * person at a terminal does, and resolves with everything the terminal
 * showed once it ended: by itself, or by SIGTERM once the terminal shows
 * `stopAt` (its PID is printed first for that).
 */
function onTerminal(cwd: string, script: string, args: string[], stopAt?: RegExp) {
  const quoted = [process.execPath, script, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  const child = spawn("script", ["-qfec", `${quoted} & echo "PID=$!"; wait $!`, "/dev/null"], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  const exited = new Promise<void>((r) => child.on("close", () => r()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const poll = setInterval(() => {
    if (!stopAt?.test(out)) return;
    clearInterval(poll);
    const pid = Number(/PID=(\d+)/.exec(out)?.[1]);
    process.kill(pid, "SIGTERM");
  }, 100);
  return exited.then(() => {
    clearInterval(poll);
    clearTimeout(timer);
    return out;
  });
}

describe("log formats", () => {
  let dir: string;
  let services: Services;
  let redis: TestRedis;
  let tracker = "";
  let ports: number[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-logs-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media", "a.bin"), randomBytes(1 << 20));
    services = new Services(dir);
    redis = await redisForTests();
    ports = await freePorts(16);
  });

  after(async () => {
    await services.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("piped, every service logs JSON; --log-format, DS_LOG_FORMAT and log_format make it human lines", async () => {
    const [checksum, checksumMetrics, pdtp, trackerMetrics, data, seederMetrics, dash] = ports;
    tracker = `127.0.0.1:${pdtp}`;
    const json = await services.checksum(checksum!, checksumMetrics!);
    const human = services.start(
      ["tracker", "--host", "127.0.0.1", "--port", `${pdtp}`, "--insecure-open-seeding"].concat([
        "--checksum",
        `127.0.0.1:${checksum}`,
        "--metrics-port",
        `${trackerMetrics}`,
        "--log-format",
        "pretty",
      ]),
    );
    await human.waitFor(/INFO {2}tracker: tracker listening host=127\.0\.0\.1 port=\d+/);
    writeFileSync(join(dir, "seeder.yml"), "log_format: pretty\n");
    const seeder = startNode(
      DISTRIBUSTREAM,
      ["seeder", "--tracker", tracker, "--media", "media", "--data-host", "127.0.0.1", "--data-port", `${data}`].concat(
        ["--metrics-port", `${seederMetrics}`, "--conf", "seeder.yml", "--log-level", "info"],
      ),
      { cwd: dir },
    );
    services.procs.push(seeder);
    await seeder.waitFor(/INFO {2}seeder: published: ready/);
    const dashboard = startNode(DISTRIBUSTREAM, ["dashboard", "--port", `${dash}`, "--redis", redis.url], {
      cwd: dir,
      env: { DS_LOG_FORMAT: "pretty", DS_LOG_LEVEL: "info" },
    });
    services.procs.push(dashboard);
    await dashboard.waitFor(/INFO {2}dashboard: swarm store opened store=redis:\/\//);

    assertJson(json.stdout(), "checksum, piped, no setting");
    assertHuman(human.stdout(), "tracker --log-format pretty");
    assertHuman(seeder.stdout(), "seeder, log_format: pretty in --conf");
    assertHuman(dashboard.stdout(), "dashboard, DS_LOG_FORMAT=pretty");
    // --log-format json wins over DS_LOG_FORMAT (flags win over the environment)
    const flagWins = startNode(
      DISTRIBUSTREAM,
      ["checksum", "--port", "0", "--metrics-port", "0", "--log-format", "json"],
      {
        cwd: dir,
        env: { DS_LOG_FORMAT: "pretty" },
      },
    );
    await flagWins.waitFor(/checksum service listening/);
    assert.equal(await flagWins.kill("SIGTERM"), 0);
    assertJson(flagWins.stdout(), "checksum --log-format json with DS_LOG_FORMAT=pretty");
  });

  test("dsclient: JSON on a piped stderr by default, human lines with --log-format pretty; the file is intact", async () => {
    const json = startNode(DSCLIENT, [`pdtp://${tracker}/a.bin`, "-o", "a1.bin", "--log-level", "info"], { cwd: dir });
    assert.equal(await json.exited, 0, json.stderr());
    assertJson(json.stderr(), "dsclient, piped");
    const human = startNode(DSCLIENT, [`pdtp://${tracker}/a.bin`, "-o", "a2.bin", "--log-level", "info"], {
      cwd: dir,
      env: { DS_LOG_FORMAT: "pretty" },
    });
    assert.equal(await human.exited, 0, human.stderr());
    const lines = assertHuman(human.stderr(), "dsclient, DS_LOG_FORMAT=pretty");
    assert.ok(
      lines.some((l) => /INFO {2}dsclient: done /.test(l)),
      lines.join("\n"),
    );
    const want = await sha256File(join(dir, "media", "a.bin"));
    assert.equal(await sha256File(join(dir, "a1.bin")), want);
    assert.equal(await sha256File(join(dir, "a2.bin")), want);
  });

  test("on a terminal, up and dsclient log human lines without being asked", async () => {
    const [port, data, checksum, metrics, dash] = ports.slice(8);
    const up = await onTerminal(
      dir,
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`, "--dashboard-port", `${dash}`],
        ["--data-dir", "up-data", "--live", "cam=media/a.bin", "--live-bitrate", "2M"],
      ),
      /DistribuStream is up/,
    );
    const lines = assertHuman(up, "up on a terminal");
    assert.ok(
      lines.some((l) => /INFO {2}distribustream\/tracker: tracker listening /.test(l)),
      lines.join("\n"),
    );
    const client = await onTerminal(dir, DSCLIENT, [
      `pdtp://${tracker}/a.bin`,
      "-o",
      "a3.bin",
      "--log-level",
      "info",
      "--quiet",
    ]);
    const clientLines = assertHuman(client, "dsclient on a terminal");
    assert.ok(
      clientLines.some((l) => /INFO {2}dsclient: done /.test(l)),
      client,
    );
  });

  test("a bad log format is exit 2 naming the setting and where it came from", async () => {
    const flag = startNode(DISTRIBUSTREAM, ["tracker", "--check-config", "--log-format", "xml"], { cwd: dir });
    assert.equal(await flag.exited, 2);
    assert.equal(
      flag.stderr(),
      'distribustream: invalid setting log_format from --log-format: Invalid option: expected one of "json"|"pretty" (got "xml")\n',
    );
    writeFileSync(join(dir, "bad.yml"), "log_format: 3\n");
    const yaml = startNode(DISTRIBUSTREAM, ["checksum", "--conf", "bad.yml"], { cwd: dir });
    assert.equal(await yaml.exited, 2);
    assert.match(
      yaml.stderr(),
      /^distribustream: invalid setting log_format from "log_format" in bad\.yml: .*\(got 3\)\n$/,
    );
    const client = startNode(DSCLIENT, [`pdtp://${tracker}/a.bin`], { cwd: dir, env: { DS_LOG_FORMAT: "yaml" } });
    assert.equal(await client.exited, 2);
    assert.match(client.stderr(), /^dsclient: invalid setting log_format from DS_LOG_FORMAT: .*\(got "yaml"\)/);
    // dsclient is one bundled file that loads the YAML parser only for --conf: it must find it
    const clientYaml = startNode(DSCLIENT, ["--conf", "bad.yml", `pdtp://${tracker}/a.bin`], { cwd: dir });
    assert.equal(await clientYaml.exited, 2);
    assert.match(
      clientYaml.stderr(),
      /^dsclient: invalid setting log_format from "log_format" in bad\.yml: .*\(got 3\)\n$/,
    );
  });
});
