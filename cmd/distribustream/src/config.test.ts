import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { originalAliases, seederSchema } from "./config.js";

const seeder = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  loadConfig(seederSchema, { flags, env, aliases: originalAliases.seeder });

describe("seeder origin settings", () => {
  it("takes repeated --origin flags, or DS_ORIGIN with one entry per line", () => {
    assert.deepEqual(seeder({ origin: ["https://cdn.example/a.mp4", "http://cdn.example/b.mp4 films/b.mp4"] }).origin, [
      "https://cdn.example/a.mp4",
      "http://cdn.example/b.mp4 films/b.mp4",
    ]);
    const env = { DS_ORIGIN: "https://cdn.example/a.mp4\n\n  https://cdn.example/c.mp4 c.mp4 \n" };
    assert.deepEqual(seeder({}, env).origin, ["https://cdn.example/a.mp4", "https://cdn.example/c.mp4 c.mp4"]);
  });

  it("has no media folder by default (the command defaults it to ./media only without origins) and polls every 30 s", () => {
    const cfg = seeder({ origin: ["https://cdn.example/a.mp4"] });
    assert.equal(cfg.media, undefined);
    assert.equal(cfg.originPoll, 30);
  });

  it("names the setting and the problem of a bad origin or poll interval", () => {
    assert.throws(
      () => seeder({ origin: ["ftp://cdn.example/a.mp4"] }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /^invalid setting origin from --origin: origin URL "ftp:\/\/cdn\.example\/a\.mp4" must use http:\/\/ or https:\/\//.test(
          e.message,
        ),
    );
    assert.throws(() => seeder({}, { DS_ORIGIN: "https://cdn.example/dir/" }), /from DS_ORIGIN: .*has no file name/);
    assert.throws(
      () => seeder({ originPoll: "0" }),
      /invalid setting origin_poll from --origin-poll: must be at least/,
    );
  });
});

describe("seeder upload cap", () => {
  it("takes max_upload_rate from a flag or DS_MAX_UPLOAD_RATE; none by default, 0 for none", () => {
    assert.equal(seeder({}).maxUploadRate, undefined);
    assert.equal(seeder({ maxUploadRate: "16M" }).maxUploadRate, 16 * 1024 * 1024);
    assert.equal(seeder({}, { DS_MAX_UPLOAD_RATE: "500K" }).maxUploadRate, 512_000);
    assert.equal(seeder({ maxUploadRate: "0" }).maxUploadRate, undefined);
    assert.throws(
      () => seeder({ maxUploadRate: "fast" }),
      (e: unknown) => e instanceof ConfigError && /max.upload.rate/i.test(e.message),
    );
  });
});
