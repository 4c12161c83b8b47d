import { readFileSync } from "node:fs";

/** The version of this package (its package.json, beside dist/): what --version prints. */
export const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;
