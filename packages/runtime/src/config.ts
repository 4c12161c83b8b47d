import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { z } from "zod";
import { LOG_FORMATS } from "./log.js";

export { z };

import { ConfigError } from "./configError.js";

export { ConfigError };

export interface ConfigSources {
  /** Flags the user set (commander's opts() with no defaults), keyed by setting name. */
  flags: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
  /** YAML file given with --conf (or DS_CONF); its keys are snake_case setting names. */
  confFile?: string | undefined;
  /** YAML keys of the original DistribuStream that map to another setting, e.g. file_root -> media. */
  aliases?: Record<string, string> | undefined;
  /** Environment variables read for a setting when its DS_ variable is not set, e.g. redis -> REDIS_URL. */
  envFallbacks?: Record<string, string> | undefined;
}

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (k: string) => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
/** A setting's YAML key: `dataPort` is `data_port`. */
export const yamlKey = snake;
/** A setting's environment variable: `dataPort` is `DS_DATA_PORT`. */
export const envName = (k: string) => `DS_${snake(k).toUpperCase()}`;
/** A setting's flag: `dataPort` is `--data-port`. */
export const settingFlag = (k: string) => `--${snake(k).replace(/_/g, "-")}`;

/**
 * The YAML parser, loaded when a config file is read: most runs have none,
 * and loading it costs every dsclient about 9 MB of RSS and 20 ms. Two things
 * the parser only warns about are refused like errors: an unknown tag such as
 * `!custom` (it printed a process warning and read the value as a plain
 * string) and an unsupported `%YAML` version; other warnings (style) are not.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)("yaml") as typeof import("yaml");
  const doc = yaml.parseDocument(text);
  const problem =
    doc.errors[0] ?? doc.warnings.find((w) => w.code === "TAG_RESOLVE_FAILED" || w.code === "BAD_DIRECTIVE");
  if (problem) throw problem;
  return doc.toJS();
}

/**
 * Loads one typed, frozen config from, lowest precedence first: the schema's
 * defaults, the YAML file, DS_* environment variables, flags. Unknown YAML
 * keys and invalid values throw ConfigError naming the setting.
 */
export function loadConfig<S extends z.ZodObject>(schema: S, src: ConfigSources): Readonly<z.infer<S>> {
  const keys = Object.keys(schema.shape);
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};

  const confFile = src.confFile ?? src.env.DS_CONF;
  if (confFile) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(confFile, "utf8"));
    } catch (err) {
      throw new ConfigError(`cannot read config file ${confFile}: ${(err as Error).message}`);
    }
    if (doc != null && (typeof doc !== "object" || Array.isArray(doc))) {
      throw new ConfigError(`config file ${confFile} must be a mapping of setting: value`);
    }
    for (const [rawKey, value] of Object.entries((doc ?? {}) as Record<string, unknown>)) {
      const key = src.aliases?.[rawKey] ?? camel(rawKey);
      if (!keys.includes(key)) {
        const known = keys.map(snake).join(", ");
        throw new ConfigError(`unknown setting "${rawKey}" in ${confFile} (known: ${known})`);
      }
      merged[key] = value;
      origin[key] = `"${rawKey}" in ${confFile}`;
    }
  }
  for (const key of keys) {
    for (const name of [src.envFallbacks?.[key], envName(key)]) {
      const v = name === undefined ? undefined : src.env[name];
      if (v !== undefined && v !== "") {
        merged[key] = v;
        origin[key] = name!;
      }
    }
  }
  for (const key of keys) {
    const v = src.flags[key];
    if (v !== undefined) {
      merged[key] = v;
      origin[key] = settingFlag(key);
    }
  }

  const result = schema.safeParse(merged);
  if (!result.success) {
    const msgs = result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const from = origin[key] === undefined ? "" : ` from ${origin[key]}`; // nothing to name for a setting left unset
      const shown =
        key in merged && !/key|secret|credential|password|token|redis/i.test(key)
          ? ` (got ${preview(merged[key])})`
          : "";
      return `invalid setting ${snake(key)}${from}: ${issue.message}${shown}`;
    });
    throw new ConfigError(msgs.join("; "));
  }
  return Object.freeze(result.data);
}

/**
 * A bad value as the error shows it: JSON, shortened; a value that does not
 * serialise (a YAML alias inside its own anchor makes a circular one) is
 * described instead of failing the error.
 */
function preview(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = Array.isArray(v) ? "a list that contains itself" : "a mapping that contains itself";
  }
  s ??= String(v);
  return s.length > 200 ? `${s.slice(0, 200)}… (${s.length} characters)` : s;
}

/** Shared field types. Numbers accept strings from env and flags. */
export const port = (def: number) => z.coerce.number().int().min(0).max(65535).default(def);
export const host = (def: string) => z.string().min(1).default(def);
export const hostPort = (def: string) =>
  z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected HOST:PORT")
    .default(def);
export const logLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info");
/** json or pretty; unset: pretty on a terminal, JSON otherwise (see createLogger). */
export const logFormat = z.enum(LOG_FORMATS).optional();
