#!/usr/bin/env node
// Generates the chart's values table (between the markers in its README.md)
// and values.schema.json from the "## @param" comments of values.yaml.
//   node deploy/helm/values-docs.mjs [--check]
// --check regenerates in memory and fails when a file is stale, a value has
// no @param, or an @param names no value.
//
// Comment syntax (that of @bitnami/readme-generator-for-helm, plus schema
// modifiers): "## @section TITLE", "## @param PATH [MODIFIERS] DESCRIPTION"
// with MODIFIERS a comma-separated list of: string, integer, number,
// boolean, array, object (the type; default: inferred from the value),
// nullable, enum: A|B|C, min: N, max: N.
// An object whose members have @params is closed (additionalProperties:
// false, so a misspelt key is refused); an object documented as a whole is
// open. Cross-field rules live in values.schema.rules.json (allOf).
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import * as prettier from "prettier";

const dir = fileURLToPath(new URL("distribustream/", import.meta.url));
const check = process.argv.includes("--check");
const valuesText = readFileSync(dir + "values.yaml", "utf8");
const values = parse(valuesText);

const params = [];
let section = "";
const sections = [];
for (const line of valuesText.split("\n")) {
  const s = /^\s*## @section (.+)$/.exec(line);
  if (s) {
    section = s[1].trim();
    sections.push(section);
    continue;
  }
  const p = /^\s*## @param (\S+)(?: \[([^\]]*)\])? (.+)$/.exec(line);
  if (p) params.push({ path: p[1], mods: parseMods(p[2] ?? ""), description: p[3].trim(), section });
}

function parseMods(text) {
  const mods = {};
  for (const m of text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [k, ...v] = m.split(":");
    const value = v.join(":").trim();
    if (["string", "integer", "number", "boolean", "array", "object"].includes(k)) mods.type = k;
    else if (k === "nullable") mods.nullable = true;
    else if (k === "enum") mods.enum = value.split("|");
    else if (k === "min") mods.minimum = Number(value);
    else if (k === "max") mods.maximum = Number(value);
    else throw new Error(`values.yaml: unknown modifier "${m}"`);
  }
  return mods;
}

const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
const has = (obj, path) => {
  const keys = path.split(".");
  const last = keys.pop();
  const parent = keys.reduce((o, k) => (o == null ? undefined : o[k]), obj);
  return parent != null && typeof parent === "object" && Object.hasOwn(parent, last);
};

const problems = [];
const documented = new Set(params.map((p) => p.path));
for (const p of params) if (!has(values, p.path)) problems.push(`@param ${p.path} names no value in values.yaml`);
// every leaf (or object documented as a whole) needs an @param
(function walk(obj, prefix) {
  for (const [k, v] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (documented.has(path)) continue;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) walk(v, path);
    else problems.push(`${path} has no "## @param ${path} ..." comment in values.yaml`);
  }
})(values, "");

function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (Number.isInteger(v)) return "integer";
  return typeof v;
}

function leafSchema(p) {
  const value = get(values, p.path);
  const type = p.mods.type ?? (typeOf(value) === "null" ? "string" : typeOf(value));
  const schema = { type: p.mods.nullable ? [type, "null"] : type, description: p.description };
  if (type === "number" && Number.isInteger(value)) schema.type = p.mods.nullable ? ["number", "null"] : "number";
  // a number given as 0.2 or 30: a number, not an integer
  if (type === "integer" && p.mods.minimum !== undefined && !Number.isInteger(p.mods.minimum)) schema.type = "number";
  if (p.mods.enum) schema.enum = p.mods.enum;
  if (p.mods.minimum !== undefined) schema.minimum = p.mods.minimum;
  if (p.mods.maximum !== undefined) schema.maximum = p.mods.maximum;
  schema.default = value;
  return schema;
}

function buildSchema() {
  const root = { type: "object", properties: {}, additionalProperties: false };
  for (const p of params) {
    const keys = p.path.split(".");
    let node = root;
    for (const k of keys.slice(0, -1)) {
      node.properties[k] ??= { type: "object", properties: {}, additionalProperties: false };
      node = node.properties[k];
    }
    node.properties[keys.at(-1)] = leafSchema(p);
  }
  const rules = JSON.parse(readFileSync(new URL("values.schema.rules.json", import.meta.url), "utf8"));
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "Values of the distribustream chart (generated from values.yaml by deploy/helm/values-docs.mjs)",
    ...root,
    allOf: rules.allOf,
  };
}

function cell(v) {
  const text = v === "" ? '""' : JSON.stringify(v);
  return "`" + text.replace(/\|/g, "\\|") + "`";
}

function buildTable() {
  let out = "";
  for (const s of sections) {
    const rows = params.filter((p) => p.section === s);
    if (rows.length === 0) continue;
    out += `### ${s}\n\n| Name | Description | Default |\n| --- | --- | --- |\n`;
    for (const p of rows) {
      const allowed = p.mods.enum ? ` (one of ${p.mods.enum.join(", ")})` : "";
      out += `| \`${p.path}\` | ${p.description.replace(/\|/g, "\\|")}${allowed} | ${cell(get(values, p.path))} |\n`;
    }
    out += "\n";
  }
  return out.trimEnd() + "\n";
}

const START = "<!-- values table: generated by deploy/helm/values-docs.mjs -->";
const END = "<!-- end of values table -->";
const readmePath = dir + "README.md";
const readme = readFileSync(readmePath, "utf8");
const a = readme.indexOf(START);
const b = readme.indexOf(END);
if (a < 0 || b < a) problems.push(`README.md lacks the markers ${START} ... ${END}`);
const newReadme =
  a < 0 || b < a ? readme : readme.slice(0, a + START.length) + "\n\n" + buildTable() + "\n" + readme.slice(b);
const schemaPath = dir + "values.schema.json";
const newSchema = await prettier.format(JSON.stringify(buildSchema()), { parser: "json", printWidth: 120 });

if (problems.length > 0) {
  console.error(`values-docs: ${problems.length} problem(s):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
const outputs = [
  [readmePath, readme, newReadme],
  [
    schemaPath,
    (() => {
      try {
        return readFileSync(schemaPath, "utf8");
      } catch {
        return "";
      }
    })(),
    newSchema,
  ],
];
let stale = false;
for (const [path, before, after] of outputs) {
  if (before === after) continue;
  if (check) {
    console.error(`values-docs: ${path} is stale: run npm run gen:helm`);
    stale = true;
  } else {
    writeFileSync(path, after);
    console.log(`values-docs: wrote ${path}`);
  }
}
process.exit(stale ? 1 : 0);
