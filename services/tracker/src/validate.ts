import { isHostName, streamNameProblem, type ChunkRange, type Hello } from "@distribustream/pdtp";
import { invalidArgument } from "@distribustream/runtime";
import type { ChunkBounds } from "@distribustream/swarm-store";

/** Most ranges accepted in one message; holdings are a handful of ranges in practice. */
export const MAX_RANGES = 4096;
/** Most transfer reports in one message. */
export const MAX_REPORTS = 1024;

export function checkName(name: string, what = "stream name"): void {
  const problem = streamNameProblem(name);
  if (problem) throw invalidArgument(`bad ${what}: ${problem}`);
}

export function checkString(value: string, field: string, maxBytes: number): void {
  if (Buffer.byteLength(value) > maxBytes) throw invalidArgument(`${field} is longer than ${maxBytes} bytes`);
}

/** Every range well-formed and inside `bounds`; throws INVALID_ARGUMENT naming the first bad one. */
export function checkRanges(ranges: readonly ChunkRange[], bounds: ChunkBounds, field: string): void {
  if (ranges.length > MAX_RANGES) throw invalidArgument(`${field} has ${ranges.length} ranges (at most ${MAX_RANGES})`);
  for (const r of ranges) {
    const numbers = Number.isSafeInteger(r.first) && Number.isSafeInteger(r.last) && r.first >= 0;
    if (numbers && r.first <= r.last && r.first >= bounds.low && r.last <= bounds.high) continue;
    const why = r.first > r.last ? "has first > last" : numbers ? outside(bounds) : "is not a range of chunk numbers";
    throw invalidArgument(`${field}: range ${r.first}-${r.last} ${why}`);
  }
}

/** Why a chunk number past `bounds` is refused: "is beyond the stream's N chunks" (from 0), or names the bounds. */
export function outside(bounds: ChunkBounds): string {
  return bounds.low === 0
    ? `is beyond the stream's ${bounds.high + 1} chunks`
    : `is outside the stream's chunks ${bounds.low}-${bounds.high}`;
}

/**
 * A Hello's data addresses: data_port and, from a seeder only, an advertised
 * and an internal host (host names or IP literals) and port (1-65535; 0 =
 * data_port). Throws INVALID_ARGUMENT naming the field.
 */
export function checkDataAddress(
  h: Pick<Hello, "dataPort" | "advertiseHost" | "advertisePort" | "internalHost" | "internalPort">,
  role: "viewer" | "seeder",
): void {
  const port = (value: number, field: string) => {
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      throw invalidArgument(`Hello.${field} ${value} is not a TCP port`);
    }
    if (value !== 0 && role !== "seeder") throw invalidArgument(`Hello.${field} is for seeders only`);
  };
  const host = (value: string, field: string) => {
    if (!value) return;
    if (role !== "seeder") throw invalidArgument(`Hello.${field} is for seeders only`);
    if (!isHostName(value)) {
      throw invalidArgument(`Hello.${field} "${value.slice(0, 64)}" is not a host name or IP`);
    }
  };
  if (!Number.isInteger(h.dataPort) || h.dataPort < 0 || h.dataPort > 65535) {
    throw invalidArgument(`Hello.data_port ${h.dataPort} is not a TCP port`);
  }
  host(h.advertiseHost, "advertise_host");
  port(h.advertisePort, "advertise_port");
  host(h.internalHost, "internal_host");
  port(h.internalPort, "internal_port");
}
