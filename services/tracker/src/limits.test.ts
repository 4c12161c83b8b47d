import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { limitKey, LogThrottle, PeerLimits, type Refusal } from "./limits.js";

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const refused = (r: { release: () => void } | Refusal): r is Refusal => "limit" in r;

describe("PeerLimits", () => {
  it("counts sessions per address and refuses the one over the limit, naming the address and limit", () => {
    const limits = new PeerLimits({ maxSessions: 2, messagesPerSecond: 0, messageBurst: 0 });
    const a = limits.openSession("127.0.0.2");
    const b = limits.openSession("127.0.0.2");
    assert.ok(!refused(a) && !refused(b));
    const c = limits.openSession("127.0.0.2");
    assert.ok(refused(c));
    assert.equal(c.limit, "sessions");
    assert.equal(c.message, "too many sessions from 127.0.0.2 (limit 2)");
    // another address is not affected
    assert.ok(!refused(limits.openSession("127.0.0.3")));
    // a released session frees its place, once however often it is released
    a.release();
    a.release();
    assert.equal(limits.sessionsOf("127.0.0.2"), 1);
    assert.ok(!refused(limits.openSession("127.0.0.2")));
    assert.ok(refused(limits.openSession("127.0.0.2")));
  });

  it("a token bucket per address: a burst, then the sustained rate, shared by all its sessions", () => {
    const c = clock();
    const limits = new PeerLimits({ maxSessions: 0, messagesPerSecond: 10, messageBurst: 5 }, c.now);
    for (let i = 0; i < 5; i++) assert.equal(limits.message("10.0.0.1"), undefined, `message ${i} of the burst`);
    const r = limits.message("10.0.0.1");
    assert.equal(r?.limit, "messages");
    assert.equal(r?.message, "too many messages from 10.0.0.1 (limit 10/s, burst 5)");
    assert.equal(limits.message("10.0.0.2"), undefined, "other addresses keep their own bucket");
    c.advance(100); // 10/s: one token back
    assert.equal(limits.message("10.0.0.1"), undefined);
    assert.notEqual(limits.message("10.0.0.1"), undefined);
    c.advance(60_000); // refills to the burst, not beyond
    for (let i = 0; i < 5; i++) assert.equal(limits.message("10.0.0.1"), undefined);
    assert.notEqual(limits.message("10.0.0.1"), undefined);
  });

  it("forgets an address once it has no session and its bucket is full again", () => {
    const c = clock();
    const limits = new PeerLimits({ maxSessions: 4, messagesPerSecond: 100, messageBurst: 10 }, c.now);
    const s = limits.openSession("192.0.2.7");
    assert.ok(!refused(s));
    for (let i = 0; i < 10; i++) limits.message("192.0.2.7");
    assert.notEqual(limits.message("192.0.2.7"), undefined);
    s.release();
    assert.equal(limits.size, 1, "kept while its bucket is not full: a reconnect must not reset it");
    assert.notEqual(limits.message("192.0.2.7"), undefined);
    c.advance(50);
    limits.sweep();
    assert.equal(limits.size, 1);
    c.advance(100);
    limits.sweep();
    assert.equal(limits.size, 0);
    // a session ended with a full bucket is forgotten at once
    const t = limits.openSession("192.0.2.8");
    assert.ok(!refused(t));
    assert.equal(limits.size, 1);
    t.release();
    assert.equal(limits.size, 0);
  });

  it("stays bounded under many addresses that each send a little", () => {
    const c = clock();
    const limits = new PeerLimits({ maxSessions: 64, messagesPerSecond: 1000, messageBurst: 100 }, c.now);
    for (let i = 0; i < 10_000; i++) limits.message(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(limits.size, 10_000);
    c.advance(1_000);
    limits.sweep();
    assert.equal(limits.size, 0);
  });

  it("never holds more than maxAddresses idle addresses: the oldest without a session go first", () => {
    const c = clock();
    const limits = new PeerLimits({ maxSessions: 8, messagesPerSecond: 1, messageBurst: 2 }, c.now, 3);
    const held = limits.openSession("10.0.0.1");
    assert.ok(!refused(held));
    for (let i = 2; i < 100; i++) limits.message(`10.0.0.${i}`);
    assert.equal(limits.size, 3);
    assert.equal(limits.sessionsOf("10.0.0.1"), 1, "an address with a session is never evicted");
    held.release();
  });

  it("limits of 0 are off", () => {
    const limits = new PeerLimits({ maxSessions: 0, messagesPerSecond: 0, messageBurst: 0 });
    for (let i = 0; i < 1000; i++) {
      assert.ok(!refused(limits.openSession("10.0.0.1")));
      assert.equal(limits.message("10.0.0.1"), undefined);
    }
  });
});

describe("limitKey", () => {
  it("is the address for IPv4 and the /64 for IPv6", () => {
    assert.equal(limitKey("127.0.0.2"), "127.0.0.2");
    assert.equal(limitKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(limitKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
    assert.equal(limitKey("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(limitKey("::1"), "0:0:0:0::/64");
    assert.equal(limitKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
  });
});

describe("LogThrottle", () => {
  it("lets one line per key through per interval and says how many were held back", () => {
    const c = clock();
    const t = new LogThrottle(10_000, c.now);
    assert.equal(t.allow("sessions"), 0);
    assert.equal(t.allow("sessions"), undefined);
    assert.equal(t.allow("sessions"), undefined);
    assert.equal(t.allow("messages"), 0, "keys are throttled separately");
    c.advance(10_000);
    assert.equal(t.allow("sessions"), 2);
    assert.equal(t.allow("sessions"), undefined);
  });
});
