import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRecord } from "./resume.js";

const record = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    dsclient: 1,
    name: "a.bin",
    streamId: "id",
    version: 5,
    size: 100,
    chunkSize: 10,
    chunks: "0-3,5,7-9",
    ...over,
  });

test("parseRecord reads the chunks a record names", () => {
  const r = parseRecord(record(), 10);
  assert.ok(typeof r !== "string");
  assert.equal(r.claimed.toString(), "0-3,5,7-9");
  assert.deepEqual(
    { name: r.name, streamId: r.streamId, version: r.version, size: r.size, chunkSize: r.chunkSize },
    { name: "a.bin", streamId: "id", version: 5, size: 100, chunkSize: 10 },
  );
  const empty = parseRecord(record({ chunks: "" }), 10);
  assert.ok(typeof empty !== "string" && empty.claimed.isEmpty);
});

test("parseRecord says what is wrong with a record it cannot use", () => {
  assert.equal(parseRecord("{", 10), "is not JSON");
  assert.equal(parseRecord(record({ dsclient: 2 }), 10), "is not a dsclient record (format 1)");
  assert.equal(parseRecord(record({ name: 3 }), 10), "lacks the stream's name, id or chunks");
  assert.equal(parseRecord(record({ size: -1 }), 10), "lacks the stream's version, size or chunk size");
  assert.equal(parseRecord(record({ chunks: "0-10" }), 10), 'names chunks "0-10" the stream has not');
  assert.equal(parseRecord(record({ chunks: "4-2" }), 10), 'names chunks "4-2" the stream has not');
  assert.equal(parseRecord(record({ chunks: "1,x" }), 10), 'names chunks "x" the stream has not');
});
