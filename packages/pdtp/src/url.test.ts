import assert from "node:assert/strict";
import { test } from "node:test";
import { isHostName, joinHostPort, parseDataAddress, parsePdtpUrl, parseTrackerAddress } from "./url.js";

test("pdtp URLs give host, port (default 6086) and the stream name", () => {
  assert.deepEqual(parsePdtpUrl("pdtp://example.org/movies/a%20b.mp4"), {
    host: "example.org",
    port: 6086,
    name: "movies/a b.mp4",
    target: "example.org:6086",
    tls: false,
  });
  assert.equal(parsePdtpUrl("pdtp://127.0.0.1:7000/x").target, "127.0.0.1:7000");
  assert.equal(parsePdtpUrl("pdtp://[::1]:7000/x").target, "[::1]:7000");
});

test("?key= pins the network key by its fingerprint", () => {
  const fp = "0123456789abcdef0123456789ABCDEF";
  const u = parsePdtpUrl(`pdtp://example.org/movies/a.mp4?key=${fp}`);
  assert.equal(u.name, "movies/a.mp4");
  assert.equal(u.networkKey, fp.toLowerCase());
  assert.equal(parsePdtpUrl("pdtp://example.org/a%3Fb").name, "a?b");
  assert.equal(parsePdtpUrl("pdtp://example.org/x").networkKey, undefined);
  assert.throws(() => parsePdtpUrl("pdtp://example.org/x?key=abc"), /\?key= in .* is not a network key fingerprint/);
  assert.throws(() => parsePdtpUrl(`pdtp://example.org/x?key=${fp}&key=${fp}`), /only one \?key=/);
  assert.throws(() => parsePdtpUrl("pdtp://example.org/x#frag"), /fragment/);
});

test("pdtps URLs mean TLS, on the same default port", () => {
  assert.deepEqual(parsePdtpUrl("pdtps://tracker.example/film.mp4"), {
    host: "tracker.example",
    port: 6086,
    name: "film.mp4",
    target: "tracker.example:6086",
    tls: true,
  });
  assert.equal(parsePdtpUrl("pdtps://127.0.0.1:7000/x").target, "127.0.0.1:7000");
  assert.equal(parsePdtpUrl("PDTPS://127.0.0.1:7000/x").tls, true);
  assert.equal(parsePdtpUrl("pdtp://127.0.0.1:7000/x").tls, false);
  assert.throws(() => parsePdtpUrl("pdtps://example.org/"), /no stream name/);
  assert.throws(() => parsePdtpUrl("pdtps://u:p@example.org/x"), /credentials in a pdtps:\/\/ URL/);
});

test("tracker addresses: HOST:PORT is plaintext, pdtps://HOST:PORT is TLS", () => {
  assert.deepEqual(parseTrackerAddress("127.0.0.1:6086"), { target: "127.0.0.1:6086", tls: false });
  assert.deepEqual(parseTrackerAddress("pdtps://tracker.example:443"), { target: "tracker.example:443", tls: true });
  assert.deepEqual(parseTrackerAddress("pdtp://[::1]:6086/"), { target: "[::1]:6086", tls: false });
  assert.throws(() => parseTrackerAddress("pdtps://tracker.example"), /expected HOST:PORT, or pdtps:\/\/HOST:PORT/);
  assert.throws(() => parseTrackerAddress("https://tracker.example:443"), /not a tracker address/);
  assert.throws(() => parseTrackerAddress("tracker.example:99999"), /not a tracker address/);
});

test("bad pdtp URLs say what is wrong", () => {
  assert.throws(() => parsePdtpUrl("example.org/x"), /not a URL/);
  assert.throws(
    () => parsePdtpUrl("http://example.org/x"),
    /unsupported scheme "http:" .*expected pdtp:\/\/ or pdtps:\/\//,
  );
  assert.throws(() => parsePdtpUrl("pdtp://example.org/"), /no stream name/);
  assert.throws(() => parsePdtpUrl("pdtp://example.org/a/../b"), /"\.\." segment/);
  assert.throws(() => parsePdtpUrl("pdtp://example.org/a%2F..%2Fb"), /segment/);
  assert.throws(() => parsePdtpUrl("pdtp://example.org/x?y=1"), /query/);
  assert.throws(() => parsePdtpUrl("pdtp://example.org:99999/x"), /not a URL/);
});

test("host:port brackets IPv6 literals once", () => {
  assert.equal(joinHostPort("10.0.0.5", 8000), "10.0.0.5:8000");
  assert.equal(joinHostPort("seeder.local", 8000), "seeder.local:8000");
  assert.equal(joinHostPort("::1", 8000), "[::1]:8000");
  assert.equal(joinHostPort("[::1]", 8000), "[::1]:8000");
});

test("data addresses are HOST or HOST:PORT, an IPv6 literal with a port in brackets", () => {
  assert.deepEqual(parseDataAddress("seed.example.net"), { host: "seed.example.net" });
  assert.deepEqual(parseDataAddress("seed.example.net:30080"), { host: "seed.example.net", port: 30080 });
  assert.deepEqual(parseDataAddress("10.1.2.3:8000"), { host: "10.1.2.3", port: 8000 });
  assert.deepEqual(parseDataAddress("[2001:db8::1]:8000"), { host: "2001:db8::1", port: 8000 });
  assert.deepEqual(parseDataAddress("[::1]"), { host: "::1" });
  assert.deepEqual(parseDataAddress("2001:db8::1"), { host: "2001:db8::1" });
  for (const [input, why] of [
    ["", /"" is not a host name or IP address/],
    ["seed:0", /port "0" is not 1-65535/],
    ["seed:65536", /port "65536" is not 1-65535/],
    ["seed:", /port "" is not 1-65535/],
    ["seed:80x", /port "80x" is not 1-65535/],
    ["a b:80", /"a b" is not a host name/],
    ["http://seed:80", /expected HOST or HOST:PORT/],
    ["[seed]:80", /only an IPv6 address goes in brackets/],
    ["2001:db8::1:zz", /IPv6 address with a port goes in brackets/],
    ["-seed", /is not a host name/],
  ] as const) {
    assert.throws(
      () => parseDataAddress(input),
      (err: Error) => why.test(err.message),
      input,
    );
  }
  assert.ok(isHostName("a-b.example") && isHostName("::1") && !isHostName("a_b") && !isHostName("x".repeat(254)));
});
