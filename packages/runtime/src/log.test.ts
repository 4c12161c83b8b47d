import assert from "node:assert/strict";
import { test } from "node:test";
import { prettyLine } from "./log.js";

const at = (iso: string) => {
  const t = new Date(iso);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, "0")}`;
};

test("a record is one line: local time, level, who, message, then key=value", () => {
  const rec = {
    level: 40,
    time: "2025-03-01T10:20:30.045Z",
    service: "distribustream",
    name: "distribustream",
    part: "tracker",
    store: "redis://:***@h:6379",
    port: 6086,
    tls: false,
    streams: ["a", "b"],
    reason: "two words",
    msg: "swarm store connection failed",
  };
  assert.equal(
    prettyLine(JSON.stringify(rec) + "\n"),
    `${at(rec.time)} WARN  distribustream/tracker: swarm store connection failed store=redis://:***@h:6379 port=6086 tls=false streams=["a","b"] reason="two words"\n`,
  );
});

test("an error shows its message on the line and its stack below; redacted fields stay redacted", () => {
  const line = prettyLine(
    JSON.stringify({
      level: 50,
      time: "2025-03-01T10:20:30.045Z",
      service: "checksum",
      credential: "[redacted]",
      err: { type: "Error", message: "boom", stack: "Error: boom\n    at f (x.js:1:1)" },
      msg: "hashing failed",
    }),
  );
  assert.equal(
    line,
    `${at("2025-03-01T10:20:30.045Z")} ERROR checksum: hashing failed credential=[redacted] err=boom\n    at f (x.js:1:1)\n`,
  );
});

test("a line that is not a JSON record passes through", () => {
  assert.equal(prettyLine("not json"), "not json\n");
});
