import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";
import { ConfigError } from "./configError.js";

/** A server's certificate chain and private key, PEM, read once at start. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** The files they came from, for logs. */
  certFile: string;
}

/** How a gRPC client reaches a TLS server: the system's roots, or only the CA given. */
export interface ClientTls {
  /** PEM CA certificate(s) to trust instead of the system's roots. */
  ca?: Buffer | undefined;
}

/**
 * Reads a PEM certificate file (a CA or a chain) for the setting `setting`;
 * throws ConfigError naming it when the file is unreadable or holds no
 * certificate.
 */
export function readPemCertificates(file: string, setting: string): Buffer {
  const pem = readSetting(file, setting);
  const problem = pemProblem(pem, file, "certificate");
  if (problem) throw new ConfigError(`invalid setting ${setting}: ${problem}`);
  return pem;
}

/**
 * Why `file` is not a readable PEM file of that kind, or undefined when it
 * is one: for config schemas, which name the setting and where it came from.
 */
export function pemFileProblem(file: string, kind: "certificate" | "private key"): string | undefined {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    return `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  return pemProblem(pem, file, kind);
}

function pemProblem(pem: Buffer, file: string, kind: "certificate" | "private key"): string | undefined {
  const re = kind === "certificate" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  return re.test(pem.toString("latin1")) ? undefined : `${file} holds no PEM ${kind}`;
}

/**
 * Reads a server certificate (tls_cert) and its key (tls_key): both or
 * neither; each readable PEM; the key must match the certificate. Undefined
 * when neither is set. `names` lets a caller name other settings (e.g. the
 * checksum service's).
 */
export function readServerTls(
  certFile: string | undefined,
  keyFile: string | undefined,
  names: { cert: string; key: string } = { cert: "tls_cert", key: "tls_key" },
): ServerTls | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined)
    throw new ConfigError(`invalid setting ${names.cert}: ${names.key} is set, give the certificate too`);
  if (keyFile === undefined)
    throw new ConfigError(`invalid setting ${names.key}: ${names.cert} is set, give its private key too`);
  const cert = readPemCertificates(certFile, names.cert);
  const key = readSetting(keyFile, names.key);
  const problem = pemProblem(key, keyFile, "private key");
  if (problem) throw new ConfigError(`invalid setting ${names.key}: ${problem}`);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const why = (err as Error).message;
    throw new ConfigError(
      `invalid setting ${names.key}: ${keyFile} does not go with the certificate in ${certFile} (${why})`,
    );
  }
  return { cert, key, certFile };
}

/** TLS server credentials when `tls` is given (no client certificates asked), else plaintext. */
export function serverCredentials(tls: ServerTls | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false);
}

/** TLS channel credentials when `tls` is given (its CA, or the system's roots), else plaintext. */
export function channelCredentials(tls: ClientTls | undefined): ChannelCredentials {
  if (!tls) return ChannelCredentials.createInsecure();
  return ChannelCredentials.createSsl(tls.ca ?? null);
}

function readSetting(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(`invalid setting ${setting}: cannot read ${file}: ${code}`);
  }
}

/**
 * grpc-js names the server of a TLS channel by the target's host, an IP
 * literal too, and Node warns once (DEP0123) that an IP is no TLS server
 * name: a line that tells the user of pdtps://10.0.0.5/… nothing. Command
 * entry points call this to drop that one warning; every other one is kept.
 */
export function ignoreIpServernameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, type, code] = args;
    const c = typeof type === "object" && type !== null ? (type as { code?: string }).code : code;
    if (c === "DEP0123") return;
    emit(...args);
  }) as typeof process.emitWarning;
}
