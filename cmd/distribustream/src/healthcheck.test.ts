import assert from "node:assert/strict";
import { createServer, type Server as HttpServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { Health } from "@distribustream/runtime";
import {
  HealthcheckUsageError,
  parseHealthTarget,
  parseHealthTimeout,
  probeHealth,
  runHealthcheck,
} from "./healthcheck.js";

describe("healthcheck targets", () => {
  it("takes grpc://, grpcs:// and http(s):// targets", () => {
    assert.deepEqual(parseHealthTarget("grpc://tracker:6086"), {
      kind: "grpc",
      target: "tracker:6086",
      tls: false,
      shown: "grpc://tracker:6086",
    });
    assert.equal(parseHealthTarget("grpcs://[::1]:6088/").kind, "grpc");
    assert.equal((parseHealthTarget("grpcs://[::1]:6088/") as { tls: boolean }).tls, true);
    assert.deepEqual(parseHealthTarget("http://127.0.0.1:6087/healthz"), {
      kind: "http",
      url: "http://127.0.0.1:6087/healthz",
      shown: "http://127.0.0.1:6087/healthz",
    });
  });

  it("refuses anything else, saying what it expected", () => {
    for (const [input, why] of [
      ["tracker:6086", /bad target "tracker:6086": expected grpc:\/\/HOST:PORT/],
      ["grpc://tracker", /bad target/],
      ["grpc://tracker:0", /port 0 in "grpc:\/\/tracker:0" is not 1-65535/],
      ["grpc://tracker:70000", /port 70000 .* is not 1-65535/],
      ["http://", /is not a URL/],
      ["http://u:p@dash:6087/healthz", /credentials in "dash:6087" are not supported/],
    ] as const) {
      assert.throws(
        () => parseHealthTarget(input),
        (e: unknown) => e instanceof HealthcheckUsageError && why.test(e.message),
        input,
      );
    }
    assert.equal(parseHealthTimeout(undefined), 3000);
    assert.equal(parseHealthTimeout("250"), 250);
    for (const bad of ["0", "-1", "1.5", "abc", "600001"]) {
      assert.throws(() => parseHealthTimeout(bad), /--timeout .* is not a number of milliseconds/, bad);
    }
  });
});

describe("healthcheck probes", () => {
  let grpcServer: Server;
  let health: Health;
  let grpcPort = 0;
  let http: HttpServer;
  let httpPort = 0;
  let httpStatus = 200;

  before(async () => {
    grpcServer = new Server();
    health = new Health([]);
    health.addTo(grpcServer);
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    http = createServer((_req, res) => res.writeHead(httpStatus).end("ok\n"));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    httpPort = (http.address() as { port: number }).port;
  });

  after(() => {
    grpcServer.forceShutdown();
    http.close();
  });

  const lines = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) } };
  };

  it("gRPC: 0 when SERVING, 1 with the status when not", async () => {
    const target = `grpc://127.0.0.1:${grpcPort}`;
    health.set("NOT_SERVING");
    let l = lines();
    assert.equal(await runHealthcheck(target, {}, l.io), 1);
    assert.deepEqual(l.err, [`distribustream healthcheck: ${target} is NOT_SERVING\n`]);
    health.set("SERVING");
    l = lines();
    assert.equal(await runHealthcheck(target, {}, l.io), 0);
    assert.deepEqual(l.out, [`${target}: SERVING\n`]);
  });

  it("HTTP: 0 on 2xx, 1 with the status otherwise", async () => {
    const url = `http://127.0.0.1:${httpPort}/healthz`;
    httpStatus = 200;
    assert.deepEqual(await probeHealth(parseHealthTarget(url), 3000), { healthy: true, line: `${url}: 200 OK` });
    httpStatus = 503;
    assert.deepEqual(await probeHealth(parseHealthTarget(url), 3000), {
      healthy: false,
      line: `${url} answered 503 Service Unavailable`,
    });
  });

  it("1 when nothing listens, saying the connection was refused", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const g = await probeHealth(parseHealthTarget(`grpc://127.0.0.1:${closed}`), 3000);
    assert.equal(g.healthy, false);
    assert.match(g.line, /did not answer a health check: .*ECONNREFUSED/);
    const h = await probeHealth(parseHealthTarget(`http://127.0.0.1:${closed}/healthz`), 3000);
    assert.deepEqual(h, { healthy: false, line: `http://127.0.0.1:${closed}/healthz did not answer: ECONNREFUSED` });
  });

  it("--ca is for grpcs:// only, and must be a readable certificate", async () => {
    await assert.rejects(
      runHealthcheck(`grpc://127.0.0.1:${grpcPort}`, { ca: "ca.pem" }, lines().io),
      /--ca is for grpcs:\/\/ targets, not grpc:\/\/127\.0\.0\.1/,
    );
    await assert.rejects(
      runHealthcheck(`grpcs://127.0.0.1:${grpcPort}`, { ca: "/no/such/ca.pem" }, lines().io),
      (e: unknown) =>
        e instanceof HealthcheckUsageError && /^--ca: cannot read \/no\/such\/ca\.pem: ENOENT/.test(e.message),
    );
  });
});
