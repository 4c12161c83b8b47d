import type { ChunkRange } from "@distribustream/pdtp";
import type { SwarmStore } from "@distribustream/swarm-store";
import type { ReplicaEvents } from "./replicaEvents.js";
import type { Session } from "./session.js";

/** The stream was retired (see SwarmStore.retireStreams) between reading it and joining it. */
export class StreamGoneError extends Error {
  constructor(readonly streamId: string) {
    super(`stream ${streamId} was retired meanwhile`);
  }
}

/**
 * Puts a publishing seeder in a ready stream's swarm, holding `have` (a
 * file's every chunk; nothing yet for a live stream, whose chunks it is
 * credited with as they are attested). Resolves false (and leaves it out
 * again) when, during the store call, the session closed or the name was
 * unpublished or republished as another stream: the cleanup of those may
 * have run before the store had it. Rejects with StreamGoneError when the
 * store no longer has the stream (retired meanwhile): the caller publishes
 * it afresh.
 */
export async function joinAsSeeder(
  store: SwarmStore,
  events: ReplicaEvents,
  s: Session,
  name: string,
  streamId: string,
  have: ChunkRange[],
): Promise<boolean> {
  const { joined, dropped } = await store.joinPeer(
    streamId,
    { peerId: s.peerId, host: s.dataHost, port: s.dataPort, role: "seeder", mode: "bulk", position: 0, have },
    Date.now(),
  );
  if (!joined) throw new StreamGoneError(streamId);
  // a seeder publishing the same stream again replaces its record: its uploads end
  events.withdraw(dropped, s.peerId);
  if (!s.closed && s.publishedStream(name) === streamId) {
    events.announce(streamId, { type: "joined", peerId: s.peerId, role: "seeder" });
    s.enteredSwarm(streamId);
    return true;
  }
  await events.leaveSwarm(streamId, s.peerId);
  return false;
}
