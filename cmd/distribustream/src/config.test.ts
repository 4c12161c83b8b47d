import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import {
  checksumSchema,
  dashboardSchema,
  liveSpecs,
  originalAliases,
  seederSchema,
  trackerSchema,
  upSchema,
} from "./config.js";
import { preflightDashboard, preflightTracker, preflightUp } from "./preflight.js";

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
    assert.throws(() => dashboard({}), /invalid setting redis: the dashboard reads the trackers' swarm store/);
    assert.throws(
      () => dashboard({ redis, authToken: "short" }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /auth_token .*at least 16 characters/.test(e.message) &&
        !e.message.includes("short"),
    );
    assert.throws(() => dashboard({ redis, checksumMetrics: "10.0.0.6:9088" }), /checksum_metrics .*expected http/);
  });

  it("takes the token from a file with --auth-token-file or DS_AUTH_TOKEN_FILE, which opens other addresses", () => {
    assert.equal(dashboard({ redis, host: "0.0.0.0" }, { DS_AUTH_TOKEN_FILE: "/keys/t" }).authTokenFile, "/keys/t");
    assert.equal(dashboard({ redis, authTokenFile: "t" }).authTokenFile, "t");
    assert.throws(
      () => dashboard({ redis, authTokenFile: "t" }, { DS_AUTH_TOKEN: "0123456789abcdef0123" }),
      /invalid setting auth_token_file from --auth-token-file: give the dashboard token either as auth_token or as auth_token_file, not both/,
    );
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

describe("seeder addresses", () => {
  it("takes --advertise and --internal-address as HOST[:PORT], or DS_ADVERTISE and DS_INTERNAL_ADDRESS", () => {
    const cfg = seeder({ advertise: "seed.example.net:30080" }, { DS_INTERNAL_ADDRESS: "seeder:8000" });
    assert.deepEqual(cfg.advertise, { host: "seed.example.net", port: 30080 });
    assert.deepEqual(cfg.internalAddress, { host: "seeder", port: 8000 });
    assert.deepEqual(seeder({}, { DS_ADVERTISE: "[2001:db8::1]:8443" }).advertise, { host: "2001:db8::1", port: 8443 });
    assert.deepEqual(seeder({ advertise: "203.0.113.7" }).advertise, { host: "203.0.113.7" });
    assert.equal(seeder({}).advertise, undefined);
    assert.equal(seeder({}).internalAddress, undefined);
  });

  it("the original's vhost key in YAML is the advertised host", () => {
    const dir = mkdtempSync(join(tmpdir(), "ds-seeder-config-"));
    try {
      writeFileSync(join(dir, "s.yml"), "vhost: seed.example.net\n");
      assert.deepEqual(seeder({}, {}, join(dir, "s.yml")).advertise, { host: "seed.example.net" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names the setting and what is wrong with a bad address", () => {
    assert.throws(
      () => seeder({ advertise: "seed:99999" }),
      /^ConfigError: invalid setting advertise from --advertise: not a data address: "seed:99999" \(port "99999" is not 1-65535; expected HOST or HOST:PORT\)/,
    );
    assert.throws(
      () => seeder({}, { DS_INTERNAL_ADDRESS: "http://seeder:8000/" }),
      /invalid setting internal_address from DS_INTERNAL_ADDRESS: not a data address/,
    );
    assert.throws(() => seeder({ internalAddress: "2001:db8::1:8000:x" }), /IPv6 address with a port goes in brackets/);
  });
});

describe("seeder credentials", () => {
  it("are required of a tracker unless it is told to accept any seeder, and not both", () => {
    assert.throws(
      () => loadConfig(trackerSchema, { flags: {}, env: {} }),
      /invalid setting seeder_tokens: not set, and without it any peer could publish as a seeder; .*--insecure-open-seeding/,
    );
    assert.equal(loadConfig(trackerSchema, { flags: { seederTokens: "tokens" }, env: {} }).insecureOpenSeeding, false);
    assert.equal(
      loadConfig(trackerSchema, { flags: {}, env: { DS_INSECURE_OPEN_SEEDING: "1" } }).seederTokens,
      undefined,
    );
    assert.throws(
      () => loadConfig(trackerSchema, { flags: { seederTokens: "tokens", insecureOpenSeeding: true }, env: {} }),
      /invalid setting insecure_open_seeding from --insecure-open-seeding: contradicts seeder_tokens/,
    );
  });
});

describe("require_keys", () => {
  it("is off by default; --require-keys or DS_REQUIRE_KEYS=1 (or true) turn it on for tracker and checksum", () => {
    assert.equal(loadConfig(trackerSchema, { flags: { insecureOpenSeeding: true }, env: {} }).requireKeys, false);
    assert.equal(
      loadConfig(trackerSchema, { flags: { requireKeys: true, insecureOpenSeeding: true }, env: {} }).requireKeys,
      true,
    );
    assert.equal(
      loadConfig(trackerSchema, { flags: { insecureOpenSeeding: true }, env: { DS_REQUIRE_KEYS: "1" } }).requireKeys,
      true,
    );
    assert.equal(loadConfig(checksumSchema, { flags: {}, env: { DS_REQUIRE_KEYS: "true" } }).requireKeys, true);
    assert.equal(loadConfig(checksumSchema, { flags: {}, env: { DS_REQUIRE_KEYS: "0" } }).requireKeys, false);
    assert.throws(
      () => loadConfig(checksumSchema, { flags: {}, env: { DS_REQUIRE_KEYS: "yes" } }),
      /invalid setting require_keys from DS_REQUIRE_KEYS/,
    );
  });
});

describe("REDIS_URL", () => {
  it("is the swarm store of up, tracker and dashboard when neither --redis nor DS_REDIS is given", () => {
    const url = "redis://10.0.0.5:6379";
    const dir = mkdtempSync(join(tmpdir(), "ds-up-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const tracker = { insecureOpenSeeding: true };
    assert.equal(preflightTracker(tracker, undefined, { REDIS_URL: url }).cfg.redis, url);
    assert.equal(preflightDashboard({}, undefined, { REDIS_URL: url }).cfg.redis, url);
    assert.equal(
      preflightUp({ media: join(dir, "media"), dataDir: join(dir, "data") }, undefined, { REDIS_URL: url }).redis,
      url,
    );
    const both = { REDIS_URL: url, DS_REDIS: "redis://10.0.0.6:6379" };
    assert.equal(preflightTracker(tracker, undefined, both).cfg.redis, "redis://10.0.0.6:6379");
    assert.equal(
      preflightTracker({ ...tracker, redis: "redis://flag:1" }, undefined, both).cfg.redis,
      "redis://flag:1",
    );
    assert.equal(preflightTracker(tracker, undefined, {}).cfg.redis, undefined, "memory without any");
    assert.throws(
      () => preflightDashboard({}, undefined, { REDIS_URL: "http://x" }),
      /^ConfigError: invalid setting redis from REDIS_URL: expected redis:\/\//,
    );
  });
});
