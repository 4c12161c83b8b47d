import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { HashPieceBody, ManifestBody, SignedHashPiece, SignedManifest } from "@distribustream/pdtp";
import { redisForTests, type TestRedis } from "@distribustream/swarm-store/testing";
import { DSCLIENT, freePorts, sha256File, startNode } from "../support/procs.js";
import { Services } from "../support/services.js";

/**
 * The swarm store is not trusted with integrity: checksum, tracker (on a real
 * redis-server) and seeder as processes, then the stored manifest header and
 * a stored hash piece overwritten in Redis. A real dsclient must refuse them
 * (exit 6, saying which) and write nothing; an untouched file still downloads.
 */
describe("manifests and hash pieces tampered in the swarm store", { timeout: 120_000 }, () => {
  let dir: string;
  let sys: Services;
  let redis: TestRedis;
  let raw: Redis;
  let pdtp = 0;
  const CHUNK = 16 * 1024;
  const names = ["header.bin", "piece.bin", "clean.bin"];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-pieces-"));
    mkdirSync(join(dir, "media"));
    for (const n of names) writeFileSync(join(dir, "media", n), randomBytes(40 * CHUNK + 123));
    redis = await redisForTests();
    raw = new Redis(redis.url);
    sys = new Services(dir);
    const ports = await freePorts(6);
    const [checksum, data, m1, m2, m3] = ports.slice(1) as [number, number, number, number, number];
    pdtp = ports[0]!;
    await sys.checksum(checksum, m1);
    await sys.tracker({
      port: pdtp,
      checksum,
      metricsPort: m2,
      redis: redis.url,
      extra: ["--chunk-size", `${CHUNK}`],
    });
    await sys.seeder({ tracker: `127.0.0.1:${pdtp}`, dataPort: data, metricsPort: m3 });
    // every file ready and fully hashed before anything is touched
    for (const n of names) {
      for (let i = 0; ; i++) {
        const id = await raw.hget("ds:names", n);
        const meta = id ? await raw.hmget(`ds:{${id}}:meta`, "hashed", "chunkCount") : [];
        if (id && meta[0] !== null && meta[0] === meta[1]) break;
        assert.ok(i < 300, `${n} not hashed in time`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  after(async () => {
    await sys.stop();
    raw.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const streamKey = async (name: string, key: string) => `ds:{${await raw.hget("ds:names", name)}}:${key}`;

  async function dsclient(name: string) {
    const c = startNode(DSCLIENT, [`pdtp://127.0.0.1:${pdtp}/${name}`, "-o", `${name}.out`, "-q"], { cwd: dir });
    return { code: await c.exited, stderr: c.stderr(), out: join(dir, `${name}.out`) };
  }

  test("a manifest header changed in Redis is refused: exit 6, nothing written", async () => {
    const key = await streamKey("header.bin", "manifest");
    const signed = SignedManifest.decode((await raw.getBuffer(key))!);
    const body = ManifestBody.decode(signed.body);
    body.size += 1; // a bigger file than the one signed
    await raw.set(
      key,
      Buffer.from(SignedManifest.encode({ ...signed, body: Buffer.from(ManifestBody.encode(body).finish()) }).finish()),
    );
    const r = await dsclient("header.bin");
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /manifest of "header\.bin" rejected: manifest signature does not verify/);
    assert.ok(!existsSync(r.out) && !existsSync(`${r.out}.dspart`));
  });

  test("a hash piece changed in Redis is refused: exit 6 naming the piece, nothing written", async () => {
    const key = await streamKey("piece.bin", "pieces");
    const signed = SignedHashPiece.decode((await raw.hgetBuffer(key, "0"))!);
    const body = HashPieceBody.decode(signed.body);
    body.chunkHashes[5]! ^= 0x01; // chunk 0's hash, as if another file's
    await raw.hset(
      key,
      "0",
      Buffer.from(
        SignedHashPiece.encode({ ...signed, body: Buffer.from(HashPieceBody.encode(body).finish()) }).finish(),
      ),
    );
    const r = await dsclient("piece.bin");
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /hash piece of "piece\.bin" rejected: hash piece 0 signature does not verify/);
    assert.ok(!existsSync(r.out) && !existsSync(`${r.out}.dspart`));
  });

  test("an untouched stream of the same tracker downloads", async () => {
    const r = await dsclient("clean.bin");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(r.out), await sha256File(join(dir, "media/clean.bin")));
  });
});
