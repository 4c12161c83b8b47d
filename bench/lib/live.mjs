// The live scenario: one ffmpeg source (test pattern and tone, H.264 and AAC in MPEG-TS at ~2 Mbit/s, -re)
// read by the harness, which timestamps every byte and passes the same bytes on, at once, to
//   ds   `distribustream seeder --live NAME=-` (separate tracker and checksum processes), watched by N
//        `dsclient pdtp://.../NAME -o -`
//   hls  ffmpeg segmenting into HLS (1 s segments, the source's timestamps kept), served by nginx, watched by N
//        bench/hls-viewer.mjs (a player's fetching: three segments behind the end, playlist reloads per RFC 8216)
// Both audiences watch the same broadcast at the same time; viewer i of each system joins at the same moment,
// one every --join-interval ms. Every viewer writes to standard output, a pipe the harness reads: a frame's
// delay is the time from the source's write of its first byte to the viewer's write of it (see README
// "Benchmarks" for every figure).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { SourceMatcher, SourceTap, TsOutput, viewerFigures } from "./liveTiming.mjs";
import { Proc, sampleTree, stopAll } from "./procs.mjs";
import { metricSum, metricsText, startDistribuStream, startNginx } from "./systems.mjs";
import { DSCLIENT, median, percentile, ratio, root, round } from "./util.mjs";

const NAME = "cam";
const HLS_VIEWER = join(root, "bench/hls-viewer.mjs");
const AUDIO_BITS = 96_000;
const now = () => performance.now();
/** Milliseconds as seconds (3 decimals); null stays null. */
const sec = (ms) => (typeof ms === "number" && Number.isFinite(ms) ? round(ms / 1000, 3) : null);

// ---- the source ----------------------------------------------------------------------------

/** ffmpeg arguments: a 640x360 25 fps test pattern with noise (so that the encoder needs its bitrate) and a tone. */
function sourceArgs(bitrate) {
  // MPEG-TS and PES headers take ~4% of the stream; AAC takes 96 kbit/s
  const video = Math.max(200_000, Math.round(bitrate * 0.96 - AUDIO_BITS));
  return [
    ...["-v", "error", "-nostdin", "-re"],
    ...["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"],
    ...["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"],
    ...["-map", "0:v", "-map", "1:a", "-vf", "noise=alls=12:allf=t"],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"],
    ...["-b:v", `${video}`, "-maxrate", `${video}`, "-bufsize", `${Math.round(video / 2)}`],
    ...["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"],
    ...["-c:a", "aac", "-b:a", `${AUDIO_BITS}`],
    ...["-flush_packets", "1", "-f", "mpegts", "-"],
  ];
}

/** The last JSON log line of `p` whose msg is `msg`. */
function logLine(p, msg) {
  const lines = p.out.split("\n").filter((l) => l.includes(`"msg":"${msg}"`));
  try {
    return lines.length ? JSON.parse(lines.at(-1)) : undefined;
  } catch {
    return undefined;
  }
}

// ---- one run ---------------------------------------------------------------------------------

/** Keeps the newest CPU sample of each server while it runs (some exit before the run ends: the segmenter). */
class ServerSampler {
  constructor(servers) {
    this.servers = servers;
    this.latest = {};
    this.base = {};
    this.maxLoad = 0; // the 1-minute load average, at its highest
    this.timer = setInterval(() => this.sample(), 500);
  }
  sample() {
    this.maxLoad = Math.max(this.maxLoad, os.loadavg()[0]);
    for (const [k, p] of Object.entries(this.servers)) if (p.running) this.latest[k] = sampleTree(p.target());
  }
  mark() {
    this.sample();
    this.base = Object.fromEntries(Object.entries(this.latest).map(([k, s]) => [k, s.cpuS]));
  }
  stop() {
    this.sample();
    clearInterval(this.timer);
    return Object.fromEntries(Object.entries(this.latest).map(([k, s]) => [k, round(s.cpuS - (this.base[k] ?? 0), 2)]));
  }
}

async function waitForSegments(playlist, n, source, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const text = existsSync(playlist) ? readFileSync(playlist, "utf8") : "";
    if ((text.match(/^#EXTINF/gm) ?? []).length >= n) return;
    if (!source.running) throw new Error(`the source ended before the playlist held ${n} segments`);
    if (Date.now() > end) throw new Error(`the playlist held fewer than ${n} segments after ${ms} ms`);
    await sleep(100);
  }
}

async function liveRun(o, env, run) {
  const dir = mkdtempSync(join(env.dir, "live-"));
  const systems = o.systems.filter((s) => !env.available[s]);
  const lag = monitorEventLoopDelay({ resolution: 10 });
  const cpuAtStart = (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  lag.enable();
  const servers = {};
  const viewers = [];
  let ds;
  let segmenter;
  let accessLog;
  let hlsPort;
  let sampler;
  try {
    if (systems.includes("ds")) {
      env.log("bench: live: starting tracker, checksum and seeder");
      const d = join(dir, "ds");
      mkdirSync(d);
      ds = await startDistribuStream(
        {
          dir: d,
          name: NAME,
          chunkSize: 256 * 1024,
          originRate: o.originRate,
          live: { name: NAME, bitrate: o.bitrate },
        },
        { seederLogLevel: "info", logLevel: o.logLevel, waitReady: false },
      );
      await ds.origin.waitFor(/live broadcast started/, 60_000);
      Object.assign(servers, { tracker: ds.servers.tracker, checksum: ds.servers.checksum, seeder: ds.origin });
    }
    if (systems.includes("hls")) {
      env.log("bench: live: starting nginx and the HLS segmenter");
      const d = join(dir, "hls");
      const www = join(d, "www");
      mkdirSync(www, { recursive: true });
      accessLog = join(d, "access.log");
      // the per-viewer cap per connection; the origin cap has no equivalent in nginx (see README)
      const nginx = await startNginx(
        { dir: d, mediaDir: www, viewerRate: o.rate, originRate: 0, accessLog },
        o.viewers,
      );
      hlsPort = nginx.port;
      segmenter = new Proc(
        "hls-segmenter",
        "ffmpeg",
        [
          // the source's timestamps, unshifted (-muxdelay 0): a segment's frames are found in the source by PTS
          ...["-v", "error", "-nostdin", "-copyts", "-f", "mpegts", "-i", "-", "-c", "copy"],
          ...["-muxdelay", "0", "-muxpreload", "0"],
          ...["-f", "hls", "-hls_time", "1", "-hls_list_size", "6"],
          ...["-hls_flags", "delete_segments+program_date_time+temp_file"],
          ...["-hls_segment_filename", join(www, "seg%05d.ts"), join(www, "live.m3u8")],
        ],
        { cwd: d, stdin: "pipe" },
      );
      Object.assign(servers, { nginx: nginx.origin, segmenter });
    }

    // the source: every write timestamped, then passed on to the seeder and the segmenter
    const tap = new SourceTap();
    const source = new Proc("source", "ffmpeg", sourceArgs(o.bitrate), {
      cwd: dir,
      stdout: "sink",
      timeFile: join(dir, "source.time"),
    });
    const sinks = [ds?.origin.stdin, segmenter?.stdin].filter(Boolean);
    source.onStdout((d) => {
      tap.push(d, now());
      for (const s of sinks) s.write(d);
    });
    let sourceEndedAt;
    void source.stdoutEnded.then(() => {
      sourceEndedAt = now();
      for (const s of sinks) s.end();
    });
    sampler = new ServerSampler(servers);

    // warm-up: the HLS playlist holds a player's start (three segments) and one more; the seeder has chunks
    const warmStart = Date.now();
    if (segmenter) await waitForSegments(join(dir, "hls/www/live.m3u8"), o.behind + 1, source, 60_000);
    await sleep(Math.max(0, o.warmupS * 1000 - (Date.now() - warmStart)));
    if (!source.running) throw new Error(`the source ended during the warm-up: ${source.out.slice(-2000)}`);

    const joinedAt = now();
    const streamAtJoin = tap.length;
    sampler.mark();
    const dsBase = ds ? await dsCounters(ds) : undefined;
    env.log(`bench: live: ${o.viewers} viewer(s) per system join, one every ${o.joinIntervalMs} ms`);

    const vdir = join(dir, "viewers");
    mkdirSync(vdir);
    const spawnViewer = (system, i) => {
      const args =
        system === "ds"
          ? [
              `pdtp://127.0.0.1:${ds.port}/${NAME}`,
              ...["-o", "-", "--listen-host", "127.0.0.1", "--stall", "30", "-q", "--log-level", "info"],
              ...(o.rate > 0 ? ["--max-download-rate", `${o.rate}`, "--max-upload-rate", `${o.rate}`] : []),
            ]
          : [HLS_VIEWER, `http://127.0.0.1:${hlsPort}/live.m3u8`, "--behind", `${o.behind}`];
      const v = {
        system,
        i,
        spawnAt: now(),
        firstAt: undefined,
        bytes: 0,
        out: system === "ds" ? new SourceMatcher(tap) : new TsOutput(),
      };
      // dsclient as installed, run by its shebang (which carries its node flags)
      const cmd = system === "ds" ? DSCLIENT : process.execPath;
      v.proc = new Proc(`${system}-viewer${i}`, cmd, args, {
        cwd: vdir,
        timeFile: join(vdir, `${system}${i}.time`),
        stdout: "sink",
      });
      v.proc.onStdout((d) => {
        const t = now();
        v.firstAt ??= t;
        v.bytes += d.length;
        v.out.push(d, t);
      });
      void v.proc.stdoutEnded.then(() => v.out.end());
      void v.proc.exited.then((code) => {
        v.code = code;
        v.exitedAt = now();
      });
      viewers.push(v);
    };
    for (let i = 0; i < o.viewers; i++) {
      for (const s of systems) spawnViewer(s, i);
      if (i < o.viewers - 1) await sleep(o.joinIntervalMs);
    }

    // the broadcast runs `seconds` past the last join, then the source stops (ffmpeg ends the stream cleanly)
    const lastJoin = now();
    while (now() - lastJoin < o.seconds * 1000 && source.running) await sleep(200);
    if (!source.running) throw new Error(`the source ended early: ${source.out.slice(-2000)}`);
    env.log("bench: live: the source ends; waiting for every viewer to reach the end");
    await source.stop();
    await source.stdoutEnded;
    const endBy = Date.now() + o.endTimeoutS * 1000;
    while (viewers.some((v) => v.code === undefined) && Date.now() < endBy) await sleep(100);
    const endedAt = now();
    const stillRunning = viewers.filter((v) => v.code === undefined).map((v) => v.proc.name);
    const serverCpu = sampler.stop();
    const dsEnd = ds ? await dsCounters(ds) : undefined;
    for (const v of viewers) await v.proc.stop();
    await Promise.all(viewers.map((v) => v.proc.stdoutEnded));
    await stopAll(); // servers: nginx's access log complete
    lag.disable();

    // ---- figures ----
    const streamBytes = tap.length - streamAtJoin;
    const sourceTime = source.timeResult();
    // the join storm is over once every viewer of every system has written its first byte
    const steadyFrom = Math.max(...viewers.map((v) => v.firstAt ?? -Infinity));
    const result = {};
    for (const system of o.systems.filter((s) => env.available[s])) result[system] = { skipped: env.available[system] };
    for (const system of systems) {
      result[system] = systemFigures(system, {
        ...{ viewers, tap, streamBytes, joinedAt, steadyFrom },
        ...{ serverCpu, dsBase, dsEnd, accessLog, stillRunning },
      });
    }
    if (o.keepLogs) for (const p of [...Object.values(servers), ...viewers.map((v) => v.proc)]) keepLog(o.keepLogs, p);
    return {
      run: run + 1,
      systems: result,
      source: {
        streamBytes,
        streamBitsPerS: round((streamBytes * 8) / ((sourceEndedAt - joinedAt) / 1000), 0),
        framesParsed: tap.frames.length,
        viewingSeconds: round((sourceEndedAt - joinedAt) / 1000, 1),
        afterEndSeconds: round((endedAt - sourceEndedAt) / 1000, 1),
        encoderCpuSeconds: sourceTime?.cpuS ?? null,
      },
      harness: {
        cpuSeconds: round((process.cpuUsage().user + process.cpuUsage().system) / 1e6 - cpuAtStart, 2),
        eventLoopDelayP99Ms: round(lag.percentile(99) / 1e6, 1),
        eventLoopDelayMaxMs: round(lag.max / 1e6, 1),
      },
      loadAverageAtEnd: os.loadavg().map((x) => round(x, 2)),
      loadAverageMax: round(sampler.maxLoad, 2),
    };
  } catch (err) {
    env.log(`bench: live: failed: ${err.stack ?? err}`);
    const error = String(err.message ?? err).slice(0, 3000);
    return { run: run + 1, systems: Object.fromEntries(systems.map((s) => [s, { ok: false, error }])) };
  } finally {
    lag.disable();
    sampler?.stop();
    await stopAll();
  }
}

/** One system's figures from its viewers' outputs, the servers' CPU and counters (see README "Benchmarks"). */
function systemFigures(
  system,
  { viewers, tap, streamBytes, joinedAt, steadyFrom, serverCpu, dsBase, dsEnd, accessLog, stillRunning },
) {
  const since = (times) => times.map((t) => round((t - joinedAt) / 1000, 1));
  const vs = viewers.filter((v) => v.system === system);
  const per = vs.map((v) => {
    const frames = v.out.framesOut();
    const f = viewerFigures(frames, tap.ptsTime);
    f.fromOffset = frames.length ? tap.ptsOffset.get(frames[0].pts) : undefined;
    const time = v.proc.timeResult();
    const summary = logLine(v.proc, system === "ds" ? "live summary" : "hls summary");
    return {
      v,
      f,
      time,
      summary,
      tuneInS: v.firstAt === undefined ? null : (v.firstAt - v.spawnAt) / 1000,
      skipped: summary?.skipped ?? null,
    };
  });
  const allDelays = per.flatMap((p) => p.f.delays);
  const steady = per.flatMap((p) => p.f.delays.filter((_, i) => p.f.delayTimes[i] >= steadyFrom));
  // the stream the audience watched: from the earliest frame any viewer wrote to the end
  const watchedFrom = Math.min(...per.map((p) => p.f.fromOffset ?? Infinity));
  const watchedBytes = Number.isFinite(watchedFrom) ? tap.length - watchedFrom : streamBytes;
  const viewerCpu = per.reduce((s, p) => s + (p.time?.cpuS ?? 0), 0);
  const viewerMinutes = per.reduce((s, p) => s + (p.time?.elapsedS ?? 0), 0) / 60;
  const serverKeys = system === "ds" ? ["tracker", "checksum", "seeder"] : ["nginx", "segmenter"];
  const serverCpuS = serverKeys.reduce((s, k) => s + (serverCpu[k] ?? 0), 0);
  const r = {
    viewers: vs.length,
    watchedStreamBytes: watchedBytes,
    delayP50S: sec(percentile(allDelays, 50)),
    delayP95S: sec(percentile(allDelays, 95)),
    delayMaxS: sec(Math.max(...allDelays)),
    delayP95WorstViewerS: sec(Math.max(...per.map((p) => percentile(p.f.delays, 95) ?? -Infinity))),
    // from the moment every viewer (of both systems) has written its first byte: the steady state
    afterJoinsFromS: sec(steadyFrom - joinedAt),
    delayP50AfterJoinsS: sec(percentile(steady, 50)),
    delayP95AfterJoinsS: sec(percentile(steady, 95)),
    stallsAfterJoins: per.reduce((s, p) => s + p.f.stallTimes.filter((t) => t >= steadyFrom).length, 0),
    framesTimed: allDelays.length,
    tuneInP50S: round(
      percentile(
        per.map((p) => p.tuneInS),
        50,
      ),
      3,
    ),
    tuneInP95S: round(
      percentile(
        per.map((p) => p.tuneInS),
        95,
      ),
      3,
    ),
    // given up: chunks (ds), segments (hls); not "skipped", which names a system that did not run
    skips: per.every((p) => typeof p.skipped === "number") ? per.reduce((s, p) => s + p.skipped, 0) : null,
    stalls: per.reduce((s, p) => s + p.f.stalls, 0),
    stallSeconds: round(
      per.reduce((s, p) => s + p.f.stallS, 0),
      3,
    ),
    playbackDelayP50S: round(
      percentile(
        per.map((p) => p.f.playbackDelayS),
        50,
      ),
      3,
    ),
    playbackDelayP95S: round(
      percentile(
        per.map((p) => p.f.playbackDelayS),
        95,
      ),
      3,
    ),
    maxOutputGapS: round(Math.max(...per.map((p) => p.f.maxGapS)), 3),
    viewerCpuSecondsPerViewerMinute: viewerMinutes > 0 ? round(viewerCpu / viewerMinutes, 3) : null,
    serverCpuSecondsPerViewerMinute: viewerMinutes > 0 ? round(serverCpuS / viewerMinutes, 3) : null,
    serverCpuSeconds: Object.fromEntries(serverKeys.map((k) => [k, serverCpu[k] ?? null])),
    exitedAtEnd: `${per.filter((p) => p.v.code === 0).length}/${vs.length}`,
    perViewer: per.map((p) => ({
      tuneInS: round(p.tuneInS, 3),
      delayP50S: sec(percentile(p.f.delays, 50)),
      delayP95S: sec(percentile(p.f.delays, 95)),
      playbackDelayS: round(p.f.playbackDelayS, 3),
      stalls: p.f.stalls,
      stallS: round(p.f.stallS, 3),
      stallsAtS: since(p.f.stallTimes), // seconds after the first viewer joined
      skips: p.skipped,
      bytes: p.v.bytes,
      frames: p.f.frames,
      unmappedFrames: p.f.unmapped,
      exit: p.v.code ?? null,
      cpuS: p.time?.cpuS ?? null,
      elapsedS: p.time?.elapsedS ?? null,
      peakRssMB: p.time?.maxRssMB ?? null,
      ...(system === "ds"
        ? {
            discontinuities: p.v.out.discontinuities,
            discontinuitiesAtS: since(p.v.out.discontinuityTimes),
            missingAtEndBytes: p.v.out.spans.length ? tap.length - p.v.out.spans.at(-1)[1] : null,
            bytesPassedOver: p.v.out.bytesPassedOver,
            unmatchedBytes: p.v.out.unmatchedBytes,
            client: p.summary
              ? {
                  delayP50Ms: p.summary.delayP50Ms,
                  delayP95Ms: p.summary.delayP95Ms,
                  tuneInMs: p.summary.tuneInMs,
                  retunes: p.summary.retunes,
                  chunksWritten: p.summary.chunksWritten,
                  ended: p.summary.ended,
                }
              : null,
          }
        : { segments: p.summary?.segments ?? null, startSeq: p.summary?.startSeq ?? null }),
    })),
  };
  if (system === "ds") {
    const sent = dsEnd.seederSent - dsBase.seederSent;
    const hashed = dsEnd.checksumHashed - dsBase.checksumHashed;
    r.seederToViewersBytes = sent - hashed;
    r.originEgressOverStream = round((sent - hashed) / watchedBytes, 3);
    r.seederEgressWithChecksumOverStream = round(sent / watchedBytes, 3);
    r.seederWrittenOverStream = round((dsEnd.seederWchar - dsBase.seederWchar) / watchedBytes, 3);
    r.trackerDeliveredOverStream = round((dsEnd.delivered - dsBase.delivered) / watchedBytes, 3);
    r.trackerSkippedChunks = dsEnd.trackerSkipped - dsBase.trackerSkipped;
    r.bytesOk = `${per.filter((p) => p.v.out.unmatchedBytes === 0 && p.v.bytes > 0).length}/${vs.length}`;
    r.discontinuities = per.reduce((s, p) => s + p.v.out.discontinuities, 0);
    r.discontinuitiesAfterJoins = per.reduce(
      (s, p) => s + p.v.out.discontinuityTimes.filter((t) => t >= steadyFrom).length,
      0,
    );
    r.clientDelayP95MsMax = Math.max(...per.map((p) => p.summary?.delayP95Ms ?? -Infinity));
    // dsclient's own tune-in: from the start of its download (the process loaded, the tracker reached) on
    const clientTuneIn = per.map((p) => p.summary?.tuneInMs);
    r.clientTuneInP50S = sec(percentile(clientTuneIn, 50));
    r.clientTuneInP95S = sec(percentile(clientTuneIn, 95));
  } else {
    const served = readFileSync(accessLog, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" "));
    r.originEgressBytes = served.reduce((s, f) => s + Number(f[1]), 0);
    r.originEgressOverStream = round(r.originEgressBytes / watchedBytes, 3);
    r.requests = served.length;
    r.notFound = served.filter((f) => f[2] === "404").length;
  }
  const problems = [];
  if (stillRunning.some((n) => n.startsWith(system))) problems.push(`still running at the end: ${stillRunning}`);
  if (per.some((p) => p.v.bytes === 0)) problems.push("a viewer wrote nothing");
  if (per.some((p) => p.v.code !== undefined && p.v.code !== 0))
    problems.push(`exit codes ${per.map((p) => p.v.code).join(",")}`);
  if (system === "ds" && per.some((p) => p.v.out.unmatchedBytes > 0)) problems.push("output not in the source");
  if (per.some((p) => p.f.delays.length === 0)) problems.push("a viewer's frames could not be timed");
  r.ok = problems.length === 0;
  if (!r.ok) {
    const bad = per.find((p) => p.v.code !== 0 || p.v.bytes === 0);
    r.error = `${problems.join("; ")}${bad ? `\n${bad.v.proc.name}: ${bad.v.proc.out.slice(-1500)}` : ""}`;
  }
  return r;
}

function keepLog(dir, p) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${p.name}.log`), p.out);
}

async function dsCounters(ds) {
  const [s, c, t] = await Promise.all(
    [ds.seederMetricsPort, ds.checksumMetricsPort, ds.trackerMetricsPort].map((p) => metricsText(p).catch(() => "")),
  );
  return {
    seederSent: metricSum(s, "pdtp_dataplane_sent_bytes_total") ?? 0,
    checksumHashed: metricSum(c, "pdtp_checksum_bytes_hashed_total") ?? 0,
    delivered: metricSum(t, "pdtp_tracker_delivered_bytes_total") ?? 0,
    trackerSkipped: metricSum(t, "pdtp_tracker_live_skipped_chunks_total") ?? 0,
    seederWchar: sampleTree(ds.origin.target()).wchar,
  };
}

// ---- the scenario ----------------------------------------------------------------------------

const goal = (id, text, value, test, note) => ({
  id,
  goal: text,
  value: value ?? null,
  met: typeof value === "number" ? test(value) : null,
  ...(typeof value === "number" || !note ? {} : { note }),
});

export async function live(o, env) {
  if (env.available.ffmpeg) return { skipped: env.available.ffmpeg };
  const runs = [];
  for (let r = 0; r < o.runs; r++) {
    const run = await liveRun(o, env, r);
    const { ds, hls } = run.systems;
    run.ratios = {};
    if (ds?.ok && hls?.ok) {
      run.ratios["delayP95 ds/hls"] = ratio(ds.delayP95S, hls.delayP95S);
      run.ratios["tuneInP95 ds/hls"] = ratio(ds.tuneInP95S, hls.tuneInP95S);
      run.ratios["originEgress ds/hls"] = ratio(ds.originEgressOverStream, hls.originEgressOverStream);
      run.ratios["viewerCpu ds/hls"] = ratio(ds.viewerCpuSecondsPerViewerMinute, hls.viewerCpuSecondsPerViewerMinute);
    }
    for (const [s, x] of Object.entries(run.systems))
      env.log(
        `bench: live: ${s}: ${x.ok ? `delay p95 ${x.delayP95S} s, tune-in p95 ${x.tuneInP95S} s, egress ${x.originEgressOverStream}x, skips ${x.skips}, stalls ${x.stalls}` : `failed: ${x.error?.slice(0, 300)}`}`,
      );
    runs.push(run);
  }
  const med = {};
  for (const run of runs)
    for (const [sys, r] of Object.entries(run.systems)) {
      med[sys] ??= {};
      if (!r.ok) continue;
      for (const [k, v] of Object.entries(r)) if (typeof v === "number") (med[sys][k] ??= []).push(v);
    }
  for (const sys of Object.keys(med))
    for (const k of Object.keys(med[sys])) med[sys][k] = round(median(med[sys][k]), 3);
  const rat = {};
  for (const run of runs) for (const [k, v] of Object.entries(run.ratios)) (rat[k] ??= []).push(v);
  for (const k of Object.keys(rat)) rat[k] = round(median(rat[k]), 3);
  const dsMissing = runs.every((r) => !r.systems.ds?.ok)
    ? o.systems.includes("ds")
      ? "ds failed in every run"
      : "ds not in this run"
    : undefined;
  return {
    settings: {
      viewers: o.viewers,
      seconds: o.seconds,
      joinIntervalMs: o.joinIntervalMs,
      sourceBitsPerS: o.bitrate,
      viewerRateBytesPerS: o.rate,
      originRateBytesPerS: o.originRate,
      hlsBehindSegments: o.behind,
      runs: o.runs,
      systems: o.systems,
      how: {
        source:
          "ffmpeg -re testsrc2 640x360 25 fps with noise + 440 Hz sine: libx264 ultrafast zerolatency, a keyframe every 25 frames, maxrate = bufsize x2 ≈ 1.8 Mbit/s, AAC 96 kbit/s, MPEG-TS to a pipe the harness reads (-flush_packets 1); the harness timestamps every write and passes it to the seeder's and the segmenter's standard input",
        ds: "tracker (memory store), checksum and `seeder --live cam=- --max-upload-rate <origin rate>` as separate processes; viewers `dsclient pdtp://.../cam -o - --max-download-rate/--max-upload-rate <rate>` (default prebuffer 500 ms)",
        hls: "ffmpeg -copyts -f mpegts -i - -c copy -f hls -hls_time 1 -hls_list_size 6 (delete_segments, temp_file); nginx (access log, limit_rate = viewer rate per connection); viewers bench/hls-viewer.mjs: start 3 segments before the playlist's end, reload as RFC 8216 says, write the segments to stdout as they arrive",
      },
    },
    runs,
    medians: med,
    ratios: rat,
    columns: [
      "delayP50S",
      "delayP95S",
      "delayP95AfterJoinsS",
      "tuneInP50S",
      "tuneInP95S",
      "skips",
      "stalls",
      "stallsAfterJoins",
      "playbackDelayP95S",
      "originEgressOverStream",
      "viewerCpuSecondsPerViewerMinute",
      "serverCpuSecondsPerViewerMinute",
    ],
    goals: [
      goal("live-delay", "live delay p95 ≤ 1.5 s", med.ds?.delayP95S, (v) => v <= 1.5, dsMissing),
      goal("live-tune-in", "live tune-in p95 ≤ 1.5 s", med.ds?.tuneInP95S, (v) => v <= 1.5, dsMissing),
      goal(
        "live-egress",
        "live seeder egress to viewers ≤ 1.5× the stream",
        med.ds?.originEgressOverStream,
        (v) => v <= 1.5,
        dsMissing,
      ),
      goal("live-skipped", "no skipped chunk on loopback", med.ds?.skips, (v) => v === 0, dsMissing),
    ],
  };
}
