import type { ChunkRange, Directive, RangeSet } from "@distribustream/pdtp";

/** What a file and a live download keep of one transfer, from directive to report. */
export interface TransferState {
  /** `${generation}:${transferId}`: ids restart with a new tracker session. */
  key: string;
  directive: Directive;
  range: ChunkRange;
  generation: number;
  fromSeeder: boolean;
  abort: AbortController;
  verified: RangeSet;
  bytes: number;
  startedMs: number;
  /** The tracker withdrew it: no report. */
  cancelled: boolean;
  /** We gave up on it (the download completed, ended or failed). */
  dropped: boolean;
}
