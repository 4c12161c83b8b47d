import { openSync, closeSync, fstatSync, readFileSync } from "node:fs";

/**
 * Reads a file holding a secret (a private key, a token, passwords). A file
 * every user of the machine may read, or one others than its owner may
 * change, is refused rather than trusted: whoever else can read it holds
 * the service's identity. A group may read it (mode 0640 or 0440), which is
 * how a Kubernetes Secret reaches a non-root container (defaultMode with
 * fsGroup). Throws an Error whose message names the file and the fix.
 */
export function readSecretFile(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    // the mode of the file opened, not of whatever the path names a moment later
    const mode = fstatSync(fd).mode & 0o777;
    if (mode & 0o022 || mode & 0o004) {
      const who = mode & 0o022 ? "writable by other users" : "readable by every user";
      throw new Error(
        `${file} holds a secret but is ${who} (mode 0${mode.toString(8)}): chmod 600 ${file} (640 to share it with a group)`,
      );
    }
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}
