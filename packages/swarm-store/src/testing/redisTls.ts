import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findOnPath, redisServerBinary, startServer, stopChild, type TestRedis } from "./redisServer.js";

/** A Redis reached over TLS only, with a password, whose certificate a throwaway CA signed. */
export interface TestRedisTls extends TestRedis {
  /** rediss://:PASSWORD@127.0.0.1:PORT (or rediss+cluster://:PASSWORD@… for a cluster) */
  url: string;
  password: string;
  /** PEM file of the CA that signed the server certificate (for --redis-ca). */
  caFile: string;
  /** Its contents. */
  ca: string;
}

/**
 * Writes a throwaway CA and a server certificate it signed (subjectAltName
 * IP:127.0.0.1 and DNS:localhost, since cluster nodes announce IPs) into
 * `dir` with the openssl CLI: ca.pem, server.pem, server.key.
 */
export function makeTestCertificates(dir: string): { caFile: string; certFile: string; keyFile: string } {
  const openssl = findOnPath("openssl");
  if (!openssl) throw new Error("no openssl on PATH to make test certificates: install the Debian package openssl");
  const cnf = join(dir, "openssl.cnf");
  writeFileSync(
    cnf,
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "[dn]",
      "CN = DistribuStream test",
      "[ca]",
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, keyCertSign, cRLSign",
      "subjectKeyIdentifier = hash",
      "[server]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth, clientAuth",
      "subjectAltName = IP:127.0.0.1, DNS:localhost",
      "",
    ].join("\n"),
  );
  const caFile = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const certFile = join(dir, "server.pem");
  const keyFile = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args: string[]) => {
    const r = spawnSync(openssl, args, { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.error?.message}`);
  };
  run(
    ["req", "-x509", ...ec, "-keyout", caKey, "-out", caFile, "-days", "2"].concat([
      "-config",
      cnf,
      "-extensions",
      "ca",
      "-subj",
      "/CN=DistribuStream test CA",
    ]),
  );
  run(["req", "-new", ...ec, "-keyout", keyFile, "-out", csr, "-config", cnf, "-subj", "/CN=127.0.0.1"]);
  run(
    ["x509", "-req", "-in", csr, "-CA", caFile, "-CAkey", caKey, "-CAcreateserial", "-days", "2"].concat([
      "-out",
      certFile,
      "-extfile",
      cnf,
      "-extensions",
      "server",
    ]),
  );
  return { caFile, certFile, keyFile };
}

/**
 * redis-server from PATH listening on a free port over TLS only (`--port 0
 * --tls-port P`, clients need no certificate) with `requirepass`; or, with
 * `cluster`, three such masters joined into a Redis Cluster whose bus is TLS
 * too. Never REDIS_URL: the test needs the CA. `stop` kills the servers by PID
 * and removes the certificates. Idempotent.
 */
export async function redisTlsForTests(o: { password?: string; cluster?: boolean } = {}): Promise<TestRedisTls> {
  const password = o.password ?? "secret";
  const bin = redisServerBinary();
  const dir = mkdtempSync(join(tmpdir(), "ds-redis-tls-"));
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map(stopChild));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { caFile, certFile, keyFile } = makeTestCertificates(dir);
    const tls = ["--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile];
    const common = [...tls, "--tls-auth-clients", "no", "--requirepass", password];
    const listen = (port: number) => ["--port", "0", "--tls-port", String(port)];
    const ports: number[] = [];
    for (let i = 0; i < (o.cluster ? 3 : 1); i++) {
      const cluster = o.cluster
        ? ["--cluster-enabled", "yes", "--cluster-config-file", `nodes-${i}.conf`, "--tls-cluster", "yes"].concat([
            "--masterauth",
            password,
            "--cluster-node-timeout",
            "5000",
          ])
        : [];
      const { child, port } = await startServer(bin, dir, [...common, ...cluster], undefined, listen);
      children.push(child);
      ports.push(port);
    }
    if (o.cluster) await createCluster(ports, password, caFile);
    const nodes = ports.map((port) => ({ host: "127.0.0.1", port }));
    const hosts = nodes.map((n) => `${n.host}:${n.port}`).join(",");
    let stopped: Promise<void> | undefined;
    return {
      url: o.cluster ? `rediss+cluster://:${password}@${hosts}` : `rediss://:${password}@${hosts}`,
      nodes,
      password,
      caFile,
      ca: readFileSync(caFile, "utf8"),
      stop: () => (stopped ??= stop()),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** `redis-cli --cluster create` over TLS; resolves once every node reports cluster_state:ok. */
async function createCluster(ports: number[], password: string, caFile: string): Promise<void> {
  const cli = findOnPath("redis-cli");
  if (!cli) throw new Error("no redis-cli on PATH to create a Redis Cluster: install the Debian package redis-tools");
  const auth = ["--tls", "--cacert", caFile, "--no-auth-warning", "-a", password];
  const create = spawnSync(
    cli,
    [...auth, "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"],
    { encoding: "utf8", timeout: 30_000 },
  );
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
  const deadline = Date.now() + 20_000;
  for (const port of ports) {
    for (;;) {
      const info = spawnSync(cli, [...auth, "-p", String(port), "cluster", "info"], { encoding: "utf8" });
      if (info.stdout.includes("cluster_state:ok")) break;
      if (Date.now() > deadline) throw new Error(`Redis Cluster node ${port} not ready: ${info.stdout}${info.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
