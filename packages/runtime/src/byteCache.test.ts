import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteCache } from "./byteCache.js";

test("ByteCache keeps within its byte budget, dropping the least recently used first", () => {
  const c = new ByteCache<string, string>(10);
  c.set("a", "A", 4);
  c.set("b", "B", 4);
  assert.equal(c.get("a"), "A"); // a is now the most recently used
  c.set("c", "C", 4); // 12 > 10: b goes
  assert.equal(c.has("b"), false);
  assert.deepEqual([c.get("a"), c.get("c")], ["A", "C"]);
  c.set("big", "X", 50); // over budget on its own: everything else goes, it stays
  assert.deepEqual([c.has("a"), c.has("c"), c.get("big")], [false, false, "X"]);
  const d = new ByteCache<string, string>(10);
  d.set("s@1/0", "p", 1);
  d.set("s@1/1", "q", 1);
  d.set("t@1/0", "r", 1);
  d.deleteWhere((k) => k.startsWith("s@"));
  assert.deepEqual([d.has("s@1/0"), d.has("s@1/1"), d.bytesOf("t@1/0")], [false, false, 1]);
});
