import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  chunkCount,
  chunksPath,
  DEFAULT_CHUNK_SIZE,
  encodeTicket,
  issueTicket,
  PeerRole,
  Signer,
  streamIdFor,
  TICKET_HEADER,
  TrackerService,
  type PeerMessage,
  type TrackerServer,
} from "@distribustream/pdtp";
import { createLogger, Registry } from "@distribustream/runtime";
import { startSeeder, type RunningSeeder } from "./index.js";
import { TestTracker } from "./testing/index.js";

const log = createLogger("test", { level: "silent" });
const trackerKey = Signer.generate();

function fetchRaw(port: number, streamId: string, count: number, serverId: string) {
  const ticket = issueTicket(
    { streamId, range: { first: 0, last: count - 1 }, fetcherId: "viewer", serverId, expiresMs: Date.now() + 60_000 },
    trackerKey,
  );
  return new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    get(
      {
        host: "127.0.0.1",
        port,
        path: chunksPath(streamId, { first: 0, last: count - 1 }),
        headers: { [TICKET_HEADER]: encodeTicket(ticket) },
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (p: Buffer) => parts.push(p));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on("error", reject);
      },
    ).on("error", reject);
  });
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const old = (path: string) => utimes(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));

describe("seeder", () => {
  let root: string;
  let media: string;
  let tracker: TestTracker;
  let seeder: RunningSeeder;
  const files: Record<string, Buffer> = {
    "a.bin": randomBytes(DEFAULT_CHUNK_SIZE * 2 + 77),
    "sub/deeper/b.bin": randomBytes(5000),
    ".hidden": randomBytes(10),
    "reject-me.bin": randomBytes(10),
  };
  const secret = randomBytes(3000); // outside the media folder

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "seeder-test-"));
    media = join(root, "media");
    await mkdir(join(media, "sub/deeper"), { recursive: true });
    for (const [name, data] of Object.entries(files)) {
      await writeFile(join(media, name), data);
      await old(join(media, name));
    }
    await writeFile(join(root, "secret.bin"), secret);
    await old(join(root, "secret.bin"));
    await symlink(join(root, "secret.bin"), join(media, "escape.bin"));
    await symlink(join(media, "a.bin"), join(media, "inside-link.bin"));
    tracker = new TestTracker(trackerKey);
    await tracker.start();
    seeder = await startSeeder({
      tracker: `127.0.0.1:${tracker.port}`,
      media,
      dataHost: "127.0.0.1",
      dataPort: 0,
      advertise: { host: "seed.example.net", port: 30080 },
      internalAddress: { host: "seeder.internal" },
      credential: "s3cret",
      scanIntervalMs: 100,
      log,
      registry: new Registry(),
    });
  });

  after(async () => {
    await seeder?.drain();
    tracker?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it("says hello as a seeder with its data port, agent, credential, advertised and internal address", async () => {
    await tracker.until(() => tracker.hellos.length > 0, "hello");
    const h = tracker.hellos[0]!;
    assert.equal(h.role, PeerRole.PEER_ROLE_SEEDER);
    assert.equal(h.dataPort, seeder.dataPort);
    assert.equal(h.agent, "dsseed/0.1.0");
    assert.equal(h.credential, "s3cret");
    assert.equal(h.advertiseHost, "seed.example.net");
    assert.equal(h.advertisePort, 30080);
    assert.equal(h.internalHost, "seeder.internal");
    assert.equal(h.internalPort, 0, "no port: the data port");
  });

  it("publishes every file, subfolders included, and skips dotfiles and escaping symlinks", async () => {
    const a = await seeder.whenReady("a.bin");
    const st = files["a.bin"]!;
    const pa = tracker.publishes.find((p) => p.name === "a.bin")!;
    assert.equal(pa.size, st.length);
    assert.equal(a, streamIdFor("a.bin", pa.size, pa.version));
    assert.ok(Math.abs(pa.version - (Date.now() - 60_000)) < 10_000, "version is the mtime in ms");
    assert.equal(
      await seeder.whenReady("sub/deeper/b.bin"),
      streamIdFor("sub/deeper/b.bin", 5000, tracker.publishes.find((p) => p.name === "sub/deeper/b.bin")!.version),
    );
    await seeder.whenReady("inside-link.bin");
    const names = tracker.publishes.map((p) => p.name).sort();
    assert.deepEqual(names, ["a.bin", "inside-link.bin", "reject-me.bin", "sub/deeper/b.bin"]);
  });

  it("serves the published bytes from disk with a ticket naming it", async () => {
    const pa = tracker.publishes.find((p) => p.name === "a.bin")!;
    const id = streamIdFor("a.bin", pa.size, pa.version);
    const r = await fetchRaw(seeder.dataPort, id, chunkCount(pa.size, DEFAULT_CHUNK_SIZE), tracker.peerIds.at(-1)!);
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), sha(files["a.bin"]!));
  });

  it("does not serve a symlink that leads outside the media folder", async () => {
    const version = Math.floor(Date.now() - 60_000);
    // Whatever version the seeder might have used, it must not know the stream; try the likely ones.
    for (const v of [version, version - 1, version + 1]) {
      const id = streamIdFor("escape.bin", secret.length, v);
      const r = await fetchRaw(seeder.dataPort, id, 1, tracker.peerIds.at(-1)!);
      assert.equal(r.status, 404);
      assert.ok(!r.body.includes(secret.subarray(0, 16)));
    }
  });

  it("never serves outside bytes when a published file is swapped for an escaping symlink", async () => {
    const data = randomBytes(3000);
    await writeFile(join(media, "swap.bin"), data);
    await old(join(media, "swap.bin"));
    const id = await seeder.whenReady("swap.bin");
    await unlink(join(media, "swap.bin"));
    await symlink(join(root, "secret.bin"), join(media, "swap.bin")); // same size, same mtime
    for (let i = 0; i < 3; i++) {
      const r = await fetchRaw(seeder.dataPort, id, 1, tracker.peerIds.at(-1)!).catch(() => undefined);
      assert.ok(!r || r.status !== 200, `attempt ${i} answered 200`);
      assert.ok(!r || !r.body.includes(secret.subarray(0, 16)));
      await new Promise((res) => setTimeout(res, 60));
    }
    await tracker.until(() => tracker.unpublishes.includes("swap.bin"), "unpublish of the swapped file");
  });

  it("rejects whenReady with the tracker's reason on REJECTED", async () => {
    await assert.rejects(seeder.whenReady("reject-me.bin"), /test says no/);
  });

  it("publishes a file added after start once it is settled, and serves it", async () => {
    const data = randomBytes(9000);
    await writeFile(join(media, "sub/late.bin"), data);
    const id = await seeder.whenReady("sub/late.bin");
    const r = await fetchRaw(seeder.dataPort, id, 1, tracker.peerIds.at(-1)!);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(data));
  });

  it("publishes a changed file as a new version and unpublishes a removed one", async () => {
    const before = await seeder.whenReady("sub/deeper/b.bin");
    await writeFile(join(media, "sub/deeper/b.bin"), randomBytes(6000));
    await tracker.until(
      () => tracker.publishes.some((p) => p.name === "sub/deeper/b.bin" && p.size === 6000),
      "new version",
    );
    const after = await seeder.whenReady("sub/deeper/b.bin");
    assert.notEqual(after, before);
    const gone = await fetchRaw(seeder.dataPort, before, 1, tracker.peerIds.at(-1)!);
    assert.equal(gone.status, 404);

    await unlink(join(media, "inside-link.bin"));
    await tracker.until(() => tracker.unpublishes.includes("inside-link.bin"), "unpublish");
  });

  it("reconnects after the session ends, says hello again and republishes everything", async () => {
    const hellos = tracker.hellos.length;
    const aCount = tracker.publishes.filter((p) => p.name === "a.bin").length;
    tracker.kickAll();
    await tracker.until(() => tracker.hellos.length > hellos, "second hello");
    await tracker.until(() => tracker.publishes.filter((p) => p.name === "a.bin").length > aCount, "republish");
    // The data plane now answers to the new peer id.
    const id = await seeder.whenReady("a.bin");
    const r = await fetchRaw(seeder.dataPort, id, 1, tracker.peerIds.at(-1)!);
    assert.equal(r.status, 200);
    const stale = await fetchRaw(seeder.dataPort, id, 1, tracker.peerIds[0]!);
    assert.equal(stale.status, 403);
  });
});

describe("seeder configuration", () => {
  it("refuses a missing media folder with a clear message", async () => {
    await assert.rejects(
      startSeeder({ tracker: "127.0.0.1:1", media: "/nonexistent/media", dataPort: 0, log, registry: new Registry() }),
      /media folder \/nonexistent\/media does not exist/,
    );
  });
});

describe("seeder refused by the tracker", () => {
  for (const code of [grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]) {
    it(`stops on ${grpc.status[code]} instead of retrying, and tells the caller once`, async () => {
      const server = new grpc.Server();
      let hellos = 0;
      const impl: TrackerServer = {
        session: (call) => {
          call.on("data", (m: PeerMessage) => {
            if (m.body?.$case !== "hello") return;
            hellos++;
            call.emit("error", { code, details: "unknown seeder token" });
          });
          call.on("error", () => {});
        },
        describeStream: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
        listStreams: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
        getHashPieces: (_c, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
      };
      server.addService(TrackerService, impl);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
          e ? reject(e) : resolve(p),
        ),
      );
      const media = await mkdtemp(join(tmpdir(), "ds-seed-refused-"));
      await writeFile(join(media, "a.bin"), randomBytes(1000));
      await utimes(join(media, "a.bin"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
      const refusals: Error[] = [];
      const seeder = await startSeeder({
        tracker: `127.0.0.1:${port}`,
        media,
        dataHost: "127.0.0.1",
        dataPort: 0,
        credential: "dss_wrong",
        onRefused: (err) => refusals.push(err),
        log,
        registry: new Registry(),
      });
      try {
        await assert.rejects(
          seeder.whenReady("a.bin"),
          new RegExp(
            `^CredentialRefusedError: the tracker refused this seeder's credential \\(${grpc.status[code]}: unknown seeder token\\)$`,
          ),
        );
        await new Promise((r) => setTimeout(r, 1_000)); // several backoff periods
        assert.equal(hellos, 1, "no reconnection");
        assert.equal(refusals.length, 1);
        assert.equal(
          refusals[0]!.message,
          `the tracker refused this seeder's credential (${grpc.status[code]}: unknown seeder token)`,
        );
      } finally {
        await seeder.drain();
        server.forceShutdown();
        await rm(media, { recursive: true, force: true });
      }
    });
  }
});
