import assert from "node:assert/strict";
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Signer, type PublicKey } from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { parseTicketKeyFile, TicketKeyFileError, TicketKeys } from "./ticketKeys.js";

const log = createLogger("test", { level: "silent" });
const dir = mkdtempSync(join(tmpdir(), "ticket-keys-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ids = (keys: readonly PublicKey[]) => keys.map((k) => k.keyId);

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(10)) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
  }
}

describe("ticket keys", () => {
  it("parses one or more PEM keys, oldest first, and says what is wrong with a bad file", () => {
    const [a, b] = [Signer.generate(), Signer.generate()];
    assert.deepEqual(
      parseTicketKeyFile(a.toPem() + "\n" + b.toPem(), "k.pem").map((k) => k.keyId),
      [a.keyId, b.keyId],
    );
    assert.throws(() => parseTicketKeyFile("hello", "k.pem"), /k.pem holds no PEM private key/);
    const garbled = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert.throws(() => parseTicketKeyFile(a.toPem() + garbled, "k.pem"), TicketKeyFileError);
    assert.throws(() => parseTicketKeyFile(a.toPem() + garbled, "k.pem"), /key 2 of k.pem is not an Ed25519 key/);
  });

  it("publishes a rotated-in key at once, signs with it only after the overlap, and drops what leaves the file", async () => {
    const file = join(dir, "rotate.pem");
    const [a, b, c] = [Signer.generate(), Signer.generate(), Signer.generate()];
    writeFileSync(file, a.toPem(), { mode: 0o600 });
    utimesSync(file, new Date(0), new Date(0)); // an old file: its key is long published
    const keys = TicketKeys.watch(file, log, { overlapMs: 400, reloadMs: 20 });
    try {
      const changes: string[][] = [];
      keys.onChange((k) => changes.push(ids(k)));
      assert.equal(keys.signer.keyId, a.keyId);
      assert.deepEqual(ids(keys.publicKeys), [a.keyId]);

      writeFileSync(file, a.toPem() + b.toPem(), { mode: 0o600 });
      const added = Date.now();
      await until("b published", () => changes.length === 1);
      assert.deepEqual(changes[0], [a.keyId, b.keyId]);
      assert.equal(keys.signer.keyId, a.keyId, "b does not sign before every peer can know it");
      await until("b signs", () => keys.signer.keyId === b.keyId);
      assert.ok(Date.now() - added >= 400, `b signed after ${Date.now() - added} ms`);

      // an unreadable or broken file keeps the keys in use
      writeFileSync(file, "garbage", { mode: 0o600 });
      await sleep(100);
      assert.equal(keys.signer.keyId, b.keyId);
      assert.deepEqual(ids(keys.publicKeys), [a.keyId, b.keyId]);
      assert.equal(changes.length, 1);

      writeFileSync(file, b.toPem() + c.toPem(), { mode: 0o600 }); // the next rotation drops a
      await until("a dropped, c published", () => changes.length === 2);
      assert.deepEqual(changes[1], [b.keyId, c.keyId]);
      assert.equal(keys.signer.keyId, b.keyId);
      await until("c signs", () => keys.signer.keyId === c.keyId);
    } finally {
      keys.close();
    }
  });

  it("started in the middle of a rotation, waits out the rest of the overlap before signing with the new key", async () => {
    const file = join(dir, "midway.pem");
    const [a, b] = [Signer.generate(), Signer.generate()];
    writeFileSync(file, a.toPem() + b.toPem(), { mode: 0o600 }); // just rotated: modified now
    const keys = TicketKeys.watch(file, log, { overlapMs: 60_000, reloadMs: 20 });
    try {
      assert.equal(keys.signer.keyId, a.keyId);
      assert.deepEqual(ids(keys.publicKeys), [a.keyId, b.keyId]);
    } finally {
      keys.close();
    }
  });

  it("refuses a missing or empty file with the file's name", () => {
    assert.throws(
      () => TicketKeys.watch(join(dir, "none.pem"), log),
      /ticket key file: cannot read .*none.pem: ENOENT/,
    );
    writeFileSync(join(dir, "empty.pem"), "", { mode: 0o600 });
    assert.throws(() => TicketKeys.watch(join(dir, "empty.pem"), log), /empty.pem holds no PEM private key/);
  });
});
