#!/usr/bin/env node
import { exitWith, runDsclient } from "@distribustream/client/command";
import { program } from "./program.js";

// `distribustream dsclient ARGS` is the dsclient command itself, with its own options, help and exit codes
if (process.argv[2] === "dsclient") exitWith(runDsclient(process.argv.slice(3)));
else await program.parseAsync(process.argv);
