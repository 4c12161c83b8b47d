#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1
// environment and node flags as packages/client/bin/dsclient.js has them, and why
// Installed as `dsclient` by the npm package (scripts/pack.mjs); in the checkout the
// client's own bin (packages/client/bin/dsclient.js) is, the same command: both run the
// client's one-file bundle.
import "@distribustream/client/dsclient";
