// The compose file's demo-media job: writes DIR/demo.bin (16 MiB of random bytes, as
// `distribustream up` does) unless it is there, so that the seeder has a file to publish.
//   node make-demo-media.mjs DIR
import { randomBytes } from "node:crypto";
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2] ?? "/data/media";
const file = join(dir, "demo.bin");
if (existsSync(file)) {
  console.log(`${file}: kept`);
} else {
  writeFileSync(`${file}.tmp`, randomBytes(16 * 1024 * 1024));
  renameSync(`${file}.tmp`, file); // the seeder's folder watch sees it whole
  console.log(`${file}: created (16 MiB)`);
}
