import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_LIVE_SEQ } from "@distribustream/pdtp";

/** The state file's contents. */
interface Saved {
  name: string;
  /** Sequence number the next chunk of the broadcast gets. */
  nextSeq: number;
}

export class SequenceStateError extends Error {
  override name = "SequenceStateError";
}

/**
 * Where a live broadcast's sequence numbers continue after a restart: one
 * small JSON file per stream name, replaced atomically (write, then rename)
 * as chunks are cut, so that a seeder restarted with the same name never
 * reuses a sequence number viewers already hold.
 */
export class SequenceState {
  private readonly path: string;

  constructor(
    dir: string,
    private readonly name: string,
  ) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `live-${encodeURIComponent(name)}.json`);
  }

  /** The saved next sequence number, or `fallback` when nothing was saved for this name. */
  load(fallback: number): number {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return fallback;
      throw new SequenceStateError(`cannot read ${this.path}: ${(err as Error).message}`);
    }
    let saved: Partial<Saved>;
    try {
      saved = JSON.parse(text) as Partial<Saved>;
    } catch {
      throw new SequenceStateError(`${this.path} is not JSON; remove it to restart the sequence numbers`);
    }
    const next = saved.nextSeq;
    if (saved.name !== this.name || typeof next !== "number" || !Number.isSafeInteger(next) || next < 0) {
      throw new SequenceStateError(`${this.path} does not hold a sequence number for ${this.name}`);
    }
    if (next > MAX_LIVE_SEQ) {
      throw new SequenceStateError(
        `"${this.name}" used up its sequence numbers (the last is 2^53 - 2); remove ${this.path} to start them over at 0`,
      );
    }
    return next;
  }

  /** Saves the next sequence number. */
  save(nextSeq: number): void {
    if (nextSeq > MAX_LIVE_SEQ + 1) throw new SequenceStateError(`sequence number ${nextSeq} is beyond 2^53 - 1`);
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify({ name: this.name, nextSeq } satisfies Saved));
    renameSync(tmp, this.path);
  }
}
