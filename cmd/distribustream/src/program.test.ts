import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import type { Command } from "commander";
import { program } from "./program.js";

const bin = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const version = (pkg: string) =>
  (JSON.parse(readFileSync(new URL(`../../../${pkg}/package.json`, import.meta.url), "utf8")) as { version: string })
    .version;

function run(script: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

/** Every command path of the program, from its definitions (a command added later is covered too). */
function paths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((sub) => [[...prefix, sub.name()], ...paths(sub, [...prefix, sub.name()])]);
}

test("--version on every command prints the package's version and exits 0", async () => {
  const expected = `${version("cmd/distribustream")}\n`;
  assert.match(expected, /^\d+\.\d+\.\d+/);
  const all = paths(program).filter((p) => p[0] !== "help");
  assert.ok(all.length >= 15, `found ${all.length} commands`);
  const runs = [[], ...all].map((p) => ({ name: ["distribustream", ...p].join(" "), args: [...p, "--version"] }));
  for (const { name, args } of runs) {
    const r = await run(bin("bin/distribustream.js"), args);
    assert.deepEqual(r, { code: 0, out: expected, err: "" }, name);
  }
  assert.deepEqual(await run(bin("bin/dsseed.js"), ["--version"]), { code: 0, out: expected, err: "" }, "dsseed");
  const client = { code: 0, out: `${version("packages/client")}\n`, err: "" };
  assert.deepEqual(await run(bin("bin/dsclient.js"), ["--version"]), client, "dsclient (the package's bin)");
  assert.deepEqual(await run(bin("../../packages/client/bin/dsclient.js"), ["-V"]), client, "dsclient -V");
});

test("commander's usage errors are bad usage: exit 2, with the reason", async () => {
  const unknown = await run(bin("bin/distribustream.js"), ["tracker", "--no-such-flag"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /^error: unknown option '--no-such-flag'/);
  const noCommand = await run(bin("bin/distribustream.js"), ["no-such-command"]);
  assert.equal(noCommand.code, 2);
  assert.match(noCommand.err, /^error: unknown command 'no-such-command'/);
  const help = await run(bin("bin/distribustream.js"), ["checksum", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /\nExit status:\n {2}0 {2}done/);
});

test("help into a pipe whose reader is gone (`--help | head -1`) exits 0 without a trace", async () => {
  const closed = (script: string, args: string[]) =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      child.stdout.destroy(); // the reader exits before the first write
      let err = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
      child.on("close", (code) => resolve({ code, err }));
    });
  const dsclient = bin("../../packages/client/bin/dsclient.js");
  for (const [script, args] of [
    [bin("bin/distribustream.js"), ["--help"]],
    [bin("bin/distribustream.js"), ["up", "--help"]],
    [bin("bin/distribustream.js"), ["dsclient", "--help"]],
    [dsclient, ["--help"]],
    [dsclient, ["ls", "--help"]],
  ] as const) {
    assert.deepEqual(await closed(script, [...args]), { code: 0, err: "" }, `${args.join(" ")}`);
  }
});

test("a token shown once into a pipe whose reader is gone is a failure, not exit 0", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-token-pipe-"));
  try {
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [bin("bin/distribustream.js"), "seeder-token", "create", "--file", join(dir, "tokens")],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      child.stdout.destroy();
      let err = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
      child.on("close", (code) => resolve({ code, err }));
    });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /standard output closed before everything was written \(EPIPE\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
