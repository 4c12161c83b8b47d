import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { streamIdFor } from "@distribustream/pdtp";
import { createLogger } from "@distribustream/runtime";
import { LiveRecording, LiveRecordingError } from "./recording.js";

const log = createLogger("test", { level: "silent" });

describe("the recording of a live broadcast", () => {
  let root: string;
  let n = 0;
  /** A fresh record folder and state folder. */
  const folders = () => {
    n++;
    return { dir: join(root, `rec${n}`), stateDir: join(root, `state${n}`) };
  };
  const state = (stateDir: string, name: string) =>
    JSON.parse(readFileSync(join(stateDir, `record-${encodeURIComponent(name)}.json`), "utf8")) as { state: string };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "live-recording-"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it("appends every chunk in order and, once finished, is the file to publish under the name", async () => {
    const f = folders();
    const chunks = [randomBytes(5000), randomBytes(1), randomBytes(64 * 1024)];
    const rec = LiveRecording.open({ ...f, name: "live/cam", log });
    for (const c of chunks) await rec.append(c);
    const file = await rec.finish();
    const all = Buffer.concat(chunks);
    assert.equal(rec.path, join(f.dir, "live%2Fcam"));
    assert.deepEqual(readFileSync(rec.path), all);
    assert.ok(file);
    assert.deepEqual(
      { name: file.name, path: file.path, size: file.size, streamId: file.streamId },
      {
        name: "live/cam",
        path: rec.path,
        size: all.length,
        streamId: streamIdFor("live/cam", all.length, file.version),
      },
    );
    assert.equal(state(f.stateDir, "live/cam").state, "finished");
    assert.equal(rec.append(randomBytes(10)), undefined, "nothing is appended once finished");
    assert.equal(readFileSync(rec.path).length, all.length);
  });

  it("a recording closed mid-broadcast (the seeder stopped) is continued by the next runs", async () => {
    const f = folders();
    const a = randomBytes(30_000);
    const b = randomBytes(20_000);
    const first = LiveRecording.open({ ...f, name: "cam.ts", log });
    await first.append(a);
    await first.close();
    assert.equal(state(f.stateDir, "cam.ts").state, "recording");
    const second = LiveRecording.open({ ...f, name: "cam.ts", log });
    await second.append(b);
    await second.close();
    // a run that appends nothing before the input ends still finishes the whole recording
    const third = LiveRecording.open({ ...f, name: "cam.ts", log });
    const file = await third.finish();
    assert.deepEqual(readFileSync(join(f.dir, "cam.ts")), Buffer.concat([a, b]));
    assert.equal(file?.size, a.length + b.length);
    assert.deepEqual(readdirSync(f.dir), ["cam.ts"]);
    const empty = LiveRecording.open({ ...f, name: "other", log });
    assert.equal(await empty.finish(), undefined, "nothing recorded, nothing to publish");
  });

  it("a finished recording is kept aside when the next broadcast starts, under its start time, extension kept", async () => {
    const f = folders();
    const old = randomBytes(1000);
    const first = LiveRecording.open({ ...f, name: "cam.ts", log });
    await first.append(old);
    await first.finish();
    const next = LiveRecording.open({ ...f, name: "cam.ts", log });
    const kept = readdirSync(f.dir).filter((x) => x !== "cam.ts");
    assert.equal(kept.length, 1);
    assert.match(kept[0]!, /^cam\.\d{8}T\d{6}Z\.ts$/);
    assert.deepEqual(readFileSync(join(f.dir, kept[0]!)), old);
    const fresh = randomBytes(700);
    await next.append(fresh);
    assert.deepEqual((await next.finish())?.size, fresh.length);
    assert.deepEqual(readFileSync(join(f.dir, "cam.ts")), fresh);
  });

  it("never overwrites a file of the name it knows nothing of: kept aside too, a second one beside the first", async () => {
    const f = folders();
    mkdirSync(f.dir, { recursive: true });
    writeFileSync(join(f.dir, "cam"), "an operator's file");
    LiveRecording.open({ ...f, name: "cam", log });
    writeFileSync(join(f.dir, "cam"), "another one");
    LiveRecording.open({ ...f, name: "cam", log });
    const kept = readdirSync(f.dir).sort();
    assert.equal(kept.length, 2);
    assert.match(kept[0]!, /^cam\.\d{8}T\d{6}Z(-2)?$/);
    assert.deepEqual(kept.map((k) => readFileSync(join(f.dir, k), "utf8")).sort(), [
      "an operator's file",
      "another one",
    ]);
  });

  it("holds the caller while more than a MiB waits to be written, and writes every byte", async () => {
    const f = folders();
    const rec = LiveRecording.open({ ...f, name: "big", log });
    const big = randomBytes(3 * 1024 * 1024);
    const wait = rec.append(big);
    assert.ok(wait instanceof Promise, "a promise to wait for");
    await wait;
    assert.equal(rec.append(randomBytes(10)), undefined, "room again once written");
    assert.equal((await rec.finish())?.size, big.length + 10);
  });

  it("a write that fails ends the recording, not the caller: nothing to publish, and its state says so", async () => {
    const f = folders();
    const rec = LiveRecording.open({ ...f, name: "cam", log });
    mkdirSync(join(f.dir, "cam")); // the file cannot be opened for writing
    await rec.append(randomBytes(2 * 1024 * 1024)); // resolves: it does not hang on a failed write
    assert.equal(rec.append(randomBytes(10)), undefined);
    assert.equal(await rec.finish(), undefined);
    assert.equal(state(f.stateDir, "cam").state, "failed");
  });

  it("a record folder that cannot be used is refused at open, naming it", () => {
    const f = folders();
    writeFileSync(join(root, "a-file"), "");
    assert.throws(
      () => LiveRecording.open({ dir: join(root, "a-file"), stateDir: f.stateDir, name: "cam", log }),
      (err: Error) => err instanceof LiveRecordingError && err.message.includes(join(root, "a-file")),
    );
  });
});
