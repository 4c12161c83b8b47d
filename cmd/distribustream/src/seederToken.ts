import { chmodSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig } from "@distribustream/runtime";
import { issueToken, readTokenFile, verifyToken, writeTokenFile, type TokenEntry } from "@distribustream/tracker";
import { commandSettings, seederTokenFileSchema, seederTokenSchema, settingFlags } from "./config.js";

/**
 * `distribustream seeder-token create|revoke|list`: the operator's side of
 * seeder authentication. The credentials file (--file, DS_SEEDER_TOKENS,
 * default .distribustream/seeder-tokens) holds only hashes; a new token is
 * printed once on stdout and never stored.
 */

type Out = { out: (s: string) => void; err: (s: string) => void };
const std: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** The credentials file (--file, DS_SEEDER_TOKENS) and, for create, the label (--name, DS_NAME). */
function settings(flags: { file?: string; name?: string }) {
  const renames = commandSettings["seeder-token create"].flags;
  return loadConfig(seederTokenSchema, { flags: settingFlags(flags, renames), env: process.env });
}
function fileSettings(flags: { file?: string }) {
  const renames = commandSettings["seeder-token list"].flags;
  return loadConfig(seederTokenFileSchema, { flags: settingFlags(flags, renames), env: process.env });
}

function read(path: string, missingOk: boolean): TokenEntry[] {
  try {
    return readTokenFile(path, missingOk);
  } catch (err) {
    throw new ConfigError(`invalid setting seeder_tokens: ${(err as Error).message}`);
  }
}

export function createSeederToken(flags: { file?: string; name?: string }, io: Out = std): void {
  const cfg = settings(flags);
  const entries = read(cfg.seederTokens, true);
  const { token, entry } = issueToken(cfg.name);
  writeTokenFile(cfg.seederTokens, [...entries, entry]);
  io.out(`${token}\n`);
  io.err(
    `seeder token ${entry.id} added to ${cfg.seederTokens}; the token above is shown only once: ` +
      `give it to the seeder (--token-file or DS_SEEDER_TOKEN)\n`,
  );
}

export function revokeSeederToken(id: string, flags: { file?: string }, io: Out = std): void {
  const cfg = fileSettings(flags);
  const entries = read(cfg.seederTokens, false);
  const entry = entries.find((e) => e.id === id);
  if (!entry) throw new ConfigError(`no seeder token with id "${id.slice(0, 40)}" in ${cfg.seederTokens}`);
  if (entry.revokedMs !== undefined) {
    io.err(`seeder token ${id} was already revoked at ${new Date(entry.revokedMs).toISOString()}\n`);
    return;
  }
  entry.revokedMs = Date.now();
  writeTokenFile(cfg.seederTokens, entries);
  io.err(`seeder token ${id} revoked; trackers reading ${cfg.seederTokens} end its sessions within seconds\n`);
}

export function listSeederTokens(flags: { file?: string }, io: Out = std): void {
  const cfg = fileSettings(flags);
  const rows = read(cfg.seederTokens, false).map((e) => [
    e.id,
    e.label ?? "-",
    new Date(e.createdMs).toISOString(),
    e.revokedMs === undefined ? "-" : new Date(e.revokedMs).toISOString(),
  ]);
  const all = [["ID", "LABEL", "CREATED", "REVOKED"], ...rows];
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  for (const r of all)
    io.out(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd() + "\n",
    );
}

/**
 * A seeder token kept in DIR/seeder-token (mode 0600, the plain token, for a
 * seeder's --token-file) and registered in DIR/seeder-tokens (the tracker's
 * --seeder-tokens): the saved one when it still verifies against the file,
 * else a new one (labelled `label`) added to the file. `up` uses it for its
 * embedded seeder, `keys init` for a deployment's seeder.
 */
export function ensureSeederToken(
  dir: string,
  label: string,
): { tokensFile: string; tokenFile: string; token: string; tokenId: string; created: boolean } {
  const tokensFile = join(dir, "seeder-tokens");
  const tokenFile = join(dir, "seeder-token");
  const entries = read(tokensFile, true);
  let saved = "";
  try {
    saved = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";
  } catch (err) {
    throw new ConfigError(
      `invalid setting seeder_token_file: cannot read ${tokenFile} (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  const known = new Map(entries.map((e) => [e.id, e]));
  const verdict = saved ? verifyToken(saved, known) : undefined;
  if (verdict?.ok) return { tokensFile, tokenFile, token: saved, tokenId: verdict.id, created: false };
  const { token, entry } = issueToken(label);
  writeTokenFile(tokensFile, [...entries, entry]);
  const tmp = `${tokenFile}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, tokenFile);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new ConfigError(`invalid setting seeder_token_file: cannot write ${tokenFile} (${(err as Error).message})`);
  }
  return { tokensFile, tokenFile, token, tokenId: entry.id, created: true };
}
