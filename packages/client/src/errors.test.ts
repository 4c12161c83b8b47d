import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ConfigError } from "@distribustream/runtime";
import { PdtpUrlError } from "@distribustream/pdtp";
import { classifySessionEnd, connectionReason, DownloadError, exitCodeOf, ioError, OutputClosed } from "./errors.js";

const ctx = { name: "x.bin", target: "localhost:6086" };

test("session end statuses map to retries and exit codes", () => {
  assert.deepEqual(
    classifySessionEnd(
      status.UNAVAILABLE,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:6086",
      ctx,
    ),
    { retry: true, reason: "connect ECONNREFUSED" },
  );
  const nf = classifySessionEnd(status.NOT_FOUND, "unknown stream", ctx);
  assert.ok(!nf.retry);
  assert.equal(nf.error.exitCode, 3);
  assert.equal(nf.error.message, 'no stream named "x.bin" on localhost:6086');
  const inv = classifySessionEnd(status.INVALID_ARGUMENT, "bad join", ctx);
  assert.ok(!inv.retry);
  assert.equal(inv.error.exitCode, 1);
  assert.match(inv.error.message, /bad join/);
  const other = classifySessionEnd(status.FAILED_PRECONDITION, "stream withdrawn", ctx);
  assert.ok(!other.retry);
  assert.equal(other.error.exitCode, 7);
  assert.ok(classifySessionEnd(status.OK, "", ctx).retry);
  assert.ok(classifySessionEnd(status.CANCELLED, "shutting down", ctx).retry);
  const internal = classifySessionEnd(status.INTERNAL, "tracker answered Hello with joined", ctx);
  assert.ok(!internal.retry, "not retried on a first contact");
  assert.equal(internal.error.exitCode, 7);
});

test("once joined, NOT_FOUND and INTERNAL are retried; NOT_FOUND gives up with exit 3", () => {
  const joined = { ...ctx, joined: true };
  const nf = classifySessionEnd(status.NOT_FOUND, "unknown stream", joined);
  assert.ok(nf.retry);
  assert.equal(nf.giveUp?.exitCode, 3);
  assert.equal(nf.giveUp?.message, 'no stream named "x.bin" on localhost:6086');
  const internal = classifySessionEnd(status.INTERNAL, "store failed", joined);
  assert.ok(internal.retry);
  assert.match(internal.reason, /store failed/);
  assert.ok(!classifySessionEnd(status.INVALID_ARGUMENT, "bad", joined).retry);
  assert.ok(!classifySessionEnd(status.PERMISSION_DENIED, "banned", joined).retry);
});

test("exit codes of thrown errors", () => {
  assert.equal(exitCodeOf(new DownloadError("x", 6)), 6);
  assert.equal(exitCodeOf(new OutputClosed("standard output")), 0);
  assert.equal(exitCodeOf(new ConfigError("bad")), 2);
  assert.equal(exitCodeOf(new PdtpUrlError("bad")), 2);
  assert.equal(exitCodeOf(new Error("boom")), 1);
  assert.equal(exitCodeOf("string"), 1);
});

test("I/O errors name the file; ENOSPC says disk full", () => {
  const full = ioError(Object.assign(new Error("no space"), { code: "ENOSPC" }), "writing", "/data/x.bin");
  assert.equal(full.exitCode, 5);
  assert.equal(full.message, "disk full writing /data/x.bin");
  assert.equal(
    ioError(Object.assign(new Error("x"), { code: "EACCES" }), "creating", "/x").message,
    "I/O error creating /x: EACCES",
  );
});

test("connection reasons are short", () => {
  assert.equal(
    connectionReason("No connection established. Last error: Error: getaddrinfo ENOTFOUND nohost"),
    "getaddrinfo ENOTFOUND",
  );
  assert.equal(connectionReason("Connection dropped"), "Connection dropped");
});
