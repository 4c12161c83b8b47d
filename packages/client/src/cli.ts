#!/usr/bin/env node
// The dsclient bin (bin/dsclient.js); `distribustream dsclient` runs the same command.
import { exitWith, runDsclient } from "./command.js";

exitWith(runDsclient(process.argv.slice(2)));
