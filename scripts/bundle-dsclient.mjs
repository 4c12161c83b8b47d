#!/usr/bin/env node
// Bundles the compiled dsclient (packages/client/dist/cli.js and everything it imports,
// third-party packages included) into one file, packages/client/dist/dsclient.mjs, which
// the `dsclient` bins run. Part of `npm run build`, after tsc.
//
// Why: a viewer is a short-lived process, and a flash crowd starts many at once. Loaded
// as ~300 modules, dsclient spends 0.45 CPU s and 66 MB before its first byte (resolving,
// reading and compiling each file); as one file with whitespace and dead code removed,
// 0.28 CPU s and 58 MB. Identifiers are kept, so stack traces still name functions; the
// source map beside it (not shipped) maps back with `node --enable-source-maps`.
//   node scripts/bundle-dsclient.mjs
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = `${root}packages/client/dist`;

await build({
  entryPoints: [`${dist}/cli.js`],
  // beside cli.js, so that what finds files relative to its own module (the client's
  // ../package.json for --version) finds the same ones
  outfile: `${dist}/dsclient.mjs`,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  legalComments: "eof",
  logLevel: "warning",
  // CommonJS packages inside an ES module bundle require node's builtins: give them `require`
  banner: {
    js: 'import { createRequire as __dsRequire } from "node:module"; const require = __dsRequire(import.meta.url);',
  },
});
