import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, Metadata, makeGenericClientConstructor, status, type ServiceError } from "@grpc/grpc-js";
import {
  chunksPath,
  encodeTicket,
  fetchProof,
  issueTicket,
  PeerMessage,
  PeerRole,
  PROOF_HEADER,
  Signer,
  TICKET_HEADER,
  TrackerClient,
  TrackerMessage,
  TrackerService,
  WantMode,
  type Directive,
} from "@distribustream/pdtp";
import { DSCLIENT, sha256File, startNode, startUp, type Proc } from "../support/procs.js";

/** Session key of the test peers (Hello.peer_key); their tickets name it. */
const TEST_PEER = Signer.generate();
const TEST_PEER_KEY = TEST_PEER.publicKey.ed25519;

/**
 * Bad input on every public entry point of a running system: the offender is
 * refused with a clear status and everyone else keeps being served.
 */
describe("bad input is refused and loses nothing", { timeout: 120_000 }, () => {
  let dir: string;
  let up: Proc;
  let target: string;
  let directive: Directive;
  let ticketKey: Signer;
  const size = 3 * 1024 * 1024 + 123;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-bad-"));
    mkdirSync(join(dir, "media"));
    writeFileSync(join(dir, "media/f.bin"), randomBytes(size));
    const sys = await startUp(dir, "f.bin");
    up = sys.proc;
    target = `127.0.0.1:${sys.port}`;
    ticketKey = Signer.fromPem(readFileSync(join(dir, ".distribustream/ticket-key.pem"), "utf8"));
    directive = await firstDirective(target, "f.bin");
  });

  after(async () => {
    assert.equal(await up.kill("SIGTERM"), 0);
    rmSync(dir, { recursive: true, force: true });
  });

  test("a malformed Session message ends only that session with INVALID_ARGUMENT", async () => {
    const err = await rawSession(target, [Buffer.from([0xff, 0xff, 0xff, 0x01])]);
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
  });

  test("a message other than Hello first gets INVALID_ARGUMENT", async () => {
    const msg = Buffer.from(
      PeerMessage.encode({ body: { $case: "position", value: { streamId: "x", nextChunk: 1 } } }).finish(),
    );
    const err = await rawSession(target, [msg]);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /hello/i);
  });

  test("an oversized message gets RESOURCE_EXHAUSTED", async () => {
    const msg = Buffer.from(
      PeerMessage.encode({
        body: {
          $case: "hello",
          value: {
            role: PeerRole.PEER_ROLE_VIEWER,
            dataPort: 1,
            agent: "x".repeat(1024 * 1024),
            credential: "",
            advertiseHost: "",
            advertisePort: 0,
            internalHost: "",
            internalPort: 0,
            peerKey: TEST_PEER_KEY,
          },
        },
      }).finish(),
    );
    const err = await rawSession(target, [msg]);
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  });

  test("an inverted range in Have gets INVALID_ARGUMENT", async () => {
    const client = new TrackerClient(target, credentials.createInsecure());
    const call = client.session();
    const err = await new Promise<ServiceError>((resolve) => {
      call.on("error", resolve);
      call.on("data", (m: TrackerMessage) => {
        if (m.body?.$case === "welcome")
          call.write({
            body: { $case: "join", value: { name: "f.bin", mode: WantMode.WANT_MODE_BULK, have: [], position: 0 } },
          });
        if (m.body?.$case === "joined")
          call.write({
            body: {
              $case: "have",
              value: { streamId: m.body.value.descriptor!.streamId, ranges: [{ first: 5, last: 2 }] },
            },
          });
      });
      call.write({
        body: {
          $case: "hello",
          value: {
            role: PeerRole.PEER_ROLE_VIEWER,
            dataPort: 0,
            agent: "test",
            credential: "",
            advertiseHost: "",
            advertisePort: 0,
            internalHost: "",
            internalPort: 0,
            peerKey: TEST_PEER_KEY,
          },
        },
      });
    });
    client.close();
    assert.equal(err.code, status.INVALID_ARGUMENT);
  });

  test("the data plane refuses missing, forged, expired and mismatched tickets with nothing served", async () => {
    const src = directive.source!;
    const range = directive.range!;
    const path = chunksPath(directive.streamId, range);
    const get = (p: string, ticket?: string, proof?: string) => httpGet(src.host, src.port, p, ticket, proof);
    const grant = {
      streamId: directive.streamId,
      range,
      fetcherId: "x",
      serverId: src.peerId,
      expiresMs: Date.now() + 60_000,
    };

    const none = await get(path);
    assert.equal(none.status, 403);
    const forged = await get(path, encodeTicket(issueTicket(grant, Signer.generate())));
    assert.equal(forged.status, 403);
    const expired = await get(path, encodeTicket(issueTicket({ ...grant, expiresMs: Date.now() - 1 }, ticketKey)));
    assert.equal(expired.status, 403);
    const otherServer = await get(path, encodeTicket(issueTicket({ ...grant, serverId: "someone-else" }, ticketKey)));
    assert.equal(otherServer.status, 403);
    const widerRange = { first: range.first, last: range.last + 1 };
    const wider = await get(
      chunksPath(directive.streamId, widerRange),
      encodeTicket(directive.ticket!),
      fetchProof(directive.ticket!, widerRange, TEST_PEER),
    );
    assert.equal(wider.status, 403);
    // the directive's own ticket, presented without its fetcher's proof or with someone else's
    const unproven = await get(path, encodeTicket(directive.ticket!));
    assert.equal(unproven.status, 403);
    const stolen = await get(
      path,
      encodeTicket(directive.ticket!),
      fetchProof(directive.ticket!, range, Signer.generate()),
    );
    assert.equal(stolen.status, 403);
    for (const r of [none, forged, expired, otherServer, wider, unproven, stolen])
      assert.ok(r.body.length < 200, "no file bytes in a refusal");

    const past = { first: 1000, last: 1001 };
    const notHeld = await get(
      chunksPath(directive.streamId, past),
      encodeTicket(issueTicket({ ...grant, range: past }, ticketKey)),
    );
    assert.equal(notHeld.status, 416);
    const unknown = await get(
      chunksPath("nosuchstream", range),
      encodeTicket(issueTicket({ ...grant, streamId: "nosuchstream" }, ticketKey)),
    );
    assert.equal(unknown.status, 404);
    const escape = await get(`/pdtp/v1/streams/../../etc/passwd/chunks/0-0`, encodeTicket(directive.ticket!));
    assert.ok([400, 404].includes(escape.status), `.. in the path: ${escape.status}`);
    assert.doesNotMatch(escape.body.toString(), /root:/);

    const good = await get(path, encodeTicket(directive.ticket!), fetchProof(directive.ticket!, range, TEST_PEER));
    assert.equal(good.status, 200);
    assert.ok(good.body.length > 0);
  });

  test("after all that, a client still downloads identical bytes", async () => {
    const c = startNode(DSCLIENT, [`pdtp://${target}/f.bin`, "-o", "ok.bin", "--quiet"], { cwd: dir });
    assert.equal(await c.exited, 0, c.stderr());
    assert.equal(await sha256File(join(dir, "ok.bin")), await sha256File(join(dir, "media/f.bin")));
  });
});

/** Opens a Session, sends raw frames, and resolves with the status that ends it. */
function rawSession(target: string, frames: Buffer[]): Promise<ServiceError> {
  const Raw = makeGenericClientConstructor(
    {
      session: {
        ...TrackerService.session,
        requestSerialize: (b: Buffer) => b,
      },
    },
    "pdtp.v1.Tracker",
  );
  const client = new Raw(target, credentials.createInsecure());
  const call = (client as unknown as { session(md: Metadata): NodeJS.ReadWriteStream }).session(new Metadata());
  return new Promise((resolve, reject) => {
    call.on("error", (err: ServiceError) => {
      client.close();
      resolve(err);
    });
    call.on("data", () => {});
    call.on("end", () => reject(new Error("session ended without an error status")));
    for (const f of frames) call.write(f);
  });
}

/** Joins as a viewer and returns the first directive the tracker hands out. */
function firstDirective(target: string, name: string): Promise<Directive> {
  const client = new TrackerClient(target, credentials.createInsecure());
  const call = client.session();
  return new Promise((resolve, reject) => {
    call.on("error", reject);
    call.on("data", (m: TrackerMessage) => {
      if (m.body?.$case === "welcome")
        call.write({
          body: { $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 } },
        });
      if (m.body?.$case === "directives" && m.body.value.directives[0]) {
        resolve(m.body.value.directives[0]);
        call.cancel();
        client.close();
      }
    });
    call.write({
      body: {
        $case: "hello",
        value: {
          role: PeerRole.PEER_ROLE_VIEWER,
          dataPort: 1,
          agent: "test",
          credential: "",
          advertiseHost: "",
          advertisePort: 0,
          internalHost: "",
          internalPort: 0,
          peerKey: TEST_PEER_KEY,
        },
      },
    });
  });
}

function httpGet(
  host: string,
  port: number,
  path: string,
  ticket?: string,
  proof?: string,
): Promise<{ status: number; body: Buffer }> {
  const headers = { ...(ticket ? { [TICKET_HEADER]: ticket } : {}), ...(proof ? { [PROOF_HEADER]: proof } : {}) };
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}
