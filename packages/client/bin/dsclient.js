#!/usr/bin/env node
// Installed as `dsclient`; the program is compiled to dist/ by `npm run build` (run by `npm ci`).
import "../dist/cli.js";
