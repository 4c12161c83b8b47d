import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { HashPieceBody, SignedTicket, type SignedHashPiece } from "./gen/pdtp/v1/common.js";
import { Signer } from "./keys.js";
import { ManifestError, openManifest, signHashPiece, signManifest, signPieces } from "./manifest.js";
import { checkTicket, decodeTicket, encodeTicket, fetchProof, issueTicket, TicketError } from "./ticket.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest();

function hashesOf(data: Buffer, chunkSize: number): Buffer {
  const hashes: Buffer[] = [];
  for (let o = 0; o < data.length; o += chunkSize) hashes.push(sha(data.subarray(o, o + chunkSize)));
  return Buffer.concat(hashes);
}

function headerFor(data: Buffer, chunkSize: number, pieceChunks = 2) {
  return { streamId: "s1", name: "a/b.bin", size: data.length, chunkSize, createdMs: 1, version: 7, pieceChunks };
}

test("a signed manifest header opens with the network key; each chunk verifies against its signed piece", () => {
  const key = Signer.generate();
  const data = Buffer.alloc(5 * 1024 + 100, 1);
  data[5150] = 9;
  const signed = signManifest(headerFor(data, 1024), key);
  const m = openManifest(signed, [key.publicKey]);
  assert.equal(m.chunkCount, 6);
  assert.equal(m.pieceCount, 3);
  assert.deepEqual(m.pieceRange(2), { first: 4, last: 5 });
  assert.equal(m.pieceOf(5), 2);
  assert.ok(signed.body.length < 100, "the header does not grow with the file");
  const pieces = signPieces(signed, hashesOf(data, 1024), key);
  assert.equal(pieces.length, 3);
  const p2 = m.openPiece(pieces[2]!, [key.publicKey], 2);
  assert.equal(p2.first, 4);
  assert.equal(p2.matches(4, sha(data.subarray(4096, 5120))), true);
  assert.equal(p2.matches(5, sha(data.subarray(5120))), true);
  assert.equal(p2.matches(5, sha(Buffer.alloc(100, 1))), false);
  assert.equal(p2.matches(3, sha(data.subarray(3072, 4096))), false, "chunk 3 is in another piece");
});

test("a manifest is refused when tampered, signed by another key, or out of bounds", () => {
  const key = Signer.generate();
  const other = Signer.generate();
  const signed = signManifest(headerFor(Buffer.alloc(5000), 2048), key);
  const tampered = { ...signed, body: Buffer.from(signed.body) };
  tampered.body[tampered.body.length - 1]! ^= 1;
  assert.throws(() => openManifest(tampered, [key.publicKey]), /signature does not verify/);
  assert.throws(() => openManifest(signed, [other.publicKey]), /unknown key/);
  const tiny = signManifest({ ...headerFor(Buffer.alloc(10), 16), chunkSize: 16 }, key);
  assert.throws(() => openManifest(tiny, [key.publicKey]), /chunk size 16 out of bounds/);
  const noPieces = signManifest(headerFor(Buffer.alloc(5000), 2048, 0), key);
  assert.throws(() => openManifest(noPieces, [key.publicKey]), ManifestError);
});

test("a hash piece is refused when tampered, forged, moved, or made for another stream, version or header", () => {
  const key = Signer.generate();
  const forger = Signer.generate();
  const data = Buffer.alloc(6 * 1024, 3);
  const signed = signManifest(headerFor(data, 1024), key);
  const m = openManifest(signed, [key.publicKey]);
  const hashes = hashesOf(data, 1024);
  const pieces = signPieces(signed, hashes, key);
  const refusal = (p: SignedHashPiece, expected?: number) => {
    try {
      m.openPiece(p, [key.publicKey], expected);
      return "accepted";
    } catch (err) {
      assert.ok(err instanceof ManifestError);
      return err.message;
    }
  };
  assert.equal(refusal(pieces[1]!, 1), "accepted");
  const tampered = { ...pieces[1]!, body: Buffer.from(pieces[1]!.body) };
  tampered.body[tampered.body.length - 1]! ^= 1;
  assert.equal(refusal(tampered, 1), "hash piece 1 signature does not verify");
  assert.match(refusal(signPieces(signed, hashes, forger)[1]!, 1), /hash piece 1 signed by unknown key/);
  assert.equal(refusal(pieces[2]!, 1), "hash piece 1 is piece 2 of the stream");
  const otherStream = signPieces(signManifest({ ...headerFor(data, 1024), streamId: "s2" }, key), hashes, key);
  assert.match(refusal(otherStream[1]!, 1), /belongs to stream s2 version 7, not s1 version 7/);
  const otherVersion = signPieces(signManifest({ ...headerFor(data, 1024), version: 8 }, key), hashes, key);
  assert.match(refusal(otherVersion[1]!, 1), /version 8, not s1 version 7/);
  const otherHeader = signPieces(signManifest({ ...headerFor(data, 1024), createdMs: 2 }, key), hashes, key);
  assert.equal(refusal(otherHeader[1]!, 1), "hash piece 1 was made for another manifest header of the stream");
  const short = signHashPiece({ ...HashPieceBody.decode(pieces[2]!.body), chunkHashes: hashes.subarray(0, 32) }, key);
  assert.equal(refusal(short, 2), "hash piece 2 has 32 hash bytes, expected 64");
  const beyond = signHashPiece({ ...HashPieceBody.decode(pieces[2]!.body), index: 3 }, key);
  assert.match(refusal(beyond), /has index 3, the stream has 3 pieces/);
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
