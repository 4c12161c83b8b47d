import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { SignedTicket } from "./gen/pdtp/v1/common.js";
import { Signer } from "./keys.js";
import { ManifestError, openManifest, signManifest } from "./manifest.js";
import { checkTicket, decodeTicket, encodeTicket, fetchProof, issueTicket, TicketError } from "./ticket.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest();

function manifestFor(data: Buffer, chunkSize: number) {
  const hashes: Buffer[] = [];
  for (let o = 0; o < data.length; o += chunkSize) hashes.push(sha(data.subarray(o, o + chunkSize)));
  return {
    streamId: "s1",
    name: "a/b.bin",
    size: data.length,
    chunkSize,
    chunkHashes: Buffer.concat(hashes),
    createdMs: 1,
    version: 7,
  };
}

test("a signed manifest opens with the network key and verifies each chunk", () => {
  const key = Signer.generate();
  const data = Buffer.alloc(5000, 1);
  data[4500] = 9;
  const m = openManifest(signManifest(manifestFor(data, 2048), key), [key.publicKey]);
  assert.equal(m.chunkCount, 3);
  assert.equal(m.matches(2, sha(data.subarray(4096))), true);
  assert.equal(m.matches(2, sha(Buffer.alloc(904, 1))), false);
  assert.equal(m.matches(3, sha(Buffer.alloc(0))), false);
  assert.match(m.root(), /^[0-9a-f]{64}$/);
});

test("a manifest is refused when tampered, signed by another key, or inconsistent", () => {
  const key = Signer.generate();
  const other = Signer.generate();
  const signed = signManifest(manifestFor(Buffer.alloc(5000), 2048), key);
  const tampered = { ...signed, body: Buffer.from(signed.body) };
  tampered.body[tampered.body.length - 1]! ^= 1;
  assert.throws(() => openManifest(tampered, [key.publicKey]), /signature does not verify/);
  assert.throws(() => openManifest(signed, [other.publicKey]), /unknown key/);
  const short = signManifest({ ...manifestFor(Buffer.alloc(5000), 2048), size: 9000 }, key);
  assert.throws(() => openManifest(short, [key.publicKey]), ManifestError);
  const tiny = signManifest({ ...manifestFor(Buffer.alloc(10), 16), chunkSize: 16 }, key);
  assert.throws(() => openManifest(tiny, [key.publicKey]), /chunk size 16 out of bounds/);
});

test("a ticket survives its header encoding and passes every check", () => {
  const key = Signer.generate();
  const t = issueTicket(
    { streamId: "s1", range: { first: 4, last: 9 }, fetcherId: "f", serverId: "srv", expiresMs: 2000 },
    key,
  );
  const back = decodeTicket(encodeTicket(t));
  const body = checkTicket(back, [key.publicKey], {
    serverId: "srv",
    streamId: "s1",
    range: { first: 5, last: 9 },
    nowMs: 1000,
  });
  assert.equal(body.fetcherId, "f");
  assert.equal(body.nonce.length, 8);
});

test("tickets are refused when forged, expired, or for another server, stream or range", () => {
  const key = Signer.generate();
  const forger = Signer.generate();
  const grant = { streamId: "s1", range: { first: 4, last: 9 }, fetcherId: "f", serverId: "srv", expiresMs: 2000 };
  const want = { serverId: "srv", streamId: "s1", range: { first: 4, last: 9 }, nowMs: 1000 };
  const fault = (t: SignedTicket, w = want) => {
    try {
      checkTicket(t, [key.publicKey], w);
      return "accepted";
    } catch (err) {
      assert.ok(err instanceof TicketError);
      return err.fault;
    }
  };
  const good = issueTicket(grant, key);
  assert.equal(fault(good), "accepted");
  assert.equal(fault({ ...issueTicket(grant, forger), keyId: key.keyId }), "bad-signature");
  assert.equal(fault(issueTicket(grant, forger)), "bad-signature");
  assert.equal(fault(good, { ...want, nowMs: 2000 }), "expired");
  assert.equal(fault(good, { ...want, serverId: "other" }), "wrong-server");
  assert.equal(fault(good, { ...want, streamId: "s2" }), "wrong-stream");
  assert.equal(fault(good, { ...want, range: { first: 3, last: 9 } }), "wrong-range");
  assert.equal(fault(good, { ...want, range: { first: 4, last: 10 } }), "wrong-range");
  const body = Buffer.from(good.body);
  body[body.length - 3]! ^= 0x40;
  assert.equal(fault({ ...good, body }), "bad-signature");
  assert.throws(() => decodeTicket("not base64!"), /base64url/);
  assert.throws(() => decodeTicket(""), TicketError);
});

test("a ticket naming a fetcher key serves only requests with that fetcher's proof for that range", () => {
  const tracker = Signer.generate();
  const fetcher = Signer.generate();
  const thief = Signer.generate();
  const range = { first: 4, last: 9 };
  const grant = { streamId: "s1", range, fetcherId: "f", serverId: "srv", expiresMs: 2000 };
  const t = issueTicket({ ...grant, fetcherKey: fetcher.publicKey.ed25519 }, tracker);
  const want = { serverId: "srv", streamId: "s1", range, nowMs: 1000 };
  const fault = (proof: string | undefined, r = range) => {
    try {
      checkTicket(t, [tracker.publicKey], { ...want, range: r, proof });
      return "accepted";
    } catch (err) {
      assert.ok(err instanceof TicketError);
      return `${err.fault}: ${err.message}`;
    }
  };
  assert.equal(fault(fetchProof(t, range, fetcher)), "accepted");
  assert.equal(fault(fetchProof(t, { first: 5, last: 9 }, fetcher), { first: 5, last: 9 }), "accepted");
  assert.equal(fault(undefined), "wrong-fetcher: request carries no fetcher proof");
  assert.equal(fault(fetchProof(t, range, thief)), "wrong-fetcher: ticket is for another fetcher");
  // a proof for one range does not cover another inside the same ticket
  assert.equal(
    fault(fetchProof(t, range, fetcher), { first: 5, last: 9 }),
    "wrong-fetcher: ticket is for another fetcher",
  );
  // nor another ticket of the same fetcher
  const other = issueTicket({ ...grant, fetcherKey: fetcher.publicKey.ed25519 }, tracker);
  assert.equal(fault(fetchProof(other, range, fetcher)), "wrong-fetcher: ticket is for another fetcher");
  assert.equal(fault("x".repeat(86)), "wrong-fetcher: ticket is for another fetcher");
  assert.equal(fault("not a proof"), "wrong-fetcher: ticket is for another fetcher");
});
