import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ConfigError } from "@distribustream/runtime";
import { PdtpUrlError } from "@distribustream/pdtp";
import {
  classifySessionEnd,
  connectionReason,
  DownloadError,
  exitCodeOf,
  ioError,
  OutputClosed,
  tlsFailure,
} from "./errors.js";

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

test("TLS failures are told apart and exit 8; other connection failures are not TLS failures", () => {
  const target = "127.0.0.1:6086";
  const plaintext = tlsFailure(
    "No connection established. Last error: Error: 806CA4AEF87F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n. Resolution note: ",
    { target, tls: true },
  );
  assert.equal(plaintext?.exitCode, 8);
  assert.equal(
    plaintext?.message,
    "tracker 127.0.0.1:6086 does not speak TLS (wrong version number): use a pdtp:// URL for it, pdtps:// is for trackers started with --tls-cert",
  );
  const untrusted = tlsFailure(
    "No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ",
    { target, tls: true },
  );
  assert.equal(untrusted?.exitCode, 8);
  assert.equal(
    untrusted?.message,
    "TLS certificate of tracker 127.0.0.1:6086 not trusted (unable to verify the first certificate); for a private CA give it with --tls-ca FILE",
  );
  const tlsTracker = tlsFailure("No connection established. Last error: Failed to connect", {
    target,
    tls: false,
    speaksTls: true,
  });
  assert.equal(
    tlsTracker?.message,
    "tracker 127.0.0.1:6086 speaks TLS: use a pdtps:// URL for it (pdtp:// is plaintext)",
  );
  const refused = "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:6086";
  assert.equal(tlsFailure(refused, { target, tls: true }), undefined);
  assert.equal(tlsFailure(refused, { target, tls: false, speaksTls: false }), undefined);
});
