import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import {
  PeerRole,
  Signer,
  TrackerClient,
  WantMode,
  type Directive,
  type StreamDescriptor,
  type TrackerMessage,
} from "@distribustream/pdtp";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, metric, sha256File, startNode, type Proc } from "../support/procs.js";

/**
 * The system under fuzz: a real `distribustream up` (tracker, checksum
 * service, seeder with its data plane, dashboard) in a process of its own,
 * publishing one file, with the per-address limits off so that the fuzzer's
 * inputs reach the handlers instead of the rate limiter.
 */
export interface Target {
  dir: string;
  proc: Proc;
  /** host:port of the tracker's PDTP port. */
  target: string;
  metricsUrl: string;
  name: string;
  file: Buffer;
  descriptor: StreamDescriptor;
  /** A directive of a real Join: the seeder's data-plane endpoint and a ticket for our session key. */
  directive: Directive;
  /** The session key whose tickets `directive` carries. */
  peerKey: Signer;
  /** The tracker's ticket key (read from up's data folder): the fuzzer signs valid tickets with it. */
  ticketKey: Signer;
  close(): Promise<number>;
}

export async function startTarget(fileBytes = 3 * 1024 * 1024 + 4321): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "ds-fuzz-"));
  mkdirSync(join(dir, "media"));
  const name = "fuzz.bin";
  const file = randomBytes(fileBytes);
  writeFileSync(join(dir, "media", name), file);
  const [port, data, checksum, metrics] = await freePorts(4);
  const proc = startNode(
    DISTRIBUSTREAM,
    [
      "up",
      "--media",
      "media",
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
      "--data-port",
      `${data}`,
      "--checksum-port",
      `${checksum}`,
      "--metrics-port",
      `${metrics}`,
      "--dashboard-port",
      "0",
      "--max-sessions-per-ip",
      "0",
      "--max-messages-per-ip",
      "0",
      "--log-level",
      "warn",
    ],
    { cwd: dir },
  );
  try {
    await proc.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/fuzz\.bin/, 60_000);
    const target = `127.0.0.1:${port}`;
    const descriptor = await describe(target, name);
    const peerKey = Signer.generate();
    const directive = await firstDirective(target, name, peerKey);
    const ticketKey = Signer.fromPem(readFileSync(join(dir, ".distribustream/ticket-key.pem"), "utf8"));
    return {
      dir,
      proc,
      target,
      metricsUrl: `http://127.0.0.1:${metrics}/metrics`,
      name,
      file,
      descriptor,
      directive,
      peerKey,
      ticketKey,
      async close() {
        const code = await proc.kill("SIGTERM");
        rmSync(dir, { recursive: true, force: true });
        return code;
      },
    };
  } catch (err) {
    await proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface MemorySample {
  /** Inputs run when it was taken. */
  inputs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

/** Resident set size of a process, from /proc. */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * The target's memory after `inputs`: the lowest of a few readings 250 ms
 * apart (a reading between two collections says little about what is kept).
 */
export async function sampleTarget(t: Target, inputs: number): Promise<MemorySample> {
  const { exitCode, signalCode } = t.proc.child;
  if (exitCode !== null || signalCode !== null) {
    throw new Error(
      `the system's process died during the campaign (exit ${exitCode ?? signalCode}); its last output:\n` +
        (t.proc.stdout() + t.proc.stderr()).slice(-4000),
    );
  }
  let rss = Infinity;
  let heap = Infinity;
  for (let i = 0; i < 4; i++) {
    rss = Math.min(rss, rssOf(t.proc.child.pid!));
    heap = Math.min(heap, await metric(t.metricsUrl, "nodejs_heap_size_used_bytes"));
    await new Promise((r) => setTimeout(r, 250));
  }
  return { inputs, rssBytes: rss, heapUsedBytes: heap };
}

/** What a well-behaved viewer gets after the campaign: dsclient's exit status and whether its bytes are the file's. */
export async function wellBehavedDownload(
  t: Target,
): Promise<{ exitCode: number; identical: boolean; stderr: string }> {
  const out = join(t.dir, `after-${Date.now()}.bin`);
  const c = startNode(DSCLIENT, [`pdtp://${t.target}/${t.name}`, "-o", out, "--quiet"], { cwd: t.dir });
  const exitCode = await c.exited;
  const identical = exitCode === 0 && (await sha256File(out)) === (await sha256File(join(t.dir, "media", t.name)));
  rmSync(out, { force: true });
  return { exitCode, identical, stderr: c.stderr().slice(-2000) };
}

function describe(target: string, name: string): Promise<StreamDescriptor> {
  const client = new TrackerClient(target, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.describeStream({ name, streamId: "" }, (err, d) => {
      client.close();
      if (err || !d) reject(err ?? new Error("no descriptor"));
      else resolve(d);
    }),
  );
}

/** Joins as a viewer with `peerKey` and resolves the first directive. */
export function firstDirective(target: string, name: string, peerKey: Signer): Promise<Directive> {
  const client = new TrackerClient(target, credentials.createInsecure());
  const call = client.session();
  return new Promise((resolve, reject) => {
    call.on("error", reject);
    call.on("data", (m: TrackerMessage) => {
      if (m.body?.$case === "welcome")
        call.write({
          body: { $case: "join", value: { name, mode: WantMode.WANT_MODE_IN_ORDER, have: [], position: 0 } },
        });
      if (m.body?.$case === "directives" && m.body.value.directives[0]) {
        resolve(m.body.value.directives[0]);
        call.removeAllListeners("error");
        call.on("error", () => {});
        call.cancel();
        client.close();
      }
    });
    call.write({
      body: {
        $case: "hello",
        value: {
          role: PeerRole.PEER_ROLE_VIEWER,
          dataPort: 0,
          agent: "fuzz",
          credential: "",
          advertiseHost: "",
          advertisePort: 0,
          internalHost: "",
          internalPort: 0,
          peerKey: peerKey.publicKey.ed25519,
        },
      },
    });
  });
}
