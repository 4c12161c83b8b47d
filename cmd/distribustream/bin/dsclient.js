#!/usr/bin/env -S node --max-semi-space-size=1
// node flags as packages/client/bin/dsclient.js has them, and why
// Installed as `dsclient` by the npm package (scripts/pack.mjs); in the checkout the
// client's own bin (packages/client/bin/dsclient.js) is, the same command.
import { exitWith, runDsclient } from "@distribustream/client/command";

exitWith(runDsclient(process.argv.slice(2)));
