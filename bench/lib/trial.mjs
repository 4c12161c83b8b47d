// One trial: a system's origin is up; N viewers start at once; the trial ends when every viewer holds the
// whole file (or one fails, or the timeout passes). Figures:
//   allDoneS, viewer times (median, p95)   from the viewers' start to each one's completion (its own report)
//   originEgressBytes                      bytes the origin's processes wrote (/proc/PID/io wchar: sockets,
//                                          and their few log lines) between the viewers' start and all done
//   wireBytes                              bytes sent on loopback in the harness's own network namespace
//                                          (every packet, headers included); null when not isolated
//   cpuSeconds                             viewers' whole lives (GNU time) + the servers' CPU from the
//                                          viewers' start to all done (/proc/PID/stat, process trees)
//   viewer peak RSS                        GNU time's maximum resident set size of each viewer
//   peak anonymous RSS                     of each viewer and server, sampled every 250 ms from the viewers'
//                                          start to all done (RssAnon: its own memory, without the pages of
//                                          its executable that every process running it shares)
//   sha256                                 every viewer's output against the origin file
// Before the viewers start, the harness writes and deletes as many bytes as they will write (prewarm):
// on a virtual machine that hands free memory back to its host (free page reporting, as on this project's
// machines), page-cache pages that were handed back cost a host fault each when written again, 2-5 CPU s
// per GiB against 0.3 for pages freed just before. Without it, a system that starts in a few milliseconds
// (nginx) wrote into the pages the previous trial had just freed, and one that starts in seconds did not.
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Proc, anonRssMB, loopbackTxBytes, sampleTree, sleep, tree } from "./procs.mjs";
import { GiB, median, percentile, round, sha256File } from "./util.mjs";

/**
 * @param sys a started system (systems.mjs)
 * @param ctx { dir, size, sha256, viewers, rates: { up, down }, timeoutMs, isolated, stdoutSink? }
 */
export async function runViewers(sys, ctx) {
  const vdir = join(ctx.dir, `viewers-${sys.name}`);
  mkdirSync(vdir, { recursive: true });
  if (!ctx.stdoutSink) await prewarm(join(vdir, "prewarm"), ctx.viewers * ctx.size);
  const serverBase = Object.fromEntries(Object.entries(sys.servers).map(([k, p]) => [k, sampleTree(p.target())]));
  const originBase = sampleTree(sys.origin.target());
  const originPayloadBase = sys.originPayloadBytes ? await sys.originPayloadBytes() : undefined;
  const lo0 = ctx.isolated ? loopbackTxBytes() : undefined;

  const specs = [];
  for (let i = 0; i < ctx.viewers; i++) specs.push(await sys.viewer(i, join(vdir, `v${i}`), ctx.rates, ctx));
  const t0 = performance.now();
  const doneAt = new Array(ctx.viewers).fill(undefined);
  const hashes = new Array(ctx.viewers).fill(undefined);
  let failure;
  let stopping = false; // the harness stops them: an exit is no failure then
  const viewers = specs.map((s, i) => {
    const p = new Proc(`${sys.name}-viewer${i}`, s.cmd, s.args, {
      cwd: vdir,
      timeFile: join(vdir, `v${i}.time`),
      stdout: ctx.stdoutSink ? "sink" : "text",
    });
    if (ctx.stdoutSink) {
      const h = createHash("sha256");
      p.onStdout((d) => h.update(d));
      void p.stdoutEnded.then(() => (hashes[i] = h.digest("hex")));
    }
    if (s.doneRe) {
      const off = p.onLine((line) => {
        if (!s.doneRe.test(line)) return;
        doneAt[i] ??= performance.now();
        off();
      });
    }
    void p.exited.then((code) => {
      if (s.doneOnExit && code === 0) doneAt[i] ??= performance.now();
      else if (doneAt[i] === undefined && !failure && !stopping)
        failure = `${p.name} exited (${code}): ${p.out.slice(-1500)}`;
    });
    return p;
  });

  // peak anonymous RSS: of each viewer's measured process, and of each server's process tree
  const viewerAnon = new Array(ctx.viewers).fill(0);
  const serverAnon = Object.fromEntries(Object.keys(sys.servers).map((k) => [k, 0]));
  const sampleAnon = () => {
    viewers.forEach((p, i) => {
      const pid = p.target();
      if (pid !== undefined) viewerAnon[i] = Math.max(viewerAnon[i], anonRssMB(pid));
    });
    for (const [k, p] of Object.entries(sys.servers)) {
      const pids = tree(p.target());
      serverAnon[k] = Math.max(
        serverAnon[k],
        pids.reduce((s, pid) => s + anonRssMB(pid), 0),
      );
    }
  };
  const end = Date.now() + ctx.timeoutMs;
  for (let n = 0; !failure && doneAt.some((d) => d === undefined) && Date.now() < end; n++) {
    if (n % 5 === 0) sampleAnon();
    await sleep(50);
  }
  sampleAnon();
  const timedOut = !failure && doneAt.some((d) => d === undefined);
  const allDone = Math.max(...doneAt.filter((d) => d !== undefined));

  const lo1 = ctx.isolated ? loopbackTxBytes() : undefined;
  const originNow = sampleTree(sys.origin.target());
  const originPayload = sys.originPayloadBytes ? await sys.originPayloadBytes() : undefined;
  const serverNow = Object.fromEntries(Object.entries(sys.servers).map(([k, p]) => [k, sampleTree(p.target())]));
  const extra = sys.trackerFigures ? await sys.trackerFigures() : undefined;

  // outputs: hashed before the viewers stop (a lingering viewer keeps its file whole)
  let shaOk = 0;
  const failed = failure;
  stopping = true;
  if (!failed && !timedOut) {
    if (ctx.stdoutSink) {
      for (const p of viewers) await p.stop();
      await Promise.all(viewers.map((p) => p.stdoutEnded));
      shaOk = hashes.filter((h) => h === ctx.sha256).length;
    } else {
      for (const s of specs) if ((await sha256File(s.outputFile).catch(() => "")) === ctx.sha256) shaOk++;
    }
  }
  for (const p of viewers) await p.stop();
  const times = viewers.map((p) => p.timeResult());

  const viewerTimes = doneAt.map((d) => (d === undefined ? null : round((d - t0) / 1000, 3)));
  const serverCpu = Object.fromEntries(
    Object.entries(serverNow).map(([k, s]) => [k, round(s.cpuS - serverBase[k].cpuS, 2)]),
  );
  const viewerCpu = times.map((t) => t?.cpuS ?? null);
  const cpuSeconds = Object.values(serverCpu).reduce((a, b) => a + b, 0) + viewerCpu.reduce((a, b) => a + (b ?? 0), 0);
  const deliveredGiB = (ctx.viewers * ctx.size) / GiB;
  const rss = times.map((t) => t?.maxRssMB ?? null);
  const ok = !failed && !timedOut && shaOk === ctx.viewers;
  return {
    ok,
    error:
      failed ??
      (timedOut
        ? `timed out after ${ctx.timeoutMs / 1000} s`
        : shaOk < ctx.viewers
          ? `${ctx.viewers - shaOk} outputs differ from the origin file`
          : undefined),
    allDoneS: ok ? round((allDone - t0) / 1000, 3) : null,
    viewerMedianS: median(viewerTimes),
    viewerP95S: percentile(viewerTimes, 95),
    viewerTimesS: viewerTimes,
    sha256Ok: `${shaOk}/${ctx.viewers}`,
    originEgressBytes: originNow.wchar - originBase.wchar,
    originEgressOverFile: round((originNow.wchar - originBase.wchar) / ctx.size, 3),
    ...(originPayload !== undefined
      ? {
          originPayloadBytes: originPayload - originPayloadBase,
          originPayloadOverFile: round((originPayload - originPayloadBase) / ctx.size, 3),
        }
      : {}),
    wireBytes: lo1 !== undefined && lo0 !== undefined ? lo1 - lo0 : null,
    wireOverDelivered: lo1 !== undefined && lo0 !== undefined ? round((lo1 - lo0) / (ctx.viewers * ctx.size), 3) : null,
    cpuSeconds: round(cpuSeconds, 2),
    cpuSecondsPerGiB: round(cpuSeconds / deliveredGiB, 2),
    serverCpuSeconds: serverCpu,
    serverPeakRssMB: Object.fromEntries(Object.entries(serverNow).map(([k, s]) => [k, round(s.peakRssMB, 1)])),
    viewerCpuSeconds: viewerCpu,
    viewerPeakRssMB: rss,
    viewerPeakRssMedianMB: median(rss),
    viewerPeakRssMaxMB: rss.some((r) => r !== null) ? Math.max(...rss.filter((r) => r !== null)) : null,
    viewerPeakAnonMB: viewerAnon.map((m) => (m > 0 ? round(m, 1) : null)),
    viewerPeakAnonMedianMB: round(median(viewerAnon.filter((m) => m > 0)), 1),
    serverPeakAnonMB: Object.fromEntries(Object.entries(serverAnon).map(([k, m]) => [k, round(m, 1)])),
    ...(extra ? { tracker: extra } : {}),
  };
}

/**
 * Writes `bytes` to `file` and deletes it, so that the pages the viewers' files take next are at hand.
 * Asynchronous: the harness goes on reading the servers' output (and its keep-alive connections to
 * their metrics stay open) while it writes gigabytes.
 */
async function prewarm(file, bytes) {
  const piece = Buffer.alloc(8 * 1024 * 1024, 1);
  const fh = await open(file, "w");
  try {
    for (let left = bytes; left > 0; left -= piece.length) await fh.write(piece, 0, Math.min(left, piece.length));
  } finally {
    await fh.close();
    await rm(file, { force: true });
  }
}
