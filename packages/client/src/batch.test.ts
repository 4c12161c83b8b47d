import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { batchExitCode, readUrlList, runJobs } from "./batch.js";

test("readUrlList: one URL a line, trimmed; blank lines and # comments skipped; places named", async () => {
  const stdin = Readable.from([Buffer.from("# list\r\n\r\n pdtp://h/a \npdtp://h/b\n#pdtp://h/c\n")]);
  assert.deepEqual(await readUrlList("-", stdin), [
    { url: "pdtp://h/a", where: "standard input:3" },
    { url: "pdtp://h/b", where: "standard input:4" },
  ]);
});

test("runJobs: at most `jobs` at once, started in list order; none started after an abort", async () => {
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const ac = new AbortController();
  const codes = await runJobs(
    [0, 1, 2, 3, 4, 5],
    2,
    async (item) => {
      started.push(item);
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, item === 3 ? 40 : 10));
      running--;
      if (item === 2) ac.abort(); // item 3 is still running: it completes, nothing new starts
      return item === 1 ? 3 : 0;
    },
    ac.signal,
  );
  assert.equal(most, 2);
  assert.deepEqual(started, [0, 1, 2, 3]);
  assert.deepEqual(codes, [0, 3, 0, 0, undefined, undefined]);
});

test("batchExitCode: 0 when all succeeded, else the first failure in list order", () => {
  assert.equal(batchExitCode([0, 0, 0]), 0);
  assert.equal(batchExitCode([0, 7, 3]), 7);
  assert.equal(batchExitCode([undefined, 0, 5]), 5);
});
