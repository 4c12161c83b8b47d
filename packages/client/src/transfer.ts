import type { ChunkRange, Directive, RangeSet, TransferOutcome } from "@distribustream/pdtp";
import type { ControlBatcher } from "./control.js";

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

/**
 * What the tracker hears of a transfer that ended: its report, or, when the
 * tracker withdrew it or it belongs to a lost session (`generation` is not
 * the session's), only the chunks it brought, as holdings.
 */
export function reportEnd(
  batcher: ControlBatcher,
  t: TransferState,
  generation: number,
  outcome: TransferOutcome,
  detail: string,
  httpStatus: number,
): void {
  if (t.cancelled || t.generation !== generation) {
    if (!t.verified.isEmpty) batcher.held(t.verified.ranges());
    return;
  }
  batcher.report({
    transferId: t.directive.transferId,
    outcome,
    bytes: t.bytes,
    durationMs: Math.min(0xffffffff, Date.now() - t.startedMs),
    detail: detail.slice(0, 200),
    httpStatus,
    verified: [...t.verified.ranges()],
  });
}
