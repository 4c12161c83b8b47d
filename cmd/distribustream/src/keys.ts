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
  if (existsSync(path)) {
    try {
      const signer = Signer.fromPem(readFileSync(path, "utf8"));
      log.info({ path, keyId: signer.keyId }, `loaded ${setting}`);
      return signer;
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
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, signer.toPem(), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return loadOrCreateKey(path, setting, log);
    throw new ConfigError(`invalid setting ${setting}: cannot create key file ${path} (${(err as Error).message})`);
  } finally {
    rmSync(tmp, { force: true });
  }
  log.info({ path, keyId: signer.keyId }, `created ${setting}`);
  return signer;
}
