import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Signer } from "@distribustream/pdtp";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { parseTicketKeyFile } from "@distribustream/tracker";
import { commandSettings, keysInitSchema, settingFlags } from "./config.js";
import { ensureKeyFile } from "./keys.js";
import { ensureSeederToken } from "./seederToken.js";

/**
 * `distribustream keys init --dir DIR [--dashboard-auth]`: the shared keys
 * and credentials of a deployment, made once by a one-shot init step
 * (compose's init service, a Helm hook) and mounted into every service.
 * Creates what is missing and keeps what exists, so it is safe to run on
 * every start:
 *   DIR/ticket-key.pem    every tracker replica's --ticket-key
 *   DIR/network-key.pem   the checksum service's --network-key
 *   DIR/seeder-tokens     the trackers' --seeder-tokens (hashes only)
 *   DIR/seeder-token      the matching token, for the seeder's --token-file
 *   DIR/dashboard-token   (--dashboard-auth) the dashboard's --auth-token-file
 * Files are written mode 0600, the folder 0700 when it is created. Prints
 * one line per file, created or kept (seeder-tokens: updated when a new
 * token was added to it), with its key id: never a secret.
 */

export const KEY_FILES = {
  ticketKey: "ticket-key.pem",
  networkKey: "network-key.pem",
  seederTokens: "seeder-tokens",
  seederToken: "seeder-token",
  dashboardToken: "dashboard-token",
} as const;

/** Shortest dashboard token the dashboard accepts (its auth_token rule). */
const MIN_DASHBOARD_TOKEN = 16;

type Out = { out: (s: string) => void };

export function initKeys(
  flags: { dir?: string; dashboardAuth?: boolean },
  io: Out = { out: (s) => process.stdout.write(s) },
) {
  // --dir is keys_dir (DS_KEYS_DIR); --dashboard-auth, DS_DASHBOARD_AUTH=1
  const settings = loadConfig(keysInitSchema, {
    flags: settingFlags(flags, commandSettings["keys init"].flags),
    env: process.env,
  });
  const dir = settings.keysDir;
  if (!dir) throw new ConfigError("keys init: give the folder with --dir DIR (or DS_KEYS_DIR)");
  const { dashboardAuth } = settings;
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ConfigError(`keys init: ${dir} is not a folder`);
  } else {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new ConfigError(`keys init: cannot create ${dir} (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  }
  const line = (done: boolean | "updated", file: string, what: string) =>
    io.out(`${done === true ? "created" : done || "kept"} ${join(dir, file)} (${what})\n`);

  // a ticket key file may hold several keys after a rotation: all are kept, the newest named
  const ticket = ensureKeyFile(join(dir, KEY_FILES.ticketKey), "ticket_key", (pem) => {
    const keys = parseTicketKeyFile(pem, join(dir, KEY_FILES.ticketKey));
    return keys[keys.length - 1]!;
  });
  line(ticket.created, KEY_FILES.ticketKey, `ticket key ${ticket.signer.keyId}`);
  const network = ensureKeyFile(join(dir, KEY_FILES.networkKey), "network_key", (pem) => Signer.fromPem(pem));
  line(network.created, KEY_FILES.networkKey, `network key ${network.signer.keyId}`);

  const tokensExisted = existsSync(join(dir, KEY_FILES.seederTokens));
  const seeder = ensureSeederToken(dir, "keys-init");
  // a new token is added to credentials that exist (the saved one was revoked or removed)
  line(!tokensExisted || (seeder.created && "updated"), KEY_FILES.seederTokens, "seeder credentials");
  line(seeder.created, KEY_FILES.seederToken, `seeder token ${seeder.tokenId}`);

  if (dashboardAuth) {
    const created = ensureDashboardToken(join(dir, KEY_FILES.dashboardToken));
    line(created, KEY_FILES.dashboardToken, "dashboard access token");
  }
}

/** DIR/dashboard-token: kept when it holds a usable token, else created (mode 0600); true when created. */
function ensureDashboardToken(path: string): boolean {
  if (existsSync(path)) {
    let text: string;
    try {
      text = readFileSync(path, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`keys init: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
    if (text.length < MIN_DASHBOARD_TOKEN || /\s/.test(text)) {
      throw new ConfigError(
        `keys init: ${path} holds no dashboard token (one line of ${MIN_DASHBOARD_TOKEN}+ characters); remove it to create one`,
      );
    }
    return false;
  }
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    linkSync(tmp, path); // a concurrent init that got there first wins
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new ConfigError(`keys init: cannot write ${path} (${(err as Error).message})`);
  } finally {
    rmSync(tmp, { force: true });
  }
  return true;
}
