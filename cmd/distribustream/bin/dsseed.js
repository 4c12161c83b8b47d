#!/usr/bin/env node
// Installed as `dsseed` (the original seeder command): `distribustream seeder`.
import "../dist/dsseed.js";
