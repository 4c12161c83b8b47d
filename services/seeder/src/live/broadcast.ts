import {
  LiveAttestationBody,
  liveFrameHead,
  MAX_LIVE_SEQ,
  startsAtRandomAccess,
  type ChunkRange,
  type LiveChunkClaim,
  type SignedLiveAttestation,
} from "@distribustream/pdtp";
import { LiveWindow, type LiveStreamLayout } from "@distribustream/data-plane";
import type { Logger } from "@distribustream/runtime";
import type { Readable } from "node:stream";
import { cutChunks, type ChunkPolicy } from "./chunker.js";
import type { SequenceState } from "./sequenceState.js";

export interface LiveBroadcastOptions {
  name: string;
  /** The live input (see sources.ts). */
  input: AsyncIterable<Uint8Array>;
  policy: ChunkPolicy;
  /** Chunks kept for peers (and the checksum service) to fetch. */
  windowChunks: number;
  /** Where the sequence numbers continue after a restart. */
  state: SequenceState;
  /** New chunks to claim to the tracker (in order, batched as they are cut). */
  onChunks: (claims: LiveChunkClaim[]) => void;
  /** The input ended (`last`: the broadcast's last chunk, undefined when it had none) or failed (`err`). */
  onEnd: (last: number | undefined, err?: Error) => void;
  /**
   * Keeps each chunk's bytes, in order, as it is cut (a recording); a
   * promise returned holds the input until it resolves (backpressure).
   */
  record?: ((data: Buffer) => Promise<void> | undefined) | undefined;
  log: Logger;
}

/**
 * One live broadcast at its seeder: cuts the input into chunks from the
 * sequence number where the broadcast continues, keeps the last window of
 * them to serve, claims each to the tracker and attaches its attestation
 * when the tracker sends it back, so that peers get every chunk with its
 * signature. The sequence state is saved before a chunk is claimed, so a
 * restart never reuses a number.
 */
export class LiveBroadcast {
  readonly window: LiveWindow;
  private next: number | undefined;
  private started = false;
  private stopped = false;
  private highestAttested: number | undefined;

  constructor(private readonly o: LiveBroadcastOptions) {
    this.window = new LiveWindow(o.windowChunks);
  }

  /** The sequence number this broadcast's next chunk gets when it starts: the saved one, or 0. */
  savedNextSeq(): number {
    return this.o.state.load(0);
  }

  /** The sequence number the next chunk cut gets; undefined before start. */
  get nextSeq(): number | undefined {
    return this.next;
  }

  /** The highest sequence number attested so far (see attested), or undefined. */
  get lastAttested(): number | undefined {
    return this.highestAttested;
  }

  /** Starts reading the input; the first chunk gets `firstSeq`. Only once. */
  start(firstSeq: number): void {
    if (this.started) return;
    this.started = true;
    this.next = firstSeq;
    this.run().then(
      (last) => this.o.onEnd(last),
      (err: unknown) => this.o.onEnd(this.window.edge, err as Error),
    );
  }

  /** Stops reading the input (the seeder is draining). */
  stop(): void {
    this.stopped = true;
    const input = this.o.input as Partial<Readable>;
    input.destroy?.();
  }

  /**
   * Attestations of claimed chunks, from the tracker: served with the chunks
   * from now on. Returns how many chunks still held got one.
   */
  attested(attestations: readonly SignedLiveAttestation[]): number {
    let n = 0;
    for (const signed of attestations) {
      let seq: number;
      try {
        seq = LiveAttestationBody.decode(signed.body).seq;
      } catch {
        this.o.log.warn({ name: this.o.name }, "an attestation from the tracker does not decode");
        continue;
      }
      if (!this.window.attest(seq, liveFrameHead(signed))) continue;
      n++;
      if (this.highestAttested === undefined || seq > this.highestAttested) this.highestAttested = seq;
    }
    return n;
  }

  /**
   * The claim of a chunk still held: its length, source time, and whether it
   * begins at a random access point (what the checksum service checks too).
   */
  claimOf(seq: number): LiveChunkClaim | undefined {
    const c = this.window.chunk(seq);
    return c && { seq, length: c.data.length, timestampMs: c.timestampMs, randomAccess: startsAtRandomAccess(c.data) };
  }

  /** The stream as the data plane serves it: raw for the checksum service, framed for peers. */
  layout(): LiveStreamLayout {
    return {
      kind: "live",
      name: this.o.name,
      span: (range: ChunkRange) => this.window.span(range),
      attested: (range: ChunkRange) => this.window.attested(range),
      whenAttested: (range: ChunkRange, timeoutMs: number) => this.window.whenAttested(range, timeoutMs),
    };
  }

  private async run(): Promise<number | undefined> {
    for await (const chunk of cutChunks(this.o.input, this.o.policy)) {
      if (this.stopped) break;
      const seq = this.next!;
      if (seq > MAX_LIVE_SEQ) {
        throw new Error(
          `"${this.o.name}" used up its sequence numbers (the last is 2^53 - 2 = ${MAX_LIVE_SEQ}): the broadcast ends`,
        );
      }
      this.o.state.save(seq + 1);
      this.next = seq + 1;
      this.window.push(seq, chunk.data, chunk.timestampMs);
      this.o.onChunks([this.claimOf(seq)!]);
      const full = this.o.record?.(chunk.data);
      if (full) await full;
    }
    return this.window.edge;
  }
}
