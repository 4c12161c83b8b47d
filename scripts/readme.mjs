#!/usr/bin/env node
// The README's reference, generated from the code, and a check that the rest of the
// README names nothing the code does not have.
//
//   node scripts/readme.mjs                  rewrite the generated parts of README.md
//   node scripts/readme.mjs --check [FILE]   exit 1 listing every problem (FILE: another README)
//
// Run it on a built tree (npm run build): it reads the compiled command definitions.
//
// Generated parts sit between <!-- begin generated: WHAT --> and <!-- end generated: WHAT -->:
//   contents                       the table of contents (## and ### headings)
//   options distribustream|dsclient  every option of every (sub)command, read from the
//                                  commander definitions, with the DS_* variable and the
//                                  YAML key of the setting it sets (from commandSettings
//                                  and the dsclient schema, named by the same functions
//                                  loadConfig uses)
//   exit PROGRAM [SUBCOMMAND]      the exit statuses, read from that command's help text
// The check (also run by test/e2e/readme.test.ts) fails when a generated part is stale,
// when a command's options or exit statuses are not generated anywhere, and when the
// README (outside generated parts) or a help text
//   - names a flag a command does not have: every command line of distribustream,
//     dsclient or dsseed in code (fenced or inline) is parsed against that command's
//     options, and an inline `--flag` must be an option of one of our commands or of a
//     bench script (their parseArgs options), or be listed in OTHER_TOOLS_FLAGS;
//   - names a DS_* variable that no setting, no environment read in the source
//     (env.DS_X, env["DS_X"]) and no compose file variable has;
//   - names a pdtp_* metric that no source file registers (a string literal "pdtp_…"
//     in packages/ and services/, so metric names must be literals), or leaves one out;
//   - shows a `snake_case` name in code that is no YAML key, no proto field and not in
//     OTHER_SNAKE_CASE.
import { readFileSync, readdirSync, statSync, writeFileSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const check = args.includes("--check");
const readmePath = args.find((a) => !a.startsWith("--")) ?? join(root, "README.md");

/** Flags of other tools that the README shows inline (outside their command lines). */
const OTHER_TOOLS_FLAGS = new Set([
  "--network", // docker run
  "--read-only", // docker run
  "--tmpfs", // docker run
  "--build", // docker compose up
  "--dry-run", // kubectl
  "--prefer-offline", // npm
  "--on-bt-download-complete", // aria2c
  "--seed-ratio", // aria2c
  "--limit-rate", // curl
]);
/** snake_case words in code that are neither settings nor protocol fields. */
const OTHER_SNAKE_CASE = new Set([
  "random_access_indicator", // MPEG-TS
  "used_memory", // Redis INFO
  "node_modules",
  "limit_rate", // nginx
  "bad_data", // label values: pdtp_tracker_sources_banned_total{reason}
  "bad_request", // pdtp_dashboard_requests_refused_total{reason}
]);

const dist = (path) => {
  const file = join(root, path);
  if (!existsSync(file)) {
    console.error(`readme: ${path} is missing: build first (npm run build)`);
    process.exit(2);
  }
  return import(pathToFileURL(file).href);
};
const { program } = await dist("cmd/distribustream/dist/program.js");
const { commandSettings } = await dist("cmd/distribustream/dist/config.js");
const { dsclientProgram } = await dist("packages/client/dist/command.js");
const { clientConfigSchema } = await dist("packages/client/dist/config.js");
const { envName, yamlKey } = await dist("packages/runtime/dist/config.js");

// ---------------------------------------------------------------------------
// What the code has

/** Every command of both programs, depth first: { path, cmd, settings, program }. */
function commands() {
  const all = [];
  const walk = (cmd, path, settingsOf) => {
    all.push({ path, cmd, settings: settingsOf(path) });
    for (const sub of cmd.commands) {
      if (path === "distribustream" && sub.name() === "dsclient") continue; // the dsclient program itself, below
      walk(sub, `${path} ${sub.name()}`, settingsOf);
    }
  };
  walk(program, "distribustream", (path) => commandSettings[path.replace(/^distribustream ?/, "")]);
  // dsclient ls / info read two of dsclient's settings (browse.ts)
  const browseSchema = clientConfigSchema.pick({ connectAttempts: true, tlsCa: true });
  walk(dsclientProgram(), "dsclient", (path) =>
    path === "dsclient"
      ? { schema: clientConfigSchema, yaml: true }
      : /^dsclient (ls|info)$/.test(path)
        ? { schema: browseSchema, yaml: true }
        : undefined,
  );
  return all;
}
const COMMANDS = commands();
const byPath = new Map(COMMANDS.map((c) => [c.path, c]));

const schemaKeys = (settings) => (settings ? Object.keys(settings.schema.shape) : []);

/** An option's setting (schema key) on its command, or undefined. */
function settingOf(opt, settings) {
  if (!settings) return undefined;
  const key = settings.flags?.[opt.attributeName()] ?? opt.attributeName();
  return schemaKeys(settings).includes(key) ? key : undefined;
}
const envOf = (key, settings) => [envName(key), ...(settings.envFallbacks?.[key] ? [settings.envFallbacks[key]] : [])];
const yamlOf = (key, settings) =>
  settings.yaml
    ? [yamlKey(key), ...Object.entries(settings.aliases ?? {}).flatMap(([alias, to]) => (to === key ? [alias] : []))]
    : [];

/** Options a command shows in its reference (--help and --version are everywhere). */
const shownOptions = (cmd) => cmd.options.filter((o) => !o.hidden && o.long !== "--version");
const GENERIC = new Set(["conf", "checkConfig", "version"]);

function problemsOfDefinitions() {
  const problems = [];
  for (const { path, cmd, settings } of COMMANDS) {
    // a setting no flag sets is explained by its schema (zod's .describe())
    const flagged = new Set(cmd.options.map((o) => settingOf(o, settings)));
    for (const key of schemaKeys(settings)) {
      if (!flagged.has(key) && !settings.schema.shape[key].description) {
        problems.push(`${path}: the setting ${yamlKey(key)} has no flag and no .describe() text to show`);
      }
    }
    // a service's every option is a setting, so that flag, environment and YAML agree
    if (!settings?.yaml || path.startsWith("dsclient")) continue;
    for (const opt of shownOptions(cmd)) {
      if (!GENERIC.has(opt.attributeName()) && !settingOf(opt, settings)) {
        problems.push(`${path} ${opt.long} sets no setting of its schema: add it there, or to commandSettings' flags`);
      }
    }
  }
  return problems;
}

/** The names of every DS_* (and fallback) variable the settings read. */
function settingVariables() {
  const names = new Set(["DS_CONF"]);
  for (const { settings } of COMMANDS) {
    for (const key of schemaKeys(settings)) for (const v of envOf(key, settings)) names.add(v);
  }
  return names;
}

function sourceFiles(dir, exts) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === "node_modules" || f === "dist" || f === "gen") return [];
    if (statSync(p).isDirectory()) return sourceFiles(p, exts);
    return exts.some((e) => f.endsWith(e)) && !f.endsWith(".test.ts") ? [p] : [];
  });
}
const CODE = ["packages", "services", "cmd"].flatMap((d) =>
  sourceFiles(join(root, d), [".ts"]).filter((f) => !f.includes("/testing/")),
);
const codeText = CODE.map((f) => [f, readFileSync(f, "utf8")]);

/** Environment variables the source reads by name: env.X, env["X"] (DS_* and REDIS_URL). */
function readVariables() {
  const names = new Set();
  for (const [, text] of codeText) {
    for (const m of text.matchAll(/\benv(?:\.|\[["'])((?:DS_[A-Z0-9_]+)|REDIS_URL)\b/g)) names.add(m[1]);
  }
  return names;
}

/** Variables of the compose file and its .env example (not read by the code: by docker compose). */
function composeVariables() {
  const names = new Set();
  for (const f of ["docker-compose.yml", ".env.example"]) {
    const p = join(root, f);
    if (!existsSync(p)) continue;
    for (const m of readFileSync(p, "utf8").matchAll(/\b(DS_[A-Z0-9_]+)\b/g)) names.add(m[1]);
  }
  return names;
}

/** Metric names registered in the source: every "pdtp_…" string literal. */
function metricNames() {
  const names = new Set();
  const problems = [];
  for (const [file, text] of codeText) {
    for (const m of text.matchAll(/["'](pdtp_[a-z0-9_]+)["']/g)) names.add(m[1]);
    if (/`pdtp_[a-z0-9_]*\$\{/.test(text)) {
      problems.push(`${relative(root, file)} builds a metric name from a template: write it as a literal`);
    }
  }
  return { names, problems };
}

/** Setting names in snake_case (the YAML keys of the commands that read a --conf file, and their aliases). */
function settingNames() {
  const keys = new Set();
  for (const { settings } of COMMANDS) {
    for (const key of schemaKeys(settings)) keys.add(yamlKey(key));
    for (const alias of Object.keys(settings?.aliases ?? {})) keys.add(alias);
  }
  return keys;
}

function protoFields() {
  const fields = new Set();
  for (const f of sourceFiles(join(root, "proto"), [".proto"])) {
    for (const m of readFileSync(f, "utf8").matchAll(/\b([a-z][a-z0-9_]*)\s*=\s*\d+\s*[;[]/g)) fields.add(m[1]);
  }
  return fields;
}

/** Options of the bench scripts (their parseArgs option names). */
function benchFlags() {
  const flags = new Set();
  for (const f of sourceFiles(join(root, "bench"), [".mjs"])) {
    const text = readFileSync(f, "utf8");
    for (const block of text.matchAll(/options:\s*\{([\s\S]*?)\n\s*\},?\n/g)) {
      for (const m of block[1].matchAll(/^\s*"?([a-z][a-z0-9-]*)"?:\s*\{\s*type/gm)) flags.add(`--${m[1]}`);
    }
  }
  return flags;
}

/** A command's help text, with what addHelpText adds. */
function helpText(cmd) {
  let out = "";
  const saved = { ...cmd.configureOutput() };
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  cmd.outputHelp();
  cmd.configureOutput(saved);
  return out;
}

/** The "Exit status:" (or "Exit codes:") block of a help text: [[status, text]], or undefined. */
function exitBlock(help) {
  const lines = help.split("\n");
  const start = lines.findIndex((l) => /^Exit (status|codes):$/.test(l));
  if (start < 0) return undefined;
  const rows = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === "") break;
    const entry = /^ {2}(\S+) {2,}(.*)$/.exec(line);
    if (entry) rows.push([entry[1], entry[2].trim()]);
    else if (rows.length > 0) rows[rows.length - 1][1] += ` ${line.trim()}`;
  }
  return rows;
}

// ---------------------------------------------------------------------------
// Generated parts

const cell = (s) => s.replace(/\|/g, "\\|");
const code = (s) => `\`${s}\``;

function optionRows(cmd, settings, options) {
  const rows = options.map((opt) => {
    const key = settingOf(opt, settings);
    const conf = opt.attributeName() === "conf" && settings?.yaml;
    const env = key ? envOf(key, settings).map(code).join(" or ") : conf ? code("DS_CONF") : "";
    const yaml = key ? yamlOf(key, settings).map(code).join(", ") : "";
    const choices = opt.argChoices ? ` (${opt.argChoices.join(", ")})` : "";
    return `| ${code(opt.flags)} | ${env || "—"} | ${yaml || "—"} | ${cell(opt.description + choices)} |`;
  });
  // settings of the command that no flag sets: environment and YAML only
  const flagged = new Set(cmd.options.map((o) => settingOf(o, settings)));
  for (const key of schemaKeys(settings)) {
    if (flagged.has(key)) continue;
    const env = envOf(key, settings).map(code).join(" or ");
    const yaml = yamlOf(key, settings).map(code).join(", ") || "—";
    rows.push(`| (no flag) | ${env} | ${yaml} | ${cell(settings.schema.shape[key].description ?? "")} |`);
  }
  return rows.length === 0 ? [] : ["| option | environment | YAML | meaning |", "| --- | --- | --- | --- |", ...rows];
}

function usageOf({ path, cmd }) {
  const argsText = cmd.registeredArguments
    .map((a) => (a.required ? `<${a.name()}${a.variadic ? "..." : ""}>` : `[${a.name()}${a.variadic ? "..." : ""}]`))
    .join(" ");
  return [path, argsText].filter(Boolean).join(" ");
}

function generateOptions(programName) {
  const out = [];
  const mine = COMMANDS.filter((c) => c.path === programName || c.path.startsWith(`${programName} `));
  // options every service shares (same flags, same text): shown once (dsclient's subcommands are no services)
  const services =
    programName === "distribustream" ? mine.filter((c) => c.settings?.yaml && c.path !== programName) : [];
  const common =
    services.length < 2
      ? []
      : shownOptions(services[0].cmd).filter((o) =>
          services.every(({ cmd }) => cmd.options.some((x) => x.flags === o.flags && x.description === o.description)),
        );
  const isCommon = (o) => common.some((c) => c.flags === o.flags);
  if (common.length > 0) {
    out.push(
      `#### Every service: ${services.map((s) => code(s.path.split(" ").slice(1).join(" "))).join(", ")}`,
      "",
      ...optionRows(services[0].cmd, services[0].settings, common),
      "",
    );
  }
  for (const c of mine) {
    const options = shownOptions(c.cmd).filter((o) => !(services.includes(c) && isCommon(o)));
    const rows = optionRows(c.cmd, c.settings, options);
    if (c.path === programName) {
      if (rows.length > 0) out.push(...rows, "");
      continue;
    }
    if (rows.length === 0 && c.cmd.registeredArguments.length === 0) continue; // a group: its subcommands follow
    out.push(`#### ${code(usageOf(c))}`, "", cell(c.cmd.description()), "");
    for (const a of c.cmd.registeredArguments) out.push(`${code(a.name())}: ${a.description}`, "");
    if (rows.length > 0) out.push(...rows, "");
  }
  return out.join("\n").trimEnd();
}

function generateExit(path) {
  const c = byPath.get(path);
  if (!c) throw new Error(`no command "${path}"`);
  const rows = exitBlock(helpText(c.cmd));
  if (!rows) throw new Error(`the help of "${path}" lists no exit status`);
  return [
    "| status | meaning |",
    "| --- | --- |",
    ...rows.map(([s, t]) => `| ${s.replace(/\//g, " / ")} | ${cell(t)} |`),
  ].join("\n");
}

/** GitHub's heading anchors (github-slugger): lower case, punctuation dropped, spaces as dashes, repeats numbered. */
function slugger() {
  const seen = new Map();
  return (heading) => {
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    return n === 0 ? base : `${base}-${n}`;
  };
}

/** The headings of a README (not in fenced code): [{ level, text }]. */
function headings(text) {
  let fenced = false;
  const found = [];
  for (const line of text.split("\n")) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const m = !fenced && /^(#{1,6}) (.+)$/.exec(line);
    if (m) found.push({ level: m[1].length, text: m[2].trim() });
  }
  return found;
}

function generateContents(text) {
  const slug = slugger();
  const lines = [];
  for (const h of headings(text)) {
    const anchor = slug(h.text);
    if (h.level < 2 || h.level > 3 || h.text === "Contents") continue;
    lines.push(`${h.level === 3 ? "  " : ""}- [${h.text}](#${anchor})`);
  }
  return lines.join("\n");
}

const MARKER = /<!-- begin generated: ([^>]+?) -->\n[\s\S]*?<!-- end generated: \1 -->/g;
const NOTE = "<!-- generated by npm run gen:readme from the code: edit the code, not this -->";

function generate(text) {
  const render = (what, current) => {
    const [kind, ...rest] = what.split(" ");
    if (kind === "contents") return generateContents(current);
    if (kind === "options") return generateOptions(rest.join(" "));
    if (kind === "exit") return generateExit(rest.join(" "));
    throw new Error(`unknown generated part "${what}"`);
  };
  // twice: the contents list the headings the options parts add
  let out = text;
  for (let i = 0; i < 2; i++) {
    const current = out;
    out = current.replace(
      MARKER,
      (_, what) =>
        `<!-- begin generated: ${what} -->\n${NOTE}\n\n${render(what, current)}\n\n<!-- end generated: ${what} -->`,
    );
  }
  return out;
}

// ---------------------------------------------------------------------------
// The check

/** The README without its generated parts, and those parts' names. */
function handWritten(text) {
  const parts = [];
  const rest = text.replace(MARKER, (_, what) => {
    parts.push(what);
    return "";
  });
  return { rest, parts };
}

/** Code in markdown: inline spans and fenced blocks' lines (a trailing \ joins lines). */
function codeSegments(text) {
  const segs = [];
  let fenced = false;
  let block = [];
  for (const line of text.split("\n")) {
    if (/^\s*```/.test(line)) {
      if (fenced)
        segs.push(
          ...block
            .join("\n")
            .replace(/\\\n/g, " ")
            .split("\n")
            .map((l) => ({ text: l, fenced: true })),
        );
      fenced = !fenced;
      block = [];
      continue;
    }
    if (fenced) block.push(line);
    else for (const m of line.matchAll(/`([^`]+)`/g)) segs.push({ text: m[1], fenced: false });
  }
  return segs;
}

const PROGRAMS = { distribustream: "distribustream", dsclient: "dsclient", dsseed: "distribustream seeder" };

/** The command a shell command line runs of ours and the tokens after it, or undefined. */
function ourCommandLine(tokens) {
  // the command by name, a bin by its path (…/distribustream.js), or the image by its name (distribustream:TAG)
  const i = tokens.findIndex((t) =>
    /^(distribustream|dsclient|dsseed)$|\/(distribustream|dsclient|dsseed)\.js$|^distribustream:\S+$/.test(t),
  );
  if (i < 0) return undefined;
  const name = tokens[i]
    .split("/")
    .pop()
    .replace(/\.js$/, "")
    .replace(/^distribustream:\S+$/, "distribustream");
  let path = PROGRAMS[name];
  let j = i + 1;
  if (path === "distribustream" && tokens[j] === "dsclient") {
    path = "dsclient";
    j++;
  }
  while (j < tokens.length) {
    const next = `${path} ${tokens[j]}`;
    if (!byPath.has(next)) break;
    path = next;
    j++;
  }
  return { path, rest: tokens.slice(j) };
}

function optionNames(cmd) {
  const names = new Set(["--help", "-h"]);
  for (const o of cmd.options) {
    if (o.long) names.add(o.long);
    if (o.short) names.add(o.short);
  }
  return names;
}

function flagProblems(text, where) {
  const problems = [];
  const ours = new Set(COMMANDS.flatMap((c) => [...optionNames(c.cmd)]));
  const bench = benchFlags();
  for (const seg of codeSegments(text)) {
    const commandsInSeg = seg.text.replace(/(^|\s)#.*$/, "").split(/\|\|?|;|&&?|\$\(|\)/);
    let checkedOurs = false;
    for (const line of commandsInSeg) {
      const tokens = line.trim().split(/\s+/).filter(Boolean);
      const mine = ourCommandLine(tokens);
      if (!mine) continue;
      checkedOurs = true;
      const names = optionNames(byPath.get(mine.path).cmd);
      for (const t of mine.rest) {
        if (t === "--") break;
        const flag = /^(--?[A-Za-z][\w-]*)/.exec(t)?.[1];
        if (flag && !names.has(flag))
          problems.push(`${where}: \`${seg.text.trim()}\`: ${mine.path} has no option ${flag}`);
      }
    }
    // an inline `--flag …` in prose: a flag of one of our commands, or of a bench script
    const lead = !seg.fenced && !checkedOurs && /^(--[a-z][a-z0-9-]*)/.exec(seg.text)?.[1];
    if (lead && !ours.has(lead) && !bench.has(lead) && !OTHER_TOOLS_FLAGS.has(lead)) {
      problems.push(`${where}: \`${seg.text}\`: no command has the option ${lead}`);
    }
  }
  return problems;
}

function checkReadme(text) {
  const problems = [...problemsOfDefinitions()];
  const expected = generate(text);
  const { rest, parts } = handWritten(text);
  if (expected !== text) {
    const { parts: stale } = handWritten(text);
    const current = new Map([...text.matchAll(MARKER)].map((m) => [m[1], m[0]]));
    const fresh = new Map([...expected.matchAll(MARKER)].map((m) => [m[1], m[0]]));
    for (const what of stale) {
      if (current.get(what) !== fresh.get(what))
        problems.push(`generated part "${what}" is stale: run npm run gen:readme`);
    }
  }

  // every command's options and exit statuses are generated somewhere
  for (const name of ["distribustream", "dsclient"]) {
    if (!parts.includes(`options ${name}`)) problems.push(`no generated part "options ${name}"`);
  }
  const exits = new Map();
  for (const { path, cmd } of COMMANDS) {
    const rows = exitBlock(helpText(cmd));
    if (rows) exits.set(JSON.stringify(rows), [...(exits.get(JSON.stringify(rows)) ?? []), path]);
  }
  for (const paths of exits.values()) {
    if (!paths.some((p) => parts.includes(`exit ${p}`))) {
      problems.push(`the exit statuses of ${paths.join(", ")} are in no generated part "exit ${paths[0]}"`);
    }
  }

  // flags
  problems.push(...flagProblems(rest, "README"));

  // environment variables
  const settingVars = settingVariables();
  const readVars = readVariables();
  const known = new Set([...settingVars, ...readVars, ...composeVariables()]);
  for (const v of new Set([...settingVars, ...readVars])) {
    if (!new RegExp(`\\b${v}\\b`).test(text)) problems.push(`the environment variable ${v} is not in the README`);
  }
  for (const m of new Set([...rest.matchAll(/\bDS_[A-Z0-9_]*[A-Z0-9]\b/g)].map((x) => x[0]))) {
    if (!known.has(m)) problems.push(`README names the environment variable ${m}, which nothing reads`);
  }
  for (const { path, cmd } of COMMANDS) {
    for (const m of new Set([...helpText(cmd).matchAll(/\bDS_[A-Z0-9_]*[A-Z0-9]\b/g)].map((x) => x[0]))) {
      if (!known.has(m)) problems.push(`the help of ${path} names the environment variable ${m}, which nothing reads`);
    }
  }

  // metrics
  const metrics = metricNames();
  problems.push(...metrics.problems);
  for (const name of metrics.names) {
    if (!new RegExp(`\\b${name}\\b`).test(rest)) problems.push(`the metric ${name} is not in the README`);
  }
  for (const m of new Set([...rest.matchAll(/\bpdtp_[a-z0-9_]*[a-z0-9*]/g)].map((x) => x[0]))) {
    const base = m.replace(/_(sum|count|bucket)$/, "");
    if (!metrics.names.has(m) && !metrics.names.has(base))
      problems.push(`README names the metric ${m}, which nothing registers`);
  }

  // snake_case names in code: YAML keys, protocol fields, or known others
  const snakeKnown = new Set([...settingNames(), ...protoFields(), ...OTHER_SNAKE_CASE]);
  for (const seg of codeSegments(rest).filter((s) => !s.fenced)) {
    const m = /^([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?::.*)?$/.exec(seg.text);
    if (m && !m[1].startsWith("pdtp_") && !snakeKnown.has(m[1])) {
      problems.push(`README shows \`${seg.text}\`, which is no setting (nor a protocol field)`);
    }
  }
  return [...new Set(problems)];
}

const text = readFileSync(readmePath, "utf8");
if (check) {
  const problems = checkReadme(text);
  for (const p of problems) console.error(`readme: ${p}`);
  if (problems.length > 0) {
    console.error(`readme: ${problems.length} problem(s) in ${relative(process.cwd(), readmePath) || readmePath}`);
    process.exit(1);
  }
  console.log(`readme: ${relative(process.cwd(), readmePath) || readmePath} is current`);
} else {
  const definitionProblems = problemsOfDefinitions();
  if (definitionProblems.length > 0) {
    for (const p of definitionProblems) console.error(`readme: ${p}`);
    process.exit(1);
  }
  const out = generate(text);
  if (out !== text) writeFileSync(readmePath, out);
  console.log(`readme: ${out === text ? "unchanged" : "generated parts rewritten"}`);
}
