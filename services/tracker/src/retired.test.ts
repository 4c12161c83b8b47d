import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { PeerRole, PublishStatus, WantMode, type Publish, type TrackerMessage } from "@distribustream/pdtp";
import { ProtocolFixture } from "./testing/index.js";

const CHUNK = 1024;
const SIZE = 10 * CHUNK;
type Body = NonNullable<TrackerMessage["body"]>;

/**
 * Versions of an origin on a real tracker (memory store, checksum double):
 * the origin reaches the checksum service, a viewer of a replaced version
 * finishes it from peers while they hold it, and is told the stream was
 * retired (and taken out of it) once nobody can serve the rest.
 */
describe("tracker: origins and retired versions", { timeout: 60_000 }, () => {
  const fixture = new ProtocolFixture(CHUNK);
  const peer = () => fixture.peer();
  const origin = (etag: string, version: number): Publish => ({
    name: "films/a.bin",
    size: SIZE,
    version,
    originUrl: "http://origin.example/films/a.bin",
    originEtag: etag,
    originLastModified: "",
  });

  it("refuses a publish whose origin is not http(s) or has no strong validator", async () => {
    for (const bad of [{ ...origin('"v1"', 1), originUrl: "file:///etc/passwd" }, { ...origin('W/"v1"', 1) }]) {
      const s = peer();
      await s.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
      s.send({ $case: "publish", value: bad });
      const end = await s.ended;
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
      assert.match(end.details, /must use http:\/\/ or https:\/\/|not a strong entity tag/);
    }
  });

  it("a viewer of a replaced version finishes it from peers, and is told it was retired when nobody can serve it", async () => {
    const seeder = peer();
    await seeder.hello(PeerRole.PEER_ROLE_SEEDER, 9100);
    const v1 = await seeder.publish(origin('"v1"', 1));
    assert.equal(v1.status, PublishStatus.PUBLISH_STATUS_READY, v1.detail);
    const req = fixture.checksum.requests.at(-1)!;
    assert.equal(req.originUrl, "http://origin.example/films/a.bin");
    assert.equal(req.originEtag, '"v1"');

    // a viewer holding all of v1, and one holding nothing
    const holder = peer();
    await holder.hello(PeerRole.PEER_ROLE_VIEWER, 9200);
    holder.send({
      $case: "join",
      value: { name: "films/a.bin", mode: WantMode.WANT_MODE_BULK, have: [{ first: 0, last: 9 }], position: 10 },
    });
    assert.equal((await holder.next("joined")).descriptor!.streamId, v1.streamId);
    const late = peer();
    await late.hello(PeerRole.PEER_ROLE_VIEWER, 9300);
    late.send({
      $case: "join",
      value: { name: "films/a.bin", mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 },
    });
    assert.equal((await late.next("joined")).descriptor!.streamId, v1.streamId);

    // the origin changes: v2 takes the name, the seeder leaves v1
    const v2 = await seeder.publish(origin('"v2"', 2));
    assert.equal(v2.status, PublishStatus.PUBLISH_STATUS_READY, v2.detail);
    assert.notEqual(v2.streamId, v1.streamId);

    // v1 can still be finished from the holder: directives, no Retired
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(late.inbox.filter((b) => b.$case === "retired").length, 0, "not retired while a peer holds v1");
    const fromHolder = late.inbox
      .filter((b): b is Extract<Body, { $case: "directives" }> => b.$case === "directives")
      .flatMap((b) => b.value.directives);
    assert.ok(fromHolder.length > 0, "directed to fetch v1");
    assert.ok(
      fromHolder.every((d) => d.streamId === v1.streamId && (d.source?.port === 9200 || d.source?.port === 9100)),
      JSON.stringify(fromHolder.map((d) => [d.streamId, d.source?.port])),
    );
    assert.ok(
      fromHolder.some((d) => d.source?.port === 9200),
      "from the holder",
    );

    // the holder leaves: nobody can serve v1 any more
    holder.call.end();
    const retired = await late.next("retired", 15_000);
    assert.equal(retired.streamId, v1.streamId);
    assert.equal(retired.byStreamId, v2.streamId);
    assert.match(retired.detail, /^"films\/a\.bin" changed during the download: .*nobody can serve chunk \d+ of it/);
    // it left the stream: a report for v1 is now refused as not joined
    late.send({ $case: "leave", value: { streamId: v1.streamId } });
    const end = await late.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /has not joined stream/);
  });
});
