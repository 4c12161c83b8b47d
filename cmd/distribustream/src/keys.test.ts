import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { createLogger } from "@distribustream/runtime";
import { loadOrCreateKey } from "./keys.js";

const log = createLogger("test", { level: "silent" });

test("a key file is created once (mode 0600) and loaded afterwards", () => {
  const path = join(mkdtempSync(join(tmpdir(), "ds-keys-")), "sub/ticket-key.pem");
  const a = loadOrCreateKey(path, "ticket_key", log);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(loadOrCreateKey(path, "ticket_key", log).keyId, a.keyId);
});

test("replicas starting together end up with one key", () => {
  const path = join(mkdtempSync(join(tmpdir(), "ds-keys-")), "ticket-key.pem");
  const script = `import("${new URL("./keys.js", import.meta.url).href}").then(({ loadOrCreateKey }) =>
    process.stdout.write(loadOrCreateKey(${JSON.stringify(path)}, "ticket_key", { info() {} }).keyId))`;
  const ids = execFileSync("sh", ["-c", Array(4).fill(`"${process.execPath}" -e '${script}' & `).join("") + "wait"], {
    encoding: "utf8",
  });
  assert.equal(ids.length, 4 * 32);
  assert.equal(new Set(ids.match(/.{32}/g)).size, 1, ids);
});

test("a file that is not an Ed25519 key is refused naming the setting", () => {
  const path = join(mkdtempSync(join(tmpdir(), "ds-keys-")), "bad.pem");
  writeFileSync(path, "not a key\n", { mode: 0o600 });
  assert.throws(
    () => loadOrCreateKey(path, "network_key", log),
    /invalid setting network_key: .*bad\.pem is not an Ed25519 PEM key/,
  );
});
