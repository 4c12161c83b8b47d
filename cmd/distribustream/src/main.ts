#!/usr/bin/env node
import { program } from "./program.js";

// `distribustream --help | head -1`: a reader gone early is no crash
process.stdout.on("error", () => {});

// `distribustream dsclient ARGS` is the dsclient command itself, with its own options, help and exit codes
if (process.argv[2] === "dsclient") {
  const { exitWith, runDsclient } = await import("@distribustream/client/command");
  exitWith(runDsclient(process.argv.slice(3)));
} else await program.parseAsync(process.argv);
