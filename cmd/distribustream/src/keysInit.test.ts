import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError } from "@distribustream/runtime";
import { readTokenFile, verifyToken, writeTokenFile } from "@distribustream/tracker";
import { initKeys } from "./keysInit.js";
import { rotateTicketKey } from "./keyCommands.js";

describe("keys init", () => {
  const root = mkdtempSync(join(tmpdir(), "ds-keys-init-"));
  after(() => rmSync(root, { recursive: true, force: true }));
  const init = (flags: { dir?: string; dashboardAuth?: boolean }) => {
    const out: string[] = [];
    initKeys(flags, { out: (s) => void out.push(s) });
    return out.join("");
  };

  it("creates every file 0600 in a new 0700 folder, then keeps them all, same key ids", () => {
    const dir = join(root, "a/keys");
    const first = init({ dir, dashboardAuth: true });
    assert.match(
      first,
      new RegExp(
        [
          `^created ${dir}/ticket-key\\.pem \\(ticket key [0-9a-f]{32}\\)`,
          `created ${dir}/network-key\\.pem \\(network key [0-9a-f]{32}\\)`,
          `created ${dir}/seeder-tokens \\(seeder credentials\\)`,
          `created ${dir}/seeder-token \\(seeder token \\w+\\)`,
          `created ${dir}/dashboard-token \\(dashboard access token\\)\\n$`,
        ].join("\\n"),
      ),
    );
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of ["ticket-key.pem", "network-key.pem", "seeder-tokens", "seeder-token", "dashboard-token"]) {
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    }
    const token = readFileSync(join(dir, "seeder-token"), "utf8").trim();
    const entries = new Map(readTokenFile(join(dir, "seeder-tokens")).map((e) => [e.id, e]));
    assert.ok(verifyToken(token, entries).ok, "the token matches the credentials file");
    assert.ok(readFileSync(join(dir, "dashboard-token"), "utf8").trim().length >= 16);
    assert.ok(!first.includes(token) && !first.includes(readFileSync(join(dir, "dashboard-token"), "utf8").trim()));

    const contents = () =>
      ["ticket-key.pem", "network-key.pem", "seeder-tokens", "seeder-token", "dashboard-token"].map((f) =>
        readFileSync(join(dir, f), "utf8"),
      );
    const before = contents();
    const second = init({ dir, dashboardAuth: true });
    assert.equal(second, first.replace(/^created /gm, "kept "));
    assert.deepEqual(contents(), before);
  });

  it("keeps a rotated ticket key file whole, naming its newest key", () => {
    const dir = join(root, "rotated");
    init({ dir });
    const newId = (() => {
      const out: string[] = [];
      rotateTicketKey({ ticketKey: join(dir, "ticket-key.pem") }, { out: (s) => void out.push(s), err: () => {} });
      return out.join("").trim();
    })();
    const before = readFileSync(join(dir, "ticket-key.pem"), "utf8");
    assert.match(init({ dir }), new RegExp(`^kept ${dir}/ticket-key\\.pem \\(ticket key ${newId}\\)$`, "m"));
    assert.equal(readFileSync(join(dir, "ticket-key.pem"), "utf8"), before);
  });

  it("adds a new seeder token when the saved one is revoked, keeping the other credentials", () => {
    const dir = join(root, "revoked");
    init({ dir });
    const [entry] = readTokenFile(join(dir, "seeder-tokens"));
    writeTokenFile(join(dir, "seeder-tokens"), [{ ...entry!, revokedMs: Date.now() }]);
    const out = init({ dir });
    assert.match(out, new RegExp(`^updated ${dir}/seeder-tokens \\(seeder credentials\\)$`, "m"));
    assert.match(out, new RegExp(`^created ${dir}/seeder-token `, "m"));
    const entries = readTokenFile(join(dir, "seeder-tokens"));
    assert.equal(entries.length, 2);
    assert.ok(
      verifyToken(readFileSync(join(dir, "seeder-token"), "utf8").trim(), new Map(entries.map((e) => [e.id, e]))).ok,
    );
  });

  it("refuses a key file that is not a key, a dashboard token too short, a missing --dir: nothing is overwritten", () => {
    const dir = join(root, "bad");
    init({ dir });
    writeFileSync(join(dir, "network-key.pem"), "not a key\n");
    assert.throws(() => init({ dir }), /invalid setting network_key: .*network-key\.pem is not an Ed25519 PEM key/);
    assert.equal(readFileSync(join(dir, "network-key.pem"), "utf8"), "not a key\n");

    const dir2 = join(root, "bad2");
    init({ dir: dir2 });
    writeFileSync(join(dir2, "dashboard-token"), "short\n");
    assert.throws(
      () => init({ dir: dir2, dashboardAuth: true }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message ===
          `keys init: ${dir2}/dashboard-token holds no dashboard token (one line of 16+ characters); remove it to create one`,
    );
    writeFileSync(join(root, "a-file"), "");
    assert.throws(() => init({ dir: join(root, "a-file") }), /keys init: .*a-file is not a folder/);
    const saved = process.env.DS_KEYS_DIR;
    delete process.env.DS_KEYS_DIR;
    try {
      assert.throws(() => init({}), /keys init: give the folder with --dir DIR \(or DS_KEYS_DIR\)/);
    } finally {
      if (saved !== undefined) process.env.DS_KEYS_DIR = saved;
    }
  });
});
