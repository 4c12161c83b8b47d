import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { OriginError, originAgents, originPolicy, probeOrigin } from "./index.js";

describe("origin policy", () => {
  it("denies loopback, private, link-local, shared and reserved addresses by default, naming the range", () => {
    const p = originPolicy();
    const cases: [string, string | undefined][] = [
      ["127.0.0.1", "loopback"],
      ["::1", "loopback"],
      ["::ffff:127.0.0.1", "loopback"],
      ["::ffff:7f00:1", "loopback"], // as new URL() writes [::ffff:127.0.0.1]
      ["0.0.0.0", "unspecified or IPv4-compatible"],
      ["10.1.2.3", "private"],
      ["172.20.0.5", "private"],
      ["192.168.1.1", "private"],
      ["fd12::1", "private"],
      ["169.254.169.254", "link-local"], // the cloud metadata address
      ["fe80::1", "link-local"],
      ["100.64.0.1", "shared (carrier-grade NAT, cluster)"],
      ["224.0.0.1", "multicast"],
      ["192.0.2.1", "reserved"],
      ["93.184.215.14", undefined],
      ["2606:2800:21f:cb07::1", undefined],
      ["172.32.0.1", undefined], // just past 172.16.0.0/12
    ];
    assert.deepEqual(
      cases.map(([ip]) => [ip, p.denies(ip)]),
      cases,
    );
  });

  it("allows the ranges the operator names, and only those", () => {
    const p = originPolicy(["10.0.0.0/8", "127.0.0.1", "fd00::/8"]);
    assert.equal(p.denies("10.200.0.1"), undefined);
    assert.equal(p.denies("127.0.0.1"), undefined);
    assert.equal(p.denies("::ffff:127.0.0.1"), undefined);
    assert.equal(p.denies("127.0.0.2"), "loopback");
    assert.equal(p.denies("fd00::5"), undefined);
    assert.equal(p.denies("192.168.0.1"), "private");
  });

  it("refuses a bad entry with a message naming it", () => {
    for (const bad of ["10.0.0.0/33", "example.com", "10.0.0.0/x", "", "fd00::/129"]) {
      assert.throws(() => originPolicy([bad]), /origin allow entry ".*" is not an address or CIDR range/, bad);
    }
  });

  it("refuses an origin on a denied address before connecting, by literal address or by name", async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const agents = originAgents(originPolicy());
    try {
      for (const url of [`http://127.0.0.1:${port}/a.bin`, `http://[::ffff:127.0.0.1]:${port}/a.bin`]) {
        await assert.rejects(probeOrigin(url, { agents }), (err: unknown) => {
          assert.ok(err instanceof OriginError);
          assert.equal(err.kind, "denied");
          assert.match(
            err.message,
            /is a loopback address, which the origin policy denies; allow its range with --origin-allow/,
          );
          return true;
        });
      }
      // a name is checked on what it resolves to (localhost: loopback only)
      await assert.rejects(probeOrigin(`http://localhost:${port}/a.bin`, { agents }), (err: unknown) => {
        assert.ok(err instanceof OriginError);
        assert.equal(err.kind, "denied");
        assert.match(err.message, /localhost resolves only to addresses the origin policy denies: .*\(loopback\)/);
        return true;
      });
      assert.equal(requests, 0, "nothing reached the server");
    } finally {
      agents.destroy();
      server.close();
    }
  });
});
