import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelay } from "@distribustream/tracker-link";

/**
 * Where a live broadcast's bytes come from: `-` (standard input), an
 * `http(s)://` URL read as a continuous stream, a file played at a bitrate
 * (bits per second), or a stream the caller opened (an encoder's stdout).
 */
export type LiveInput =
  | { kind: "stdin" }
  | { kind: "http"; url: string }
  | { kind: "file"; path: string; bitrate: number; loop: boolean }
  | { kind: "stream"; stream: Readable; label: string };

/** How an input reads in logs: "-", its URL, its path, or its label. */
export function describeInput(input: LiveInput): string {
  switch (input.kind) {
    case "stdin":
      return "-";
    case "http":
      return input.url;
    case "file":
      return input.path;
    case "stream":
      return input.label;
  }
}

export interface OpenInputOptions {
  /** Ends an HTTP or file input (a stream input ends when destroyed). */
  signal: AbortSignal;
  /** Standard input, for `stdin` (default process.stdin). */
  stdin?: Readable | undefined;
  /** An HTTP input dropped and is retried. */
  onRetry?: (why: string, retryInMs: number) => void;
}

/**
 * The bytes of `input`, read from the first iteration on (nothing is opened
 * or read before): an HTTP input reconnects by itself and ends only with
 * `signal`; stdin, a file and a stream end with their data, or fail.
 */
export function openLiveInput(input: LiveInput, o: OpenInputOptions): AsyncIterable<Uint8Array> {
  switch (input.kind) {
    case "stdin":
      return stdinStream(o.stdin);
    case "http":
      return httpStream(input.url, { signal: o.signal, onRetry: o.onRetry });
    case "file":
      return pacedFile(input.path, input.bitrate, { loop: input.loop, signal: o.signal });
    case "stream":
      return input.stream as AsyncIterable<Uint8Array>;
  }
}

export class LiveSourceError extends Error {
  override name = "LiveSourceError";
}

/**
 * Reads `path` at `bitrate` bits per second, as if a camera produced it: never
 * ahead of the clock, in blocks of about 20 ms of media. With `loop` it starts
 * over at the end (a demo that never ends); without, it ends with the file.
 */
export async function* pacedFile(
  path: string,
  bitrate: number,
  opts: { loop: boolean; signal?: AbortSignal },
): AsyncGenerator<Buffer> {
  if (!(bitrate > 0)) throw new LiveSourceError(`playing ${path} needs a bitrate above 0`);
  const bytesPerMs = bitrate / 8 / 1000;
  const block = Math.max(188, Math.min(1 << 20, Math.round(bytesPerMs * 20)));
  const started = performance.now();
  let sent = 0;
  for (;;) {
    const fh = await open(path, "r");
    let read = 0;
    try {
      for (;;) {
        // Fresh buffer each time: what is yielded is kept by the chunker, never overwritten.
        const buf = Buffer.allocUnsafe(block);
        const { bytesRead } = await fh.read(buf, 0, block, null);
        if (bytesRead === 0) break;
        read += bytesRead;
        const due = started + (sent + bytesRead) / bytesPerMs;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait, undefined, { signal: opts.signal });
        sent += bytesRead;
        yield bytesRead === block ? buf : buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
    if (!opts.loop) return;
    if (read === 0) throw new LiveSourceError(`${path} is empty: nothing to loop`);
  }
}

export interface HttpStreamOptions {
  signal?: AbortSignal;
  /** Called when the stream drops or cannot be reached, before the next attempt. */
  onRetry?: (why: string, retryInMs: number) => void;
  /** Longest wait for the next bytes before the connection counts as dropped (default 15 s). */
  idleTimeoutMs?: number;
  /** Reconnect backoff bounds (default 250 ms to 10 s, full jitter). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

/**
 * Reads an HTTP(S) URL as one continuous stream: the body of each response,
 * one after the other, reconnecting with jittered exponential backoff
 * whenever the connection drops, ends, stalls or answers other than 200
 * (the backoff starts over once bytes flow again). Ends only when `signal`
 * aborts.
 */
export async function* httpStream(url: string, opts: HttpStreamOptions = {}): AsyncGenerator<Buffer> {
  const min = opts.backoffMinMs ?? 250;
  const max = opts.backoffMaxMs ?? 10_000;
  const idle = opts.idleTimeoutMs ?? 15_000;
  let failures = 0;
  while (!opts.signal?.aborted) {
    const ac = new AbortController();
    const abort = () => ac.abort();
    opts.signal?.addEventListener("abort", abort, { once: true });
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ac.abort(new Error(`no bytes for ${idle} ms`)), idle);
    };
    let why: string;
    try {
      arm();
      const res = await fetch(url, { signal: ac.signal, redirect: "follow" });
      if (res.status !== 200 || !res.body) {
        why = `HTTP ${res.status}`;
        await res.body?.cancel();
      } else {
        for await (const part of res.body) {
          arm();
          failures = 0;
          yield Buffer.from(part.buffer, part.byteOffset, part.byteLength);
        }
        why = "the stream ended";
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      const e = err as Error & { cause?: Error };
      why =
        ac.signal.aborted && ac.signal.reason instanceof Error
          ? ac.signal.reason.message
          : (e.cause?.message ?? e.message);
    } finally {
      clearTimeout(watchdog);
      opts.signal?.removeEventListener("abort", abort);
      ac.abort();
    }
    failures++;
    const delay = backoffDelay({ baseMs: min, maxMs: max, jitter: "full" }, failures);
    opts.onRetry?.(why, Math.round(delay));
    try {
      await sleep(delay, undefined, { signal: opts.signal });
    } catch {
      return;
    }
  }
}

/** Standard input as a live input; ends when the writer closes it. */
export function stdinStream(stdin?: Readable): AsyncIterable<Buffer> {
  return (stdin ?? process.stdin) as AsyncIterable<Buffer>;
}
