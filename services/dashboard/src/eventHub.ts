import type { Response } from "express";

/** A client whose socket holds more unsent bytes than this misses updates until it catches up. */
const SLOW_CLIENT_BYTES = 1024 * 1024;

export type AddResult = "ok" | "too-many-clients" | "too-many-streams";

/**
 * The browsers listening for updates (Server-Sent Events), by topic: the
 * overview ("stats") or one stream's page. An update is serialised once per
 * topic and the same text written to each of its clients.
 */
export class EventHub {
  private readonly overview = new Set<Response>();
  private readonly byStream = new Map<string, Set<Response>>();

  constructor(
    private readonly maxClients: number,
    private readonly maxStreams: number,
  ) {}

  get size(): number {
    let n = this.overview.size;
    for (const s of this.byStream.values()) n += s.size;
    return n;
  }

  /** Streams that some client watches now. */
  watchedStreams(): string[] {
    return [...this.byStream.keys()];
  }

  /** Adds a client (its headers already sent); it is taken out when its connection closes. */
  add(res: Response, streamId: string | undefined): AddResult {
    if (this.size >= this.maxClients) return "too-many-clients";
    let set = this.overview;
    if (streamId !== undefined) {
      const existing = this.byStream.get(streamId);
      if (!existing && this.byStream.size >= this.maxStreams) return "too-many-streams";
      if (!existing) this.byStream.set(streamId, new Set());
      set = this.byStream.get(streamId)!;
    }
    set.add(res);
    res.on("close", () => {
      set.delete(res);
      if (streamId !== undefined && set.size === 0 && this.byStream.get(streamId) === set)
        this.byStream.delete(streamId);
    });
    return "ok";
  }

  /** Writes one event to every overview client. */
  sendOverview(event: string, json: string): void {
    send(this.overview, frame(event, json));
  }

  /** Writes one event to every client of a stream. */
  sendStream(streamId: string, event: string, json: string): void {
    const set = this.byStream.get(streamId);
    if (set) send(set, frame(event, json));
  }

  /** Ends every client's stream (shutdown). */
  closeAll(): void {
    for (const res of this.overview) res.end();
    for (const set of this.byStream.values()) for (const res of set) res.end();
  }
}

/** One SSE message. JSON holds no raw newline, so one data line. */
export function frame(event: string, json: string): string {
  return `event: ${event}\ndata: ${json}\n\n`;
}

function send(clients: Iterable<Response>, text: string): void {
  for (const res of clients) {
    if (res.writableLength > SLOW_CLIENT_BYTES) continue;
    res.write(text);
  }
}
