import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import fc from "fast-check";
import { stringify } from "yaml";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { ROOT } from "../support/procs.js";
import { ownMemory, type Entry } from "./campaign.js";
import { mutated } from "./wire.js";

/** The settings schemas of the `distribustream` commands (cmd/distribustream/src/config.ts, loaded from its build). */
type Schemas = typeof import("../../cmd/distribustream/dist/config.js");
type Command = "tracker" | "checksum" | "seeder" | "up" | "dashboard";
const COMMANDS: readonly Command[] = ["tracker", "checksum", "seeder", "up", "dashboard"];

export interface ConfigInput {
  command: Command;
  /** The file's text: YAML or JSON. */
  text: string;
  /** A secret the file holds under a secret's key: it must not appear in an error. */
  secret?: string;
}

const SECRET_KEYS = ["seeder_token", "auth_token", "dashboard_auth_token", "redis", "auth_credentials"];

/**
 * Config files (--conf) of every command through the real loader and the
 * commands' own schemas: mappings of known and unknown keys (including the
 * original DistribuStream's) to absurd values of every YAML type, JSON,
 * YAML features (anchors and aliases, self-references, alias bombs, tags,
 * merge keys, several documents, deep nesting) and mutated valid files.
 * Each must load, or throw ConfigError naming the file or the setting —
 * never another error — and a secret's value never appears in the message.
 */
export async function configEntry(): Promise<Entry<ConfigInput> & { close(): void }> {
  const schemas = (await import(pathToFileURL(join(ROOT, "cmd/distribustream/dist/config.js")).href)) as Schemas;
  const schemaOf = {
    tracker: schemas.trackerSchema,
    checksum: schemas.checksumSchema,
    seeder: schemas.seederSchema,
    up: schemas.upSchema,
    dashboard: schemas.dashboardSchema,
  };
  const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const keys = [
    ...new Set(
      COMMANDS.flatMap((c) => [
        ...Object.keys(schemaOf[c].shape).map(snake),
        ...Object.keys(schemas.originalAliases[c] ?? {}),
      ]),
    ),
  ];
  const dir = mkdtempSync(join(tmpdir(), "ds-fuzz-config-"));
  const file = join(dir, "conf.yaml");

  const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.string({ maxLength: 30 }),
      fc.constantFrom(
        "",
        "0",
        "-1",
        "65536",
        "1e309",
        "NaN",
        "0x10",
        "16M",
        "1.5G",
        "yes",
        "off",
        "~",
        "127.0.0.1:0",
        "pdtps://h:1",
      ),
      fc.double(),
      fc.integer(),
      fc.constantFrom(0, -0, 2 ** 53, 2 ** 64, -(2 ** 63), Number.MAX_VALUE, 1e-300),
      fc.boolean(),
      fc.constant(null),
      fc.nat({ max: 50_000 }).map((n) => "x".repeat(n)),
      fc.array(tie("v"), { maxLength: 4 }),
      fc.dictionary(
        fc.oneof(fc.constantFrom(...keys, "name", "source", "bitrate", "loop"), fc.string({ maxLength: 8 })),
        tie("v"),
        {
          maxKeys: 4,
        },
      ),
    ),
  })).v;
  const mapping = fc.dictionary(
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...keys) },
      { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    ),
    value,
    { maxKeys: 6 },
  );
  // shaped like each kind of secret, so that it gets past the checks of its form
  const secretValue = fc
    .tuple(fc.stringMatching(/^[a-z0-9]{12}$/), fc.constantFrom("dss_ab12_", "redis://u:", "", "rediss://:"))
    .map(([s, prefix]) => `${prefix}S3CRET${s}${prefix.startsWith("redis") ? "@h:1" : ""}`);
  const structured = fc
    .record({
      doc: mapping,
      secret: fc.option(fc.tuple(fc.constantFrom(...SECRET_KEYS), secretValue), { nil: undefined }),
      json: fc.boolean(),
    })
    .map(({ doc, secret, json }) => {
      const d = { ...doc } as Record<string, unknown>;
      if (secret) d[secret[0]] = secret[1];
      let text: string;
      try {
        text = json ? JSON.stringify(d) : stringify(d);
      } catch {
        text = JSON.stringify(d) ?? "{}";
      }
      return { text, ...(secret ? { secret: secret[1] } : {}) };
    });
  const yamlFeatures = fc.constantFrom(
    "a: &a [*a]\n",
    "port: &p\n  x: *p\n",
    "port: !!binary aGVsbG8=\n",
    "port: !!set {1, 2}\n",
    "port: !!timestamp 2001-12-14t21:59:43.10-05:00\n",
    "port: !custom x\n",
    "<<: {port: 1}\n",
    "host: x\n---\nhost: y\n",
    "- a\n- b\n",
    "just a string\n",
    "42\n",
    "\uFEFFport: 1\n",
    "port: 1\nport: 2\n",
    "? [a, b]\n: c\n",
    "host: [".repeat(500) + "]".repeat(500) + "\n",
    `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [${"*a,".repeat(9)}*a]\nc: &c [${"*b,".repeat(9)}*b]\nd: &d [${"*c,".repeat(9)}*c]\nport: [${"*d,".repeat(9)}*d]\n`,
    "media: {toString: 1, __proto__: {polluted: true}}\n",
    "__proto__: {port: 1}\n",
    "constructor: 1\n",
    "live:\n  - name: x\n    source: y\n    bitrate: -1\n",
    "origin:\n  - 'http://127.0.0.1/x a'\n  - 7\n",
    "seeder_tokens: |\n  a\n  b\n",
    "\t port: 1\n",
    "%YAML 9.9\n---\nport: 1\n",
  );
  const valid = fc.constantFrom(
    "port: 6086\nhost: 127.0.0.1\nlog_level: warn\n",
    "file_root: media\nlisten_port: 8000\nvhost: seeder.example\nchunk_size: 262144\n",
    "data_port: 8000\nlive:\n  - name: live/cam\n    source: /dev/null\n    bitrate: 2M\nlive_window: 150\n",
    '{"port": 6086, "max_sessions_per_ip": 64, "max_messages_per_ip": 1000}\n',
  );
  const text = fc.oneof(
    { weight: 5, arbitrary: structured },
    { weight: 2, arbitrary: yamlFeatures.map((t) => ({ text: t })) },
    {
      weight: 3,
      arbitrary: mutated(fc.oneof(valid, yamlFeatures).map((t) => Buffer.from(t))).map((b) => ({
        text: b.toString("utf8"),
      })),
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: "binary" }).map((t) => ({ text: t })) },
  );
  return {
    name: "config",
    arbitrary: fc.tuple(fc.constantFrom(...COMMANDS), text).map(([command, t]) => ({ command, ...t })),
    concurrency: 1,
    async run(input) {
      writeFileSync(file, input.text);
      try {
        loadConfig(schemaOf[input.command], {
          flags: {},
          env: {},
          confFile: file,
          aliases: schemas.originalAliases[input.command],
        });
        return `${input.command}: loaded`;
      } catch (err) {
        if (!(err instanceof ConfigError))
          throw new Error(
            `${input.command} --conf threw ${(err as Error)?.name}: ${String((err as Error)?.message).slice(0, 300)}, not a ConfigError`,
          );
        const msg = err.message;
        // "invalid setting NAME from WHERE: …", or "invalid setting NAME: …" for one left unset that another requires
        if (!msg.includes(file) && !/^invalid setting [a-z_]+( from |: )/.test(msg))
          throw new Error(`a config error that names neither the file nor a setting: ${msg.slice(0, 300)}`);
        if (input.secret && msg.includes(input.secret))
          throw new Error(`a config error shows a secret: ${msg.slice(0, 300)}`);
        return `${input.command}: refused`;
      }
    },
    memory: async () => ownMemory(),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
