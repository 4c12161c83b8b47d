import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, hostPort, loadConfig, port, z } from "./config.js";

const schema = z.strictObject({
  port: port(6086),
  fileRoot: z.string().default("."),
  checksum: hostPort("127.0.0.1:6088"),
  chunkSize: z.coerce.number().int().min(1024).default(262144),
});

function conf(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), "ds-conf-")), "c.yml");
  writeFileSync(f, text);
  return f;
}

test("defaults, then the YAML file, then DS_* variables, then flags", () => {
  assert.deepEqual(loadConfig(schema, { flags: {}, env: {} }), {
    port: 6086,
    fileRoot: ".",
    checksum: "127.0.0.1:6088",
    chunkSize: 262144,
  });
  const file = conf("port: 7000\nfile_root: /srv/media\nchunk_size: 65536\n");
  const cfg = loadConfig(schema, { flags: { chunkSize: "1048576" }, env: { DS_PORT: "7001" }, confFile: file });
  assert.deepEqual(cfg, { port: 7001, fileRoot: "/srv/media", checksum: "127.0.0.1:6088", chunkSize: 1048576 });
  assert.ok(Object.isFrozen(cfg));
});

test("DS_CONF names the file when no flag does, and aliases map the original's keys", () => {
  const file = conf("listen_port: 8123\n");
  const s = z.strictObject({ dataPort: port(8000) });
  assert.equal(
    loadConfig(s, { flags: {}, env: { DS_CONF: file }, aliases: { listen_port: "dataPort" } }).dataPort,
    8123,
  );
});

test("invalid values name the setting, its source and the bad value", () => {
  assert.throws(
    () => loadConfig(schema, { flags: { port: "http" }, env: {} }),
    (err: Error) =>
      err instanceof ConfigError && /invalid setting port from --port: .*\(got "http"\)/.test(err.message),
  );
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: { DS_PORT: "70000" } }),
    /invalid setting port from DS_PORT/,
  );
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: { DS_CHECKSUM: "nohost" } }),
    /invalid setting checksum from DS_CHECKSUM: expected HOST:PORT/,
  );
  const file = conf("chunk_size: 12\n");
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: {}, confFile: file }),
    /invalid setting chunk_size from "chunk_size" in/,
  );
});

test("unknown keys and unreadable files are refused", () => {
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: {}, confFile: conf("prot: 1\n") }),
    /unknown setting "prot" in .* \(known: port, file_root, checksum, chunk_size\)/,
  );
  assert.throws(() => loadConfig(schema, { flags: {}, env: {}, confFile: conf("- 1\n- 2\n") }), /must be a mapping/);
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: {}, confFile: "/nonexistent/x.yml" }),
    /cannot read config file/,
  );
});

test("what YAML only warns about (an unknown tag) is refused as an error, with no process warning", async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on("warning", onWarning);
  try {
    for (const text of ["file_root: !custom x\n", "%YAML 9.9\n---\nport: 1\n"]) {
      assert.throws(
        () => loadConfig(schema, { flags: {}, env: {}, confFile: conf(text) }),
        (err: unknown) =>
          err instanceof ConfigError && /cannot read config file .*(tag|YAML version)/s.test(err.message),
        text,
      );
    }
    await new Promise((resolve) => setImmediate(resolve)); // process warnings are emitted a tick later
  } finally {
    process.off("warning", onWarning);
  }
  assert.deepEqual(warnings, []);
});

test("a value the file makes refer to itself (a YAML alias inside its anchor) is a ConfigError naming the setting", () => {
  const file = conf("port: &p\n  x: *p\n");
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: {}, confFile: file }),
    (e: unknown) =>
      e instanceof ConfigError && /^invalid setting port from "port" in .*: .*\(got .*\)$/.test(e.message),
  );
});

test("a huge bad value is shown shortened in the error", () => {
  const file = conf(`file_root: [${"1,".repeat(20_000)}1]\n`);
  assert.throws(
    () => loadConfig(schema, { flags: {}, env: {}, confFile: file }),
    (e: unknown) => e instanceof ConfigError && /file_root/.test(e.message) && e.message.length < 1000,
  );
});

test("a fallback variable (REDIS_URL) is read when DS_<SETTING> is not set, and named in errors", () => {
  const s = z.strictObject({
    redis: z
      .string()
      .regex(/^redis:\/\//)
      .optional(),
  });
  const envFallbacks = { redis: "REDIS_URL" };
  assert.equal(loadConfig(s, { flags: {}, env: { REDIS_URL: "redis://a:1" }, envFallbacks }).redis, "redis://a:1");
  const both = { REDIS_URL: "redis://a:1", DS_REDIS: "redis://b:2" };
  assert.equal(loadConfig(s, { flags: {}, env: both, envFallbacks }).redis, "redis://b:2");
  assert.equal(loadConfig(s, { flags: { redis: "redis://c:3" }, env: both, envFallbacks }).redis, "redis://c:3");
  assert.equal(loadConfig(s, { flags: {}, env: { REDIS_URL: "redis://a:1" } }).redis, undefined);
  assert.throws(
    () => loadConfig(s, { flags: {}, env: { REDIS_URL: "http://x" }, envFallbacks }),
    /^ConfigError: invalid setting redis from REDIS_URL: /,
  );
});
