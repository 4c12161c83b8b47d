#!/usr/bin/env node
// After `tsc -b`: make every workspace's bin targets executable. npm links bins
// during `npm ci`, before `prepare` has compiled them, so it cannot set the mode.
import { chmodSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const { workspaces } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
for (const ws of workspaces) {
  const pkg = JSON.parse(readFileSync(join(root, ws, "package.json"), "utf8"));
  for (const target of Object.values(pkg.bin ?? {})) {
    const file = join(root, ws, target);
    if (existsSync(file)) chmodSync(file, 0o755);
  }
}
