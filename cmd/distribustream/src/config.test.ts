import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { seederSchema } from "./config.js";

test("seeder max_upload_rate: a rate from a flag or DS_MAX_UPLOAD_RATE, none by default, 0 for none", () => {
  assert.equal(loadConfig(seederSchema, { flags: {}, env: {} }).maxUploadRate, undefined);
  assert.equal(loadConfig(seederSchema, { flags: { maxUploadRate: "16M" }, env: {} }).maxUploadRate, 16 * 1024 * 1024);
  assert.equal(loadConfig(seederSchema, { flags: {}, env: { DS_MAX_UPLOAD_RATE: "500K" } }).maxUploadRate, 512_000);
  assert.equal(loadConfig(seederSchema, { flags: { maxUploadRate: "0" }, env: {} }).maxUploadRate, undefined);
  assert.throws(
    () => loadConfig(seederSchema, { flags: { maxUploadRate: "fast" }, env: {} }),
    (err: unknown) => err instanceof ConfigError && /max.upload.rate/i.test(err.message),
  );
});
