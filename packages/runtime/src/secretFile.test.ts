import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readSecretFile } from "./secretFile.js";

describe("readSecretFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-secret-"));
  const file = (name: string, mode: number) => {
    const path = join(dir, name);
    writeFileSync(path, "s3cret\n");
    chmodSync(path, mode);
    return path;
  };

  it("reads a file only its owner, or its owner and group, may read", () => {
    assert.equal(readSecretFile(file("a", 0o600)), "s3cret\n");
    assert.equal(readSecretFile(file("b", 0o400)), "s3cret\n");
    assert.equal(readSecretFile(file("c", 0o440)), "s3cret\n"); // a Kubernetes Secret with fsGroup
    assert.equal(readSecretFile(file("d", 0o640)), "s3cret\n");
  });

  it("refuses a file every user may read or others may change, saying how to fix it", () => {
    const open = file("e", 0o644);
    assert.throws(
      () => readSecretFile(open),
      new Error(
        `${open} holds a secret but is readable by every user (mode 0644): chmod 600 ${open} (640 to share it with a group)`,
      ),
    );
    assert.throws(() => readSecretFile(file("f", 0o660)), /is writable by other users \(mode 0660\)/);
    assert.throws(() => readSecretFile(file("g", 0o604)), /is readable by every user \(mode 0604\)/);
  });

  it("names a file it cannot read", () => {
    assert.throws(() => readSecretFile(join(dir, "missing")), /^Error: cannot read .*missing: ENOENT$/);
  });
});
