import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Signer } from "@distribustream/pdtp";
import { ConfigError, type Logger } from "@distribustream/runtime";

/**
 * Loads an Ed25519 key from a PKCS#8 PEM file, or creates the file (mode 0600)
 * with a new key when it does not exist, so that a restarted service keeps
 * its key. Replicas that must share a key are given the same file (a
 * Kubernetes Secret).
 */
export function loadOrCreateKey(path: string, setting: string, log: Logger): Signer {
  const { signer, created } = ensureKeyFile(path, setting, (pem) => Signer.fromPem(pem));
  log.info({ path, keyId: signer.keyId }, `${created ? "created" : "loaded"} ${setting}`);
  return signer;
}

/**
 * The key of `path`, read with `parse` (which throws for a file that is not
 * a key), or a new key written there (mode 0600, its folder created 0700)
 * when the file does not exist. `created` says which. The one writer of key
 * files: services without --require-keys and `keys init` both use it.
 */
export function ensureKeyFile(
  path: string,
  setting: string,
  parse: (pem: string) => Signer,
): { signer: Signer; created: boolean } {
  if (existsSync(path)) {
    let pem: string;
    try {
      pem = readFileSync(path, "utf8");
    } catch (err) {
      throw new ConfigError(
        `invalid setting ${setting}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? err})`,
      );
    }
    try {
      return { signer: parse(pem), created: false };
    } catch (err) {
      throw new ConfigError(
        `invalid setting ${setting}: ${path} is not an Ed25519 PEM key (${(err as Error).message})`,
      );
    }
  }
  const signer = Signer.generate();
  // Written aside, then linked into place: a process starting at the same time
  // (another replica) never reads a half-written key, and the first one wins.
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, signer.toPem(), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return ensureKeyFile(path, setting, parse);
    throw new ConfigError(`invalid setting ${setting}: cannot create key file ${path} (${(err as Error).message})`);
  } finally {
    rmSync(tmp, { force: true });
  }
  return { signer, created: true };
}
