import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { freePort } from "./freePort.js";
import { containerRuntime, findOnPath, redisForTests } from "./redisServer.js";

const scratch = mkdtempSync(join(tmpdir(), "ds-redis-helper-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
/** An empty folder as PATH: no redis-server, nothing else either. */
const emptyPath = mkdtempSync(join(scratch, "bin-"));
/** No container runtime: DOCKER_HOST names a socket that does not exist. */
const noRuntime = `unix://${join(scratch, "no-docker.sock")}`;

/** A stand-in container runtime that answers GET /_ping on a unix socket. */
async function fakeRuntime(status: number): Promise<{ host: string; server: Server }> {
  const socket = join(scratch, `docker-${status}.sock`);
  const server = createServer((req, res) => {
    res.statusCode = req.url === "/_ping" ? status : 404;
    res.end("OK");
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { host: `unix://${socket}`, server };
}

describe("redisForTests: REDIS_URL, else a container, else redis-server on PATH, else an error", () => {
  it("REDIS_URL is used as it is: nothing is started, even with no redis-server on PATH", async () => {
    const env = { REDIS_URL: "redis://:pw@redis.example:6390/2", PATH: emptyPath, DOCKER_HOST: noRuntime };
    const r = await redisForTests(env);
    assert.equal(r.url, "redis://:pw@redis.example:6390/2");
    assert.deepEqual(r.nodes, [{ host: "redis.example", port: 6390 }]);
    await r.stop();
  });

  it("no REDIS_URL, no container runtime and no redis-server on PATH: the error names the Debian package", async () => {
    await assert.rejects(
      redisForTests({ PATH: emptyPath, DOCKER_HOST: noRuntime }),
      (err: Error) => /install the Debian package redis-server/.test(err.message) && /REDIS_URL/.test(err.message),
    );
  });

  it("no REDIS_URL and no container runtime: redis-server from PATH on a free port, gone after stop", async (t) => {
    const bin = findOnPath("redis-server");
    if (!bin) return t.skip("no redis-server on PATH");
    const r = await redisForTests({ PATH: dirname(bin), DOCKER_HOST: noRuntime });
    const port = r.nodes[0]!.port;
    assert.equal(r.url, `redis://127.0.0.1:${port}`);
    assert.equal(await ping(port), "+PONG");
    await r.stop();
    await assert.rejects(ping(port), /ECONNREFUSED/);
  });
});

describe("containerRuntime", () => {
  it("answers with DOCKER_HOST when the runtime there answers /_ping", async () => {
    const { host, server } = await fakeRuntime(200);
    try {
      assert.equal(await containerRuntime({ DOCKER_HOST: host }), host);
    } finally {
      server.close();
    }
  });

  it("is undefined for a socket that does not exist, a runtime that refuses the ping, or a closed TCP port", async () => {
    assert.equal(await containerRuntime({ DOCKER_HOST: noRuntime }), undefined);
    const { host, server } = await fakeRuntime(500);
    try {
      assert.equal(await containerRuntime({ DOCKER_HOST: host }), undefined);
    } finally {
      server.close();
    }
    assert.equal(await containerRuntime({ DOCKER_HOST: `tcp://127.0.0.1:${await freePort()}` }), undefined);
  });
});

/** Sends PING to 127.0.0.1:port; resolves with the first reply line. */
function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.write("PING\r\n"));
    s.setEncoding("utf8");
    s.once("data", (d: string) => {
      s.destroy();
      resolve(d.trim());
    });
    s.once("error", reject);
  });
}
