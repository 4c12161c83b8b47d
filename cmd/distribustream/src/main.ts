#!/usr/bin/env node
import { program } from "./program.js";

// `distribustream dsclient ARGS` is the dsclient command itself, with its own options, help and exit codes
if (process.argv[2] === "dsclient") {
  const { exitWith, runDsclient } = await import("@distribustream/client/command");
  exitWith(runDsclient(process.argv.slice(3)));
} else {
  // A reader of stdout gone early is no crash trace. Help has exited 0 by the time the error arrives
  // (`distribustream --help | head -1`); a command whose output is its product (a token shown once, a
  // listing) fails with a line saying so.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (process.exitCode) return;
    process.exitCode = 1;
    process.stderr.write(`distribustream: standard output closed before everything was written (${err.code})\n`);
  });
  await program.parseAsync(process.argv);
}
