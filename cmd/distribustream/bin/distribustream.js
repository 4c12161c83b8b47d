#!/usr/bin/env node
// Installed as `distribustream`; the program is compiled to dist/ by `npm run build` (run by `npm ci`).
import "../dist/main.js";
