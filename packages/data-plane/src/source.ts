import type { Readable } from "node:stream";
import type { ChunkRange, PublicKey } from "@distribustream/pdtp";

/** Shape of one stream as the serving peer knows it. */
export interface StreamLayout {
  size: number;
  chunkSize: number;
  chunkCount: number;
  name: string;
}

/** What a peer (client or seeder) can serve. */
export interface ChunkSource {
  /** Layout of a stream this peer knows; undefined answers 404. */
  layout(streamId: string): StreamLayout | undefined;
  /** True when every chunk of `range` is held and verified; false answers 416. */
  holds(streamId: string, range: ChunkRange): boolean;
  /** Bytes [start, end) of the stream, streamed from disk with backpressure. */
  read(streamId: string, start: number, end: number): Readable;
}

/** Who this peer is, as told by the tracker's Welcome. */
export interface DataPlaneIdentity {
  peerId: string;
  ticketKeys: readonly PublicKey[];
}
