import { campaign, problems, type EntryReport } from "./campaign.js";
import { configEntry } from "./config.js";
import { dataPlaneEntry } from "./dataPlane.js";
import { pdtpEntry } from "./pdtp.js";
import { startTarget, wellBehavedDownload, type Target } from "./target.js";
import { urlEntry } from "./url.js";

export const ENTRIES = ["pdtp", "data-plane", "config", "url"] as const;
export type EntryName = (typeof ENTRIES)[number];

export interface FuzzReport {
  entries: EntryReport[];
  /** After the campaign on the running system: a real dsclient download, and what the process logged. */
  after?: {
    downloadExitCode: number;
    downloadIdentical: boolean;
    /** The system's process was still running, and its exit status at SIGTERM. */
    stillRunning: boolean;
    exitCodeAtSigterm: number;
    /** Lines the system logged at error level ("internal error" and the like). */
    errorLines: string[];
  };
  problems: string[];
  summary: Record<string, unknown>;
}

/**
 * Runs the campaigns of `entries`, `runs` inputs each; the network entry
 * points (pdtp, data-plane) against one real system, which must still
 * serve a well-behaved viewer afterwards and log no error.
 */
export async function fuzz(o: {
  entries: readonly EntryName[];
  runs: number;
  seed: number;
  log?: (m: string) => void;
}): Promise<FuzzReport> {
  const log = o.log ?? (() => {});
  const reports: EntryReport[] = [];
  const out: string[] = [];
  let after: FuzzReport["after"];
  const network = o.entries.filter((e) => e === "pdtp" || e === "data-plane");
  if (network.length) {
    const t: Target = await startTarget();
    try {
      for (const e of network) {
        try {
          reports.push(
            e === "pdtp"
              ? await campaign(pdtpEntry(t), o.runs, o.seed, log)
              : await campaign(dataPlaneEntry(t), o.runs, o.seed, log),
          );
        } catch (err) {
          out.push(`${e}: the campaign stopped: ${(err as Error).message}`);
          break;
        }
      }
      const stillRunning = t.proc.child.exitCode === null && t.proc.child.signalCode === null;
      const dl = stillRunning ? await wellBehavedDownload(t) : { exitCode: -1, identical: false, stderr: "" };
      if (!dl.identical) out.push(`after the campaign a real download failed (exit ${dl.exitCode}): ${dl.stderr}`);
      const errorLines = (t.proc.stdout() + t.proc.stderr())
        .split("\n")
        .filter((l) => /"level":(50|60)|internal error|uncaught|unhandled/i.test(l))
        .slice(0, 20);
      for (const l of errorLines) out.push(`the system logged: ${l.slice(0, 1000)}`);
      const exitCodeAtSigterm = await t.close();
      if (!stillRunning) out.push(`the system's process died during the campaign (exit ${exitCodeAtSigterm})`);
      else if (exitCodeAtSigterm !== 0)
        out.push(`the system exited ${exitCodeAtSigterm} at SIGTERM after the campaign`);
      after = {
        downloadExitCode: dl.exitCode,
        downloadIdentical: dl.identical,
        stillRunning,
        exitCodeAtSigterm,
        errorLines,
      };
    } finally {
      await t.close();
    }
  }
  for (const e of o.entries.filter((x) => x === "config" || x === "url")) {
    if (e === "url") reports.push(await campaign(urlEntry(), o.runs, o.seed, log));
    else {
      const entry = await configEntry();
      try {
        reports.push(await campaign(entry, o.runs, o.seed, log));
      } finally {
        entry.close();
      }
    }
  }
  const all = [...reports.flatMap(problems), ...out];
  const summary: Record<string, unknown> = Object.fromEntries(
    reports.map((r) => [
      r.entry,
      {
        inputs: r.inputs,
        defects: r.defects.length,
        seconds: r.seconds,
        inputsPerSecond: r.inputsPerSecond,
        rssGrowthMiB: +(r.memory.rssGrowthBytes / 1048576).toFixed(1),
        heapGrowthMiB: +(r.memory.heapGrowthBytes / 1048576).toFixed(1),
        heapSlopeBytesPer1000: r.memory.heapSlopeBytesPer1000,
        slowestInputMs: r.slowestInputMs,
        outcomes: r.outcomes,
      },
    ]),
  );
  if (after) summary.after = { ...after, errorLines: after.errorLines.length };
  return { entries: reports, ...(after ? { after } : {}), problems: all, summary };
}
