#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1
// --max-semi-space-size=1 (MB; V8 lets it grow to 16 by default, and only a flag given at start counts):
// a viewer allocates little that lives, and a young generation kept small is collected sooner, with the
// chunk buffers it holds: peak RSS of a 256 MiB download 94 -> 73 MB, for the same CPU.
// MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (libuv's file and DNS threads) an arena
// of its own, where freed memory lingers; two arenas: peak RSS 72.5 -> 71 MB at 256 MiB and 82 -> 78 MB
// at 4 GiB (`npm run bench -- memory`); its CPU within the spread between runs.
// Installed as `dsclient`. It runs dist/dsclient.mjs, the program compiled and bundled into one file by
// `npm run build` (run by `npm ci`; see scripts/bundle-dsclient.mjs): a viewer starts on 0.28 CPU s, not
// the 0.45 s of loading its ~300 modules one by one.
import "../dist/dsclient.mjs";
