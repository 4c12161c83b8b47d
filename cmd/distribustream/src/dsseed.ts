#!/usr/bin/env node
// `dsseed [options]`: the original's seeder command name, same as `distribustream seeder [options]`.
process.argv.splice(2, 0, "seeder");
await import("./main.js");
