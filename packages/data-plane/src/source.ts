import type { Readable } from "node:stream";
import type { ChunkRange, PublicKey } from "@distribustream/pdtp";

/** Shape of one on-demand stream (a file) as the serving peer knows it. */
export interface StreamLayout {
  kind?: "file";
  size: number;
  chunkSize: number;
  chunkCount: number;
  name: string;
}

/**
 * A live stream as the serving peer knows it: chunks have the lengths their
 * source cut them at, so only the peer maps a range of sequence numbers onto
 * bytes, in its own numbering of the bytes it holds.
 */
export interface LiveStreamLayout {
  kind: "live";
  name: string;
  /** Bytes [start, end) that chunks `range` occupy for `read`, or undefined when not every chunk is held (416). */
  span(range: ChunkRange): { start: number; end: number } | undefined;
  /**
   * The frames of chunks `range` for a /live/ request (see @distribustream/pdtp
   * dataPlane.ts): buffers whose concatenation is, for each chunk in order,
   * its liveFrameHead and its bytes (views of what is held are fine; they are
   * sent as they are and must not change until sent). Undefined when a chunk
   * of the range is not held with its attestation (416). A peer without it
   * (one that holds no attestations) answers every /live/ request 416.
   */
  attested?(range: ChunkRange): readonly Buffer[] | undefined;
  /**
   * The frames of `range` once every chunk of it has its attestation, for a
   * range held but not yet attested: the tracker credits a seeder with its
   * chunks as the checksum service attests them and tells the seeder a moment
   * later, so a viewer's request can arrive first. Resolves undefined when
   * they are not all attested within `timeoutMs` (or a chunk is dropped).
   */
  whenAttested?(range: ChunkRange, timeoutMs: number): Promise<readonly Buffer[] | undefined>;
}

/** What a peer (client or seeder) can serve. */
export interface ChunkSource {
  /** Layout of a stream this peer knows; undefined answers 404. */
  layout(streamId: string): StreamLayout | LiveStreamLayout | undefined;
  /** True when every chunk of `range` is held and verified; false answers 416. */
  holds(streamId: string, range: ChunkRange): boolean;
  /**
   * Bytes [start, end) of the stream, streamed from disk with backpressure.
   * A read that fails before its first byte with an error carrying
   * `refusalStatus` (see refusalStatusOf) is answered with that status
   * instead of a cut response.
   */
  read(streamId: string, start: number, end: number): Readable;
}

/**
 * The data-plane status (404, 416) a failed read asks to answer with, when it
 * failed before sending anything: e.g. 404 when a relayed origin no longer
 * has the version the stream names. Undefined for other errors.
 */
export function refusalStatusOf(err: unknown): number | undefined {
  const status = (err as { refusalStatus?: unknown } | undefined)?.refusalStatus;
  return status === 404 || status === 416 ? status : undefined;
}

/** Who this peer is, as told by the tracker's Welcome. */
export interface DataPlaneIdentity {
  peerId: string;
  ticketKeys: readonly PublicKey[];
}
