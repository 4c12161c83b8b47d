#!/usr/bin/env node
// Fails when a workspace package imports a package its package.json does not declare
// (dependencies, devDependencies, peerDependencies or optionalDependencies). npm hoists every
// workspace's dependencies into the root node_modules, so an undeclared import still resolves
// here and breaks only where the package is installed on its own.
// Ignored: relative paths, node builtins (node:fs, fs), subpath imports (#x), the package itself.
// Specifiers come from TypeScript's own import scanner (import/export from, import(), require()),
// so import-like text in strings and comments does not count.
//   node scripts/check-imports.mjs
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = fileURLToPath(new URL("..", import.meta.url));
const workspaces = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).workspaces;

// Known gaps in packages whose owners fix them separately: reported, not failed on, so that this
// check still catches new ones. Remove an entry once its package.json declares the import.
const KNOWN = new Set([]);

const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;
function sources(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === "node_modules" || f === "dist") return [];
    return statSync(p).isDirectory() ? sources(p) : SOURCE.test(f) ? [p] : [];
  });
}

/** The package a bare specifier names: "@scope/name/sub" -> "@scope/name", "name/sub" -> "name". */
function packageOf(spec) {
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

const failures = [];
const known = [];
for (const ws of workspaces) {
  const dir = join(root, ws);
  if (!existsSync(join(dir, "package.json"))) continue;
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const declared = new Set(
    ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"].flatMap((k) =>
      Object.keys(pkg[k] ?? {}),
    ),
  );
  const missing = new Map(); // package -> first file that imports it
  for (const file of sources(dir)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
    for (const { fileName: spec } of importedFiles) {
      if (spec.startsWith(".") || spec.startsWith("/") || spec.startsWith("#") || isBuiltin(spec)) continue;
      const name = packageOf(spec);
      if (name === pkg.name || declared.has(name) || missing.has(name)) continue;
      missing.set(name, relative(root, file));
    }
  }
  for (const [name, file] of missing) {
    const line = `${ws} (${pkg.name}) imports ${name} (${file}) but its package.json does not declare it`;
    (KNOWN.has(`${ws} ${name}`) ? known : failures).push(line);
  }
}

for (const line of known) console.warn(`check-imports: known, not failing yet: ${line}`);
if (failures.length > 0) {
  for (const line of failures) console.error(`check-imports: ${line}`);
  console.error("check-imports: declare each one in that package.json, at the version the root lock already uses");
  process.exit(1);
}
console.log(
  `check-imports: ${workspaces.length} workspaces, no undeclared imports` +
    (known.length ? ` besides ${known.length} known` : ""),
);
