import { chmodSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { Signer } from "@distribustream/pdtp";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { parseTicketKeyFile } from "@distribustream/tracker";
import { networkKeyFileSchema, ticketKeyFileSchema } from "./config.js";

/**
 * `distribustream ticket-key rotate|list` and `network-key`: the operator's
 * side of the keys. The ticket key file holds one or more PEM keys, oldest
 * first; trackers publish them all and sign with the newest once every
 * replica has published it (see TicketKeys in the tracker).
 */

type Out = { out: (s: string) => void; err: (s: string) => void };
const std: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** The ticket key file: --ticket-key, DS_TICKET_KEY, or the default. */
const ticketKeyFile = (flags: { ticketKey?: string }) =>
  loadConfig(ticketKeyFileSchema, { flags, env: process.env }).ticketKey;
/** A rotation keeps the new key and the one before it; tickets of older keys have long expired. */
const KEEP_KEYS = 2;

function readKeys(file: string, setting: string): Signer[] {
  if (!existsSync(file)) throw new ConfigError(`invalid setting ${setting}: ${file} does not exist`);
  try {
    return parseTicketKeyFile(readFileSync(file, "utf8"), file);
  } catch (err) {
    throw new ConfigError(`invalid setting ${setting}: ${(err as Error).message}`);
  }
}

/** Adds a new ticket key; keeps the previous one, drops older ones; writes the file whole (mode 0600). */
export function rotateTicketKey(flags: { ticketKey?: string }, io: Out = std): void {
  const file = ticketKeyFile(flags);
  const keys = readKeys(file, "ticket_key");
  const fresh = Signer.generate();
  const kept = [...keys, fresh].slice(-KEEP_KEYS);
  const dropped = keys.filter((k) => !kept.includes(k));
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, kept.map((k) => k.toPem()).join(""), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file); // readers see the old file or the new one, never half of it
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new ConfigError(`invalid setting ticket_key: cannot write ${file} (${(err as Error).message})`);
  }
  io.out(`${fresh.keyId}\n`);
  io.err(
    `ticket key ${fresh.keyId} added to ${file}: trackers reading it send it to their peers within seconds and ` +
      `sign with it after ticket_key_overlap (default 10 s); ${kept[0]!.keyId} stays valid until the next rotation` +
      (dropped.length > 0 ? `; dropped ${dropped.map((k) => k.keyId).join(", ")}` : "") +
      "\n",
  );
}

export function listTicketKeys(flags: { ticketKey?: string }, io: Out = std): void {
  const file = ticketKeyFile(flags);
  const keys = readKeys(file, "ticket_key");
  keys.forEach((k, i) => io.out(`${k.keyId}${i === keys.length - 1 ? "  newest: signs once published" : ""}\n`));
}

/** Prints the network key's fingerprint: what viewers pin with --network-key or ?key= in a pdtp:// URL. */
export function showNetworkKey(flags: { networkKey?: string }, io: Out = std): void {
  const file = loadConfig(networkKeyFileSchema, { flags, env: process.env }).networkKey;
  const [key] = readKeys(file, "network_key");
  io.out(`${key!.keyId}\n`);
  io.err(`viewers pin it with dsclient --network-key ${key!.keyId}, or pdtp://HOST/NAME?key=${key!.keyId}\n`);
}
