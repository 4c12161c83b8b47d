import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DownloadError } from "./errors.js";
import { defaultOutputName, resolveOutput } from "./outputTarget.js";

const dir = mkdtempSync(join(tmpdir(), "dsclient-out-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("the default output name is the last segment of the stream name", () => {
  assert.equal(defaultOutputName("videos/2024/big.bin"), "big.bin");
  assert.equal(defaultOutputName("x.bin"), "x.bin");
});

test("outputs resolve to file, stdout, folder+name, FIFO", async () => {
  assert.deepEqual(await resolveOutput(undefined, "a/b.bin", dir), { kind: "file", path: join(dir, "b.bin") });
  assert.deepEqual(await resolveOutput("-", "a/b.bin", dir), { kind: "stdout" });
  assert.deepEqual(await resolveOutput("out.bin", "a/b.bin", dir), { kind: "file", path: join(dir, "out.bin") });
  writeFileSync(join(dir, "exists.bin"), "old");
  assert.deepEqual(await resolveOutput("exists.bin", "b.bin", dir), { kind: "file", path: join(dir, "exists.bin") });
  mkdirSync(join(dir, "sub"));
  assert.deepEqual(await resolveOutput("sub", "a/b.bin", dir), { kind: "file", path: join(dir, "sub", "b.bin") });
  execFileSync("mkfifo", [join(dir, "pipe")]);
  assert.deepEqual(await resolveOutput("pipe", "b.bin", dir), {
    kind: "stream",
    path: join(dir, "pipe"),
    type: "fifo",
  });
  assert.deepEqual(await resolveOutput("/dev/null", "b.bin", dir), { kind: "stream", path: "/dev/null", type: "char" });
});

test("a folder that holds a folder of the default name is a usage error", async () => {
  mkdirSync(join(dir, "d2", "c.bin"), { recursive: true });
  await assert.rejects(
    resolveOutput("d2", "c.bin", dir),
    (err: unknown) => err instanceof DownloadError && err.exitCode === 2,
  );
});
