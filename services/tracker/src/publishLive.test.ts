import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { signLiveAttestation, Signer } from "@distribustream/pdtp";
import { MAX_RANDOM_ACCESS } from "./liveWindows.js";
import { randomAccessAfter } from "./publishLive.js";

const checksum = Signer.generate();
const attested = (seq: number, randomAccess: boolean) =>
  signLiveAttestation(
    { streamId: "s", seq, timestampMs: 1, length: 1, sha256: Buffer.alloc(32), randomAccess },
    checksum,
  );

describe("a live window's random access points", () => {
  it("adds the chunks attested as points, drops those below the window, keeps the newest few", () => {
    assert.deepEqual(
      randomAccessAfter([3, 8], [attested(9, false), attested(10, true), attested(11, false)], 5),
      [8, 10],
    );
    const many = Array.from({ length: 40 }, (_, i) => attested(100 + i, true));
    const kept = randomAccessAfter([], many, 0);
    assert.equal(kept.length, MAX_RANDOM_ACCESS);
    assert.deepEqual(kept.at(-1), 139);
    assert.deepEqual(kept[0], 140 - MAX_RANDOM_ACCESS);
  });

  it("never goes back: an attestation of a chunk at or before the newest point adds nothing", () => {
    assert.deepEqual(randomAccessAfter([8, 10], [attested(10, true), attested(9, true)], 0), [8, 10]);
  });
});
