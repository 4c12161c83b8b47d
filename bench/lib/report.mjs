// A scenario's record: JSON (everything) and a Markdown table (medians, ratios, goals) in bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { median, round } from "./util.mjs";

export const SCHEMA = "distribustream-bench/1";

const fmt = (v) => (v === null || v === undefined ? "—" : typeof v === "number" ? `${v}` : String(v));

export function markdown(rec) {
  const lines = [];
  lines.push(`# ${rec.scenario}${rec.smoke ? " (SMOKE: tiny sizes, not a measurement)" : ""}`);
  lines.push("");
  lines.push(
    `${rec.startedAt} → ${rec.finishedAt}, ${rec.machine.cpus} × ${rec.machine.cpuModel}, ${rec.machine.memoryGiB} GiB, ${rec.machine.os ?? ""} ${rec.machine.kernel}`,
  );
  lines.push(
    `load average at start ${rec.machine.loadAverageAtStart.join(" ")}; own network namespace: ${rec.isolation.netns ? "yes" : `no (${rec.isolation.reason})`}`,
  );
  lines.push("");
  lines.push(
    `Versions: ${Object.entries(rec.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join("; ")}`,
  );
  lines.push("");
  lines.push(`Settings: \`${JSON.stringify(rec.settings)}\``);
  lines.push("");
  if (rec.skipped) {
    lines.push(`**Skipped**: ${rec.skipped}`);
    return lines.join("\n") + "\n";
  }
  const skipped = Object.entries(rec.anchors ?? {}).filter(([, v]) => v.status === "skipped");
  for (const [k, v] of skipped) lines.push(`- ${k}: **skipped** — ${v.reason}`);
  if (skipped.length) lines.push("");
  const cols = rec.columns ?? [];
  lines.push(`Medians of ${rec.settings.runs} run(s):`);
  lines.push("");
  lines.push(`| | ${cols.join(" | ")} |`);
  lines.push(`|---|${cols.map(() => "---:").join("|")}|`);
  for (const [sys, m] of Object.entries(rec.medians ?? {})) {
    if (cols.every((c) => m[c] === undefined || m[c] === null)) continue; // skipped, or failed every run
    lines.push(`| ${sys} | ${cols.map((c) => fmt(m[c])).join(" | ")} |`);
  }
  lines.push("");
  if (Object.keys(rec.ratios ?? {}).length) {
    lines.push("Ratios (pair by pair within each run, median over runs):");
    lines.push("");
    lines.push("| ratio | median |");
    lines.push("|---|---:|");
    for (const [k, v] of Object.entries(rec.ratios)) lines.push(`| ${k} | ${fmt(v)} |`);
    lines.push("");
  }
  if (rec.goals?.length) {
    lines.push("| goal | figure | met |");
    lines.push("|---|---:|---|");
    for (const g of rec.goals)
      lines.push(
        `| ${g.goal} | ${fmt(g.value)} | ${g.met === null ? `not measured${g.note ? ` (${g.note})` : ""}` : g.met ? "met" : "NOT met"} |`,
      );
    lines.push("");
  }
  const procs = processRows(rec.runs ?? []);
  if (procs.length) {
    lines.push("Each process, medians over runs (viewers: the median viewer and the highest):");
    lines.push("");
    lines.push("| system | process | CPU s | peak RSS MB | peak anonymous RSS MB |");
    lines.push("|---|---|---:|---:|---:|");
    for (const r of procs)
      lines.push(
        `| ${r.system} | ${r.process} | ${fmt(r.cpuS)} | ${fmt(r.rssMB)} | ${r.anonMB === null ? "—" : fmt(r.anonMB)} |`,
      );
    lines.push("");
  }
  const failures = [];
  for (const run of rec.runs ?? []) {
    for (const [sys, r] of Object.entries(run.systems ?? {})) {
      if (r && r.ok === false)
        failures.push(
          `- run ${run.run}, ${sys}: ${String(r.error ?? "failed")
            .split("\n")[0]
            .slice(0, 300)}`,
        );
    }
  }
  if (failures.length) lines.push("Failures:", "", ...failures, "");
  return lines.join("\n") + "\n";
}

/**
 * Per-process CPU seconds, peak RSS and peak anonymous RSS of every system's trials
 * (runViewers' serverCpuSeconds, serverPeakRssMB, serverPeakAnonMB, viewerCpuSeconds,
 * viewerPeakRssMB, viewerPeakAnonMB), medians over the runs, so that a regression shows
 * in the table and not only in the JSON. Anonymous RSS is what a process holds of its own:
 * RSS also counts the pages of its executable, which every process running it shares.
 */
function processRows(runs) {
  const acc = new Map(); // `${system}\t${process}` -> { cpu: [], rss: [], anon: [] }
  const add = (system, process, cpu, rss, anon) => {
    const k = `${system}\t${process}`;
    if (!acc.has(k)) acc.set(k, { cpu: [], rss: [], anon: [] });
    const a = acc.get(k);
    if (typeof cpu === "number") a.cpu.push(cpu);
    if (typeof rss === "number") a.rss.push(rss);
    if (typeof anon === "number") a.anon.push(anon);
  };
  for (const run of runs) {
    for (const [sys, r] of Object.entries(run.systems ?? {})) {
      if (!r?.ok) continue;
      for (const [p, cpu] of Object.entries(r.serverCpuSeconds ?? {}))
        add(sys, p, cpu, r.serverPeakRssMB?.[p], r.serverPeakAnonMB?.[p]);
      const cpus = (r.viewerCpuSeconds ?? []).filter((v) => typeof v === "number");
      const rss = (r.viewerPeakRssMB ?? []).filter((v) => typeof v === "number");
      const anon = (r.viewerPeakAnonMB ?? []).filter((v) => typeof v === "number");
      if (cpus.length || rss.length) {
        add(sys, "viewer (median)", median(cpus), median(rss), anon.length ? median(anon) : null);
        if (cpus.length > 1)
          add(
            sys,
            "viewer (highest)",
            Math.max(...cpus),
            rss.length ? Math.max(...rss) : null,
            anon.length ? Math.max(...anon) : null,
          );
      }
    }
  }
  return [...acc].map(([k, a]) => {
    const [system, process] = k.split("\t");
    return {
      system,
      process,
      cpuS: round(median(a.cpu), 2),
      rssMB: round(median(a.rss), 1),
      anonMB: a.anon.length ? round(median(a.anon), 1) : null,
    };
  });
}

export function writeRecord(rec, outDir) {
  mkdirSync(outDir, { recursive: true });
  const stamp = rec.startedAt.replace(/[:.]/g, "-");
  const base = join(outDir, `${rec.scenario}-${stamp}${rec.smoke ? "-smoke" : ""}`);
  writeFileSync(`${base}.json`, JSON.stringify(rec, null, 2) + "\n");
  writeFileSync(`${base}.md`, markdown(rec));
  return { json: `${base}.json`, md: `${base}.md` };
}

/** What a record must hold to be well formed (the smoke test's check); returns the problems found. */
export function recordProblems(rec) {
  const p = [];
  if (rec?.schema !== SCHEMA) p.push(`schema is ${rec?.schema}`);
  for (const k of ["scenario", "startedAt", "finishedAt"]) if (typeof rec?.[k] !== "string") p.push(`no ${k}`);
  for (const k of ["machine", "versions", "settings", "isolation", "anchors"])
    if (typeof rec?.[k] !== "object") p.push(`no ${k}`);
  if (rec?.skipped) return p;
  if (!Array.isArray(rec?.runs) || rec.runs.length < 1) p.push("no runs");
  if (typeof rec?.medians !== "object") p.push("no medians");
  if (!Array.isArray(rec?.goals)) p.push("no goals");
  return p;
}
