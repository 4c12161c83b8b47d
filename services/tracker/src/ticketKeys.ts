import { statSync } from "node:fs";
import { Signer, type PublicKey } from "@distribustream/pdtp";
import { readSecretFile, type Logger } from "@distribustream/runtime";

export class TicketKeyFileError extends Error {
  override name = "TicketKeyFileError";
}

const PEM_BLOCK = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/g;

/** The Ed25519 keys of a ticket key file, oldest first: one or more PKCS#8 PEM blocks. */
export function parseTicketKeyFile(text: string, file: string): Signer[] {
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new TicketKeyFileError(`${file} holds no PEM private key`);
  return blocks.map((pem, i) => {
    try {
      return Signer.fromPem(pem);
    } catch (err) {
      throw new TicketKeyFileError(`key ${i + 1} of ${file} is not an Ed25519 key (${(err as Error).message})`);
    }
  });
}

/** The keys of a ticket key file, read once (what TicketKeys.watch reads first): throws TicketKeyFileError. */
export function readTicketKeyFile(file: string): Signer[] {
  return parseTicketKeyFile(readText(file), file);
}

export interface TicketKeysOptions {
  /**
   * A key added to the file signs only once this replica has published it
   * for this long, so that every replica (each re-reads the file) has sent
   * it to its peers before any ticket needs it. Default 10 s.
   */
  overlapMs?: number;
  /** How often the file is re-read. Default 2 s. */
  reloadMs?: number;
}

/**
 * The tracker's ticket keys, for rotation without dropping a session. Every
 * key of the file is published to peers (Welcome, then a Keys message on
 * every change); tickets are signed with the newest key that has been
 * published for the overlap. Rotating is appending a key (`distribustream
 * ticket-key rotate` does it and drops all but the newest two): peers learn
 * the new key, then tickets move to it, and tickets of the old key stay
 * valid until it leaves the file at the next rotation.
 */
export class TicketKeys {
  private keys: { signer: Signer; since: number }[];
  private signing: Signer;
  private readonly listeners: Array<(keys: PublicKey[]) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private lastText = "";

  private constructor(
    keys: { signer: Signer; since: number }[],
    private readonly overlapMs: number,
    private readonly file?: string,
    private readonly log?: Logger,
  ) {
    this.keys = keys;
    this.signing = this.pick(Date.now());
  }

  /** One key that never changes (the single-process default and tests). */
  static fixed(signer: Signer): TicketKeys {
    return new TicketKeys([{ signer, since: 0 }], 0);
  }

  /**
   * Reads `file` and re-reads it every `reloadMs`. At start a key counts as
   * published since the file's modification time, so a replica started in
   * the middle of a rotation waits out the rest of the overlap too. A file
   * that turns unreadable or invalid later keeps the keys in use (logged).
   */
  static watch(file: string, log: Logger, opts: TicketKeysOptions = {}): TicketKeys {
    const text = readText(file);
    const mtime = statSync(file).mtimeMs;
    const keys = new TicketKeys(
      parseTicketKeyFile(text, file).map((signer) => ({ signer, since: mtime })),
      opts.overlapMs ?? 10_000,
      file,
      log,
    );
    keys.lastText = text;
    keys.timer = setInterval(() => keys.reload(), opts.reloadMs ?? 2_000);
    keys.timer.unref();
    log.info({ file, keys: keys.keys.map((k) => k.signer.keyId), signing: keys.signing.keyId }, "ticket keys loaded");
    return keys;
  }

  /** The key that signs tickets now. */
  get signer(): Signer {
    return this.signing;
  }

  /** Every key a peer must accept tickets of. */
  get publicKeys(): PublicKey[] {
    return this.keys.map((k) => k.signer.publicKey);
  }

  /** Called with the new public keys whenever they change. */
  onChange(listener: (keys: PublicKey[]) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** The newest key published for the overlap; the oldest when none has been. */
  private pick(now: number): Signer {
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (now - this.keys[i]!.since >= this.overlapMs) return this.keys[i]!.signer;
    }
    return this.keys[0]!.signer;
  }

  private reload(): void {
    const now = Date.now();
    let text: string | undefined;
    try {
      text = readText(this.file!);
    } catch (err) {
      this.log?.warn(
        { file: this.file, err: (err as Error).message },
        "ticket key file unreadable; keeping the keys in use",
      );
    }
    if (text !== undefined && text !== this.lastText) {
      this.lastText = text;
      try {
        const known = new Map(this.keys.map((k) => [k.signer.keyId, k.since]));
        const next = parseTicketKeyFile(text, this.file!).map((signer) => ({
          signer,
          since: known.get(signer.keyId) ?? now,
        }));
        const before = this.keys.map((k) => k.signer.keyId).join();
        this.keys = next;
        if (next.map((k) => k.signer.keyId).join() !== before) {
          this.log?.info({ file: this.file, keys: next.map((k) => k.signer.keyId) }, "ticket keys changed");
          for (const l of this.listeners) l(this.publicKeys);
        }
      } catch (err) {
        this.log?.warn(
          { file: this.file, err: (err as Error).message },
          "ticket key file invalid; keeping the keys in use",
        );
      }
    }
    const signing = this.pick(now);
    if (signing !== this.signing) {
      this.signing = signing;
      this.log?.info({ keyId: signing.keyId }, "signing tickets with a new key");
    }
  }
}

function readText(file: string): string {
  try {
    return readSecretFile(file);
  } catch (err) {
    throw new TicketKeyFileError(`ticket key file: ${(err as Error).message}`);
  }
}
