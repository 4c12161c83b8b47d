import { connect, type Socket } from "node:net";

/**
 * Bytes one socket reads at a time. Every connection of the process reads
 * into the same buffer (net's `onread`) unless its user offers a buffer of
 * its own for the next read (ConnectionUser.readTarget: the rest of the
 * chunk being received, so the kernel copies body bytes straight into it).
 * A read's bytes in the shared buffer are consumed before its callback
 * returns (copied into a chunk, or into the connection's scratch while a
 * chunk is delivered), so a transfer allocates no read buffer of its own
 * (a read in place costs only a view of the chunk) and an idle connection
 * holds none. 256 KiB reads against 64 KiB: a checksum
 * service hashing 1 GiB from a seeder took 1.28 -> 1.2 CPU-s (a quarter of
 * the read syscalls).
 */
export const READ_BUFFER_BYTES = 256 * 1024;

/** A connection's scratch to begin with: a response head (16 KiB at most) fits. */
const SCRATCH_BYTES = 16 * 1024;

let sharedReadBuffer: Buffer | undefined;

/** What a connection hands its reads and events to while a request owns it. */
export interface ConnectionUser {
  /**
   * `n` bytes arrived at the start of `buf`: the shared read buffer, whose
   * bytes must be used or copied before this returns (the next read of any
   * connection overwrites them), or the buffer readTarget gave for this read.
   */
  onBytes(buf: Buffer, n: number): void;
  /**
   * Asked before each read (when the socket starts reading, then after each
   * onBytes): a buffer the next read may fill, up to
   * its length, instead of the shared one; undefined for the shared one. Only
   * bytes the user is sure to take in that place may be read into it, as the
   * read comes whatever the user does meanwhile.
   */
  readTarget?(): Buffer | undefined;
  /** The peer closed its side. */
  onEnd(): void;
  onError(err: Error): void;
  onClose(): void;
}

/**
 * One TCP connection to a peer's data plane. Its reads land in the process's
 * shared read buffer, or where its user's readTarget says; `scratch` is its own, which the request owning the
 * connection uses for the response head and then for bytes kept across a
 * pause (grown to a read's size the first time a pause keeps more than 16 KiB,
 * and back to 16 KiB in the idle pool).
 */
export class Connection {
  readonly socket: Socket;
  /** True once the connection has carried a whole response: a failure before the next answer may just be a stale keep-alive. */
  reused = false;
  private scratchBuffer = Buffer.allocUnsafe(SCRATCH_BYTES);
  private user: ConnectionUser | undefined;

  constructor(
    readonly key: string,
    host: string,
    port: number,
    private readonly gone: (conn: Connection) => void,
  ) {
    const readBuffer = (sharedReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES));
    this.socket = connect({
      host,
      port,
      onread: {
        // called again after each read (its callback), for the buffer of the next one
        buffer: () => this.user?.readTarget?.() ?? readBuffer,
        callback: (n, buf) => {
          if (this.user) this.user.onBytes(buf as Buffer, n);
          else this.socket.destroy(); // an idle connection has nothing to receive
          return true; // readers pause with socket.pause(), never through this
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.resume(); // flowing, so that "end" is emitted
    this.socket.on("error", (err) => this.user?.onError(err));
    this.socket.on("end", () => {
      if (this.user) this.user.onEnd();
      else this.socket.destroy();
    });
    this.socket.on("timeout", () => {
      if (!this.user) this.socket.destroy(); // idle in the pool for too long
    });
    this.socket.once("close", () => {
      const user = this.user;
      this.user = undefined;
      if (user) user.onClose();
      this.gone(this);
    });
  }

  /** The connection's own buffer: a response head, an error's reason, bytes kept across a pause. */
  get scratch(): Buffer {
    return this.scratchBuffer;
  }

  /** Scratch of at least `bytes` (its contents are not kept when it grows). */
  scratchFor(bytes: number): Buffer {
    // straight to a read's size: a transfer that pauses once keeps pausing, with carries up to a read
    if (this.scratchBuffer.length < bytes) this.scratchBuffer = Buffer.allocUnsafe(Math.max(bytes, READ_BUFFER_BYTES));
    return this.scratchBuffer;
  }

  /** Back in the pool: a grown scratch is let go, so that an idle connection holds 16 KiB. */
  idle(): void {
    this.detach();
    if (this.scratchBuffer.length > SCRATCH_BYTES) this.scratchBuffer = Buffer.allocUnsafe(SCRATCH_BYTES);
  }

  get alive(): boolean {
    return !this.socket.destroyed;
  }

  attach(user: ConnectionUser): void {
    this.user = user;
  }

  detach(): void {
    this.user = undefined;
  }

  destroy(): void {
    this.user = undefined;
    this.socket.destroy();
  }
}

export interface DataPlaneAgentOptions {
  /** Idle connections kept per peer (host:port); default 8. */
  maxIdlePerPeer?: number;
  /** An idle connection is closed after this long; default 25 s, under the data plane's 30 s keep-alive. */
  idleMs?: number;
}

/**
 * Keep-alive pool of data-plane connections, shared per process. Idle
 * connections never keep the process alive. A connection returns to the pool
 * only after a complete response that did not ask to close it.
 */
export class DataPlaneAgent {
  private readonly idle = new Map<string, Connection[]>();
  private readonly busy = new Set<Connection>();
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private destroyed = false;

  constructor(opts: DataPlaneAgentOptions = {}) {
    this.maxIdle = Math.max(0, opts.maxIdlePerPeer ?? 8);
    this.idleMs = Math.max(1, opts.idleMs ?? 25_000);
  }

  /** Idle connections held, over all peers. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /** @internal A connection to host:port: the most recently used idle one, or a new one when `fresh` or none is idle. */
  acquire(host: string, port: number, fresh = false): Connection {
    const key = `${host}:${port}`;
    const list = this.idle.get(key);
    while (!fresh && list && list.length > 0) {
      const conn = list.pop()!;
      if (list.length === 0) this.idle.delete(key);
      if (!conn.alive) continue;
      conn.socket.setTimeout(0);
      conn.socket.ref();
      this.busy.add(conn);
      return conn;
    }
    const conn = new Connection(key, host, port, (c) => this.forget(c));
    if (!this.destroyed) this.busy.add(conn);
    return conn;
  }

  /** @internal Takes back a connection whose response is complete; `reusable` false closes it. */
  release(conn: Connection, reusable: boolean): void {
    this.busy.delete(conn);
    const list = this.idle.get(conn.key) ?? [];
    if (!reusable || this.destroyed || !conn.alive || list.length >= this.maxIdle) {
      conn.destroy();
      return;
    }
    conn.idle();
    conn.reused = true;
    conn.socket.setTimeout(this.idleMs);
    conn.socket.unref();
    conn.socket.resume(); // notice the peer closing it while idle
    list.push(conn);
    this.idle.set(conn.key, list);
  }

  /** Closes every connection, idle or in use (transfers on them fail); later fetches still work, unpooled. */
  destroy(): void {
    this.destroyed = true;
    for (const list of this.idle.values()) for (const conn of list) conn.destroy();
    this.idle.clear();
    // Not conn.destroy(): the request on it must hear the close and fail.
    for (const conn of this.busy) conn.socket.destroy();
    this.busy.clear();
  }

  private forget(conn: Connection): void {
    this.busy.delete(conn);
    const list = this.idle.get(conn.key);
    const at = list ? list.indexOf(conn) : -1;
    if (list && at >= 0) {
      list.splice(at, 1);
      if (list.length === 0) this.idle.delete(conn.key);
    }
  }
}
