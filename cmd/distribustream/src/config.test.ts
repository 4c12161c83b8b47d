import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { dashboardSchema, liveSpecs, originalAliases, seederSchema, upSchema } from "./config.js";

const seeder = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, confFile?: string) =>
  loadConfig(seederSchema, { flags, env, confFile, aliases: originalAliases.seeder });

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

describe("seeder and up live settings", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-live-config-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const clip = join(dir, "clip.ts");
  writeFileSync(clip, "ts");

  it("takes repeated --live NAME=SOURCE: stdin, an HTTP(S) URL, a file at --live-bitrate in bits/s, looped", () => {
    const cfg = seeder({
      live: ["cam=-", "relay=https://enc.example/live.ts?k=v", `loop=${clip}`],
      liveBitrate: "2M",
      liveLoop: true,
      liveWindow: "300",
      stateDir: join(dir, "state"),
    });
    assert.equal(cfg.liveBitrate, 2_000_000, "2M is 2 Mbit/s, decimal");
    assert.equal(cfg.stateDir, join(dir, "state"));
    assert.deepEqual(liveSpecs(cfg), [
      { name: "cam", input: { kind: "stdin" }, bitrate: 2_000_000, windowChunks: 300 },
      {
        name: "relay",
        input: { kind: "http", url: "https://enc.example/live.ts?k=v" },
        bitrate: 2_000_000,
        windowChunks: 300,
      },
      { name: "loop", input: { kind: "file", path: clip, bitrate: 2_000_000, loop: true }, windowChunks: 300 },
    ]);
    assert.deepEqual(liveSpecs(seeder({ live: ["cam=-"] })), [{ name: "cam", input: { kind: "stdin" } }]);
    assert.equal(seeder({ liveBitrate: "1500k" }).liveBitrate, 1_500_000);
    assert.equal(seeder({ liveBitrate: "64000" }).liveBitrate, 64_000);
    assert.equal(seeder({}).liveLoop, false);
    // up takes the same flags
    const up = loadConfig(upSchema, { flags: { live: [`c=${clip}`], liveBitrate: "800k" }, env: {} });
    assert.deepEqual(liveSpecs(up)[0]!.input, { kind: "file", path: clip, bitrate: 800_000, loop: false });
  });

  it("takes DS_LIVE one per line, and a YAML live list whose items may carry their own bitrate and loop", () => {
    const env = { DS_LIVE: "a=-\n\n b=http://enc.example/b.ts \n", DS_LIVE_LOOP: "true" };
    assert.deepEqual(
      liveSpecs(seeder({}, env)).map((s) => s.name),
      ["a", "b"],
    );
    assert.equal(seeder({}, env).liveLoop, true);
    const conf = join(dir, "seeder.yml");
    writeFileSync(
      conf,
      [
        "live:",
        "  - cam=-",
        `  - { name: film, source: ${clip}, bitrate: 3M, loop: true }`,
        "live_bitrate: 1M",
        "live_window: 50",
        `state_dir: ${join(dir, "state")}`,
        `live_record: ${join(dir, "rec")}`,
      ].join("\n"),
    );
    const cfg = seeder({}, {}, conf);
    assert.equal(cfg.stateDir, join(dir, "state"));
    assert.equal(cfg.liveRecord, join(dir, "rec"));
    assert.deepEqual(liveSpecs(cfg), [
      { name: "cam", input: { kind: "stdin" }, bitrate: 1_000_000, windowChunks: 50 },
      { name: "film", input: { kind: "file", path: clip, bitrate: 3_000_000, loop: true }, windowChunks: 50 },
    ]);
  });

  it("takes the live recordings' folder from --live-record, DS_LIVE_RECORD or live_record, for seeder and up; none by default", () => {
    assert.equal(seeder({ live: ["cam=-"] }).liveRecord, undefined);
    assert.equal(seeder({ live: ["cam=-"], liveRecord: "rec" }).liveRecord, "rec");
    assert.equal(seeder({}, { DS_LIVE_RECORD: "/srv/recordings" }).liveRecord, "/srv/recordings");
    assert.equal(seeder({ liveRecord: "flag" }, { DS_LIVE_RECORD: "env" }).liveRecord, "flag", "the flag wins");
    assert.equal(loadConfig(upSchema, { flags: { liveRecord: "rec" }, env: {} }).liveRecord, "rec");
    const conf = join(dir, "empty-record.yml");
    writeFileSync(conf, 'live_record: ""\n');
    assert.throws(
      () => seeder({}, {}, conf),
      (e: unknown) =>
        e instanceof ConfigError && /^invalid setting live_record from .*empty-record\.yml/.test(e.message),
    );
  });

  it("names the setting and the problem of a bad live value", () => {
    const refused = (flags: Record<string, unknown>, message: RegExp) =>
      assert.throws(
        () => seeder(flags),
        (e: unknown) => e instanceof ConfigError && message.test(e.message),
      );
    refused({ live: ["cam"] }, /^invalid setting live from --live: expected NAME=SOURCE .*got "cam"/);
    refused({ live: ["=-"] }, /^invalid setting live from --live: "=-": no stream name/);
    refused({ live: ["cam="] }, /^invalid setting live from --live: "cam=": no SOURCE/);
    refused(
      { live: ["cam=ftp://enc.example/a.ts"] },
      /^invalid setting live from --live: .*must use http:\/\/ or https:\/\//,
    );
    refused(
      { live: ["a=-", "a=http://enc.example/a.ts"] },
      /^invalid setting live from --live: two live broadcasts are named "a"/,
    );
    refused(
      { live: ["a=-", "b=-"] },
      /^invalid setting live from --live: "b": standard input \(-\) is already the source/,
    );
    refused(
      { live: [`cam=${clip}`] },
      /^invalid setting live from --live: the file .*clip\.ts needs a bitrate .*live_bitrate/,
    );
    refused(
      { live: [`cam=${join(dir, "missing.ts")}`], liveBitrate: "2M" },
      /^invalid setting live from --live: "cam": .*missing\.ts cannot be read \(ENOENT\)/,
    );
    refused({ live: [`cam=${dir}`], liveBitrate: "2M" }, /^invalid setting live from --live: "cam": .* is not a file/);
    refused({ liveBitrate: "0" }, /^invalid setting live_bitrate from --live-bitrate: bitrate "0" must be above 0/);
    refused(
      { liveBitrate: "2MB" },
      /^invalid setting live_bitrate from --live-bitrate: "2MB" is not a bitrate in bits per second/,
    );
    refused({ liveWindow: "1" }, /^invalid setting live_window from --live-window: must be at least 2 chunks/);
    refused({ liveLoop: "maybe" }, /^invalid setting live_loop from --live-loop/);
  });
});

describe("dashboard settings", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-dashboard-config-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const dashboard = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, confFile?: string) =>
    loadConfig(dashboardSchema, { flags, env, confFile, aliases: originalAliases.dashboard });
  const redis = "redis://127.0.0.1:6379";

  it("listens on 127.0.0.1:6087 by default, without access control", () => {
    const cfg = dashboard({ redis });
    assert.deepEqual([cfg.host, cfg.port, cfg.authToken, cfg.authFile], ["127.0.0.1", 6087, undefined, undefined]);
  });

  it("takes the token from DS_AUTH_TOKEN and the rest from YAML, flags first", () => {
    const conf = join(dir, "dash.yml");
    writeFileSync(
      conf,
      "host: 0.0.0.0\nport: 7000\nredis: redis://10.0.0.5:6379\nchecksum_metrics: http://10.0.0.6:9088\n",
    );
    const cfg = dashboard({ port: "7100" }, { DS_AUTH_TOKEN: "0123456789abcdef0123" }, conf);
    assert.deepEqual(
      [cfg.host, cfg.port, cfg.redis, cfg.authToken, cfg.checksumMetrics],
      ["0.0.0.0", 7100, "redis://10.0.0.5:6379", "0123456789abcdef0123", "http://10.0.0.6:9088"],
    );
  });

  it("refuses a non-loopback address without access control, a store missing, a short token, naming the setting", () => {
    assert.throws(
      () => dashboard({ redis, host: "0.0.0.0" }),
      /invalid setting host from --host: the dashboard on 0\.0\.0\.0 would be open to anyone/,
    );
    assert.doesNotThrow(() => dashboard({ redis, host: "0.0.0.0", authFile: "users" }));
    assert.doesNotThrow(() => dashboard({ redis, host: "::1" }));
    assert.throws(
      () => dashboard({}),
      /invalid setting redis from default: the dashboard reads the trackers' swarm store/,
    );
    assert.throws(
      () => dashboard({ redis, authToken: "short" }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /auth_token .*at least 16 characters/.test(e.message) &&
        !e.message.includes("short"),
    );
    assert.throws(() => dashboard({ redis, checksumMetrics: "10.0.0.6:9088" }), /checksum_metrics .*expected http/);
  });

  it("up runs its dashboard on 127.0.0.1:6087 unless told otherwise, and wants access control off loopback", () => {
    const cfg = loadConfig(upSchema, { flags: {}, env: {} });
    assert.deepEqual([cfg.dashboardHost, cfg.dashboardPort], ["127.0.0.1", 6087]);
    assert.equal(loadConfig(upSchema, { flags: { dashboardPort: "0" }, env: {} }).dashboardPort, 0);
    assert.throws(
      () => loadConfig(upSchema, { flags: { dashboardHost: "0.0.0.0" }, env: {} }),
      /invalid setting dashboard_host .*set --dashboard-auth-token/,
    );
  });
});
