import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ROOT } from "../support/procs.js";

/**
 * The README against the code (scripts/readme.mjs --check): its generated
 * reference is current, and it names no flag, DS_* variable, metric or
 * setting the code lacks, nor leaves out one the code has. Each way of
 * going wrong is tried on a copy, to see the check catch it.
 */
describe("README", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-readme-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");

  function check(text?: string) {
    const args = [join(ROOT, "scripts/readme.mjs"), "--check"];
    if (text !== undefined) {
      const file = join(dir, "README.md");
      writeFileSync(file, text);
      args.push(file);
    }
    const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 60_000 });
    return { code: r.status, problems: r.stderr };
  }

  /** `text` with `from` replaced (it must be there). */
  function edit(from: string | RegExp, to: string): string {
    assert.match(readme, typeof from === "string" ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) : from);
    return readme.replace(from, to);
  }

  test("is current", () => {
    const r = check();
    assert.equal(r.problems, "");
    assert.equal(r.code, 0);
  });

  test("a generated table that misses an option (or a flag the code gained) is stale", () => {
    const r = check(edit(/^\| `--log-format <format>` \|.*\n/m, ""));
    assert.equal(r.code, 1);
    assert.match(r.problems, /generated part "options (dsclient|distribustream)" is stale: run npm run gen:readme/);
  });

  test("an exit status the help text does not have is stale", () => {
    const r = check(edit("| 1 | unexpected error, or the tracker rejected the request |", "| 1 | unexpected error |"));
    assert.match(r.problems, /generated part "exit dsclient" is stale/);
  });

  test("a command line or inline flag naming an option that does not exist", () => {
    const r = check(
      edit(
        "`distribustream <command> --help` lists every option",
        "`distribustream tracker --ticket-kye k.pem` and `--no-such-flag`; `distribustream <command> --help` lists every option",
      ),
    );
    assert.match(
      r.problems,
      /`distribustream tracker --ticket-kye k\.pem`: distribustream tracker has no option --ticket-kye/,
    );
    assert.match(r.problems, /`--no-such-flag`: no command has the option --no-such-flag/);
    const client = check(
      edit("npx dsclient pdtp://localhost:6086/demo.bin", "npx dsclient --lisen-port 1 pdtp://localhost:6086/demo.bin"),
    );
    assert.match(client.problems, /dsclient has no option --lisen-port/);
  });

  test("an environment variable, a metric or a setting that nothing has", () => {
    const r = check(
      edit(
        "**Chunk size.** 256 KiB is the default",
        "`DS_NO_SUCH`, `pdtp_tracker_no_such_total`, YAML `no_such_key`. **Chunk size.** 256 KiB is the default",
      ),
    );
    assert.match(r.problems, /README names the environment variable DS_NO_SUCH, which nothing reads/);
    assert.match(r.problems, /README names the metric pdtp_tracker_no_such_total, which nothing registers/);
    assert.match(r.problems, /README shows `no_such_key`, which is no setting/);
  });

  test("a metric or an environment variable the code has but the README leaves out", () => {
    const metric = check(edit(/^\| `pdtp_tracker_streams` \|.*\n/m, ""));
    assert.match(metric.problems, /the metric pdtp_tracker_streams is not in the README/);
    const env = check(readme.replace(/REDIS_URL/g, "THE_URL"));
    assert.match(env.problems, /the environment variable REDIS_URL is not in the README/);
  });

  test("a command whose exit statuses are generated nowhere", () => {
    const r = check(
      edit(
        /<!-- begin generated: exit distribustream healthcheck -->[\s\S]*?<!-- end generated: exit distribustream healthcheck -->\n/,
        "",
      ),
    );
    assert.match(r.problems, /the exit statuses of distribustream healthcheck are in no generated part/);
  });
});
