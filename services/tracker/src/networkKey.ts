import * as grpc from "@grpc/grpc-js";
import { keyId, type ChecksumClient, type PublicKey } from "@distribustream/pdtp";
import { unavailable, type Logger } from "@distribustream/runtime";

/** How long a caller waits for the network key before giving up (a Hello then fails). */
const NETWORK_KEY_WAIT_MS = 10_000;

/**
 * The network key: the checksum service's public key, which signs every
 * manifest and hash piece. Fetched once at start (retried with backoff while
 * the checksum service is unreachable) and handed to peers in Welcome.
 */
export class NetworkKey {
  private value: PublicKey | undefined;
  private waiters: Array<(k: PublicKey) => void> = [];
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly checksum: ChecksumClient,
    /** "host:port" of the checksum service, for the log. */
    private readonly address: string,
    private readonly log: Logger,
  ) {}

  /** The key, once fetched. */
  get current(): PublicKey | undefined {
    return this.value;
  }

  /** The key; waits for it (bounded, then UNAVAILABLE) while the checksum service is unreachable. */
  get(): Promise<PublicKey> {
    if (this.value) return Promise.resolve(this.value);
    return new Promise<PublicKey>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(unavailable("checksum service unavailable: no network key yet, try again"));
      }, NETWORK_KEY_WAIT_MS);
      const waiter = (k: PublicKey) => {
        clearTimeout(timer);
        resolve(k);
      };
      this.waiters.push(waiter);
    });
  }

  /** Fetches the key, retrying until it has it or is stopped. */
  async fetch(): Promise<void> {
    let delayMs = 200;
    while (!this.stopped) {
      try {
        const key = await new Promise<PublicKey>((resolve, reject) =>
          this.checksum.getNetworkKey({}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res) =>
            err ? reject(err) : resolve(res),
          ),
        );
        if (key.ed25519.length !== 32 || keyId(key.ed25519) !== key.keyId) {
          throw new Error(`checksum service returned an invalid network key (id ${key.keyId})`);
        }
        this.value = key;
        for (const w of this.waiters) w(key);
        this.waiters = [];
        this.log.info({ keyId: key.keyId }, "network key fetched from checksum service");
        return;
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message, checksum: this.address, retryMs: delayMs },
          "cannot fetch the network key, retrying",
        );
        await new Promise<void>((resolve) => {
          this.retry = setTimeout(resolve, delayMs);
          this.retry.unref();
        });
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  /** Stops retrying. */
  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
  }
}
