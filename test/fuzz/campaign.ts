import { performance } from "node:perf_hooks";
import fc from "fast-check";

/**
 * One public entry point under fuzz: fast-check generates its inputs, `run`
 * feeds one to the real thing and resolves a label for what came back (the
 * outcome histogram of the report), or throws an Error saying what was wrong
 * with the answer (a crash, a 500, an unclear error, no answer in time).
 */
export interface Entry<T> {
  name: string;
  arbitrary: fc.Arbitrary<T>;
  run(input: T): Promise<string>;
  /** Inputs run at once (each worker is a fast-check run of its own seed). */
  concurrency: number;
  /** The memory of what is fuzzed: another process's, or this one's for an in-process parser. */
  memory(): Promise<{ rssBytes: number; heapUsedBytes: number }>;
  /** Shown with a counterexample instead of the raw input (e.g. bytes as hex). */
  describe?(input: T): unknown;
}

export interface Defect {
  /** What was wrong, as `run` threw it. */
  error: string;
  /** The shrunk input (or its description). */
  input: string;
  seed: number;
  path: string | undefined;
}

export interface MemoryPoint {
  inputs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export interface EntryReport {
  entry: string;
  inputs: number;
  seed: number;
  seconds: number;
  inputsPerSecond: number;
  /** Outcome label -> count (gRPC codes, HTTP statuses, accepted/refused). */
  outcomes: Record<string, number>;
  defects: Defect[];
  memory: {
    /** After the first tenth of the inputs (warm caches, compiled code), then after each further tenth. */
    samples: MemoryPoint[];
    /** Least-squares slope over the samples, bytes per 1,000 inputs. */
    rssSlopeBytesPer1000: number;
    heapSlopeBytesPer1000: number;
    /**
     * The floor of the last third of the samples minus that of the first
     * third: a reading can only be raised by garbage not yet collected (a
     * target's heap is read from outside, with no way to collect first), so
     * the lowest readings follow what is kept, and a leak raises them.
     */
    rssGrowthBytes: number;
    heapGrowthBytes: number;
  };
  /** Slowest single input, ms (every input is bounded by its own timeout inside `run`). */
  slowestInputMs: number;
}

/** Memory growth over a campaign past its first tenth that counts as unbounded. */
export const MAX_HEAP_GROWTH_BYTES = 32 * 1024 * 1024;
export const MAX_RSS_GROWTH_BYTES = 96 * 1024 * 1024;

const SEGMENTS = 10;
/** Time spent shrinking a failing input before the smallest found so far is reported. */
const SHRINK_BUDGET_MS = 60_000;

/**
 * Runs `runs` inputs of `entry` (at least one per worker per tenth), in ten
 * segments with a memory sample after each; seeded, so that a run repeats.
 */
export async function campaign<T>(
  entry: Entry<T>,
  runs: number,
  seed: number,
  log: (m: string) => void = () => {},
): Promise<EntryReport> {
  const outcomes: Record<string, number> = {};
  const defects: Defect[] = [];
  const samples: MemoryPoint[] = [];
  let inputs = 0;
  let slowest = 0;
  const started = performance.now();
  const perWorker = Math.max(1, Math.round(runs / SEGMENTS / entry.concurrency));
  // one property per fast-check run: once it failed, its shrinking is bounded in time (a hang costs
  // its whole timeout per try), after which every further candidate passes and the smallest failing
  // input found so far is the one reported
  const property = () => {
    let failedAt: number | undefined;
    return fc.asyncProperty(entry.arbitrary, async (input) => {
      if (failedAt !== undefined && performance.now() - failedAt > SHRINK_BUDGET_MS) return;
      const t0 = performance.now();
      try {
        const label = await entry.run(input);
        outcomes[label] = (outcomes[label] ?? 0) + 1;
      } catch (err) {
        failedAt ??= performance.now();
        throw err;
      } finally {
        slowest = Math.max(slowest, performance.now() - t0);
      }
    });
  };
  for (let s = 0; s < SEGMENTS; s++) {
    const results = await Promise.all(
      Array.from({ length: entry.concurrency }, (_, w) =>
        fc.check(property(), { numRuns: perWorker, seed: seed + s * 1000 + w, maxSkipsPerRun: 0 }),
      ),
    );
    for (const r of results) {
      inputs += r.numRuns;
      if (r.failed) {
        const shown = r.counterexample
          ? entry.describe
            ? entry.describe(r.counterexample[0])
            : r.counterexample[0]
          : undefined;
        defects.push({
          error: r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance ?? "failed"),
          input: show(shown),
          seed: r.seed,
          path: r.counterexamplePath ?? undefined,
        });
      }
    }
    const mem = await entry.memory();
    samples.push({ rssBytes: mem.rssBytes, heapUsedBytes: mem.heapUsedBytes, inputs });
    log(
      `fuzz ${entry.name}: ${inputs} inputs, ${defects.length} defect(s), rss ${mib(mem.rssBytes)} MiB, heap ${mib(mem.heapUsedBytes)} MiB`,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    entry: entry.name,
    inputs,
    seed,
    seconds: round(seconds, 1),
    inputsPerSecond: Math.round(inputs / seconds),
    outcomes: Object.fromEntries(Object.entries(outcomes).sort((a, b) => b[1] - a[1])),
    defects,
    memory: {
      samples,
      rssSlopeBytesPer1000: Math.round(slope(samples, (p) => p.rssBytes) * 1000),
      heapSlopeBytesPer1000: Math.round(slope(samples, (p) => p.heapUsedBytes) * 1000),
      rssGrowthBytes: floorGrowth(samples, (p) => p.rssBytes),
      heapGrowthBytes: floorGrowth(samples, (p) => p.heapUsedBytes),
    },
    slowestInputMs: Math.round(slowest),
  };
}

/**
 * This process's memory, for an entry point fuzzed in process (a parser):
 * after a full collection when node runs with --expose-gc (as `npm run fuzz`
 * and the bench do), else as it stands, garbage included.
 */
export function ownMemory(): { rssBytes: number; heapUsedBytes: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed };
}

/** Problems of a report as sentences: defects, and memory growth past the bounds. */
export function problems(r: EntryReport): string[] {
  const out = r.defects.map((d) => `${r.entry}: ${d.error}\n  input: ${d.input}\n  seed ${d.seed} path ${d.path}`);
  if (r.memory.heapGrowthBytes > MAX_HEAP_GROWTH_BYTES)
    out.push(`${r.entry}: heap grew ${mib(r.memory.heapGrowthBytes)} MiB over the campaign`);
  if (r.memory.rssGrowthBytes > MAX_RSS_GROWTH_BYTES)
    out.push(`${r.entry}: RSS grew ${mib(r.memory.rssGrowthBytes)} MiB over the campaign`);
  return out;
}

/** The lowest `y` of the last third of the samples minus the lowest of the first third. */
function floorGrowth(ps: readonly MemoryPoint[], y: (p: MemoryPoint) => number): number {
  const third = Math.max(1, Math.floor(ps.length / 3));
  const floor = (xs: readonly MemoryPoint[]) => Math.min(...xs.map(y));
  return floor(ps.slice(-third)) - floor(ps.slice(0, third));
}

/** Least-squares slope of y over inputs (per input). */
function slope(ps: readonly MemoryPoint[], y: (p: MemoryPoint) => number): number {
  const n = ps.length;
  if (n < 2) return 0;
  const mx = ps.reduce((a, p) => a + p.inputs, 0) / n;
  const my = ps.reduce((a, p) => a + y(p), 0) / n;
  let num = 0;
  let den = 0;
  for (const p of ps) {
    num += (p.inputs - mx) * (y(p) - my);
    den += (p.inputs - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const mib = (b: number) => round(b / 1024 / 1024, 1);
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

function show(x: unknown): string {
  const s =
    typeof x === "string"
      ? JSON.stringify(x)
      : JSON.stringify(x, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
  return s === undefined ? String(x) : s.length > 2000 ? `${s.slice(0, 2000)}… (${s.length} chars)` : s;
}
