#!/usr/bin/env node
// An HLS viewer for the live benchmark, fetching a live media playlist as a player does (RFC 8216 §6.3.3 and
// §6.3.4): it starts `--behind` segments before the end of the playlist (3, as hls.js and most players do), fetches
// the segments in order on one keep-alive connection and writes their bytes to standard output as they arrive,
// and reloads the playlist a target duration after the previous load began when it had changed, half of one when
// it had not. A segment that left the playlist before it was fetched, or is gone (404), is skipped. After the
// last segment of a playlist that ends (#EXT-X-ENDLIST) it logs `{"msg":"hls summary",...}` on standard error
// and exits 0.
//   node bench/hls-viewer.mjs http://127.0.0.1:PORT/live.m3u8 [--behind 3]
import http from "node:http";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { behind: { type: "string", default: "3" } },
});
const playlistUrl = new URL(positionals[0] ?? "");
const behind = Math.max(1, Number(values.behind));
const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
const log = (fields) => process.stderr.write(`${JSON.stringify({ time: Date.now(), ...fields })}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, resolve).on("error", reject);
  });
}

async function text(url) {
  const res = await get(url);
  let body = "";
  res.setEncoding("utf8");
  for await (const piece of res) body += piece;
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}`);
  return body;
}

/** The segments of a media playlist: { targetMs, segments: [{ seq, uri }], ended }. */
function parsePlaylist(body) {
  let seq = 0;
  let targetMs = 1000;
  let ended = false;
  const segments = [];
  for (const raw of body.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#EXT-X-TARGETDURATION:")) targetMs = Number(line.slice(22)) * 1000;
    else if (line.startsWith("#EXT-X-MEDIA-SEQUENCE:")) seq = Number(line.slice(22));
    else if (line === "#EXT-X-ENDLIST") ended = true;
    else if (line && !line.startsWith("#")) segments.push({ seq: seq++, uri: new URL(line, playlistUrl) });
  }
  return { targetMs, segments, ended };
}

/** Streams one segment to standard output; false when it is gone (404). */
async function fetchSegment(uri) {
  const res = await get(uri);
  if (res.statusCode === 404) {
    res.resume();
    return false;
  }
  if (res.statusCode !== 200) {
    res.resume();
    throw new Error(`${uri}: HTTP ${res.statusCode}`);
  }
  for await (const piece of res) {
    figures.bytes += piece.length;
    if (!process.stdout.write(piece)) await new Promise((r) => process.stdout.once("drain", r));
  }
  return true;
}

const figures = { segments: 0, skipped: 0, bytes: 0, reloads: 0, startSeq: undefined };
let next; // sequence number of the next segment to fetch
let previous = "";
for (;;) {
  const loadStarted = Date.now();
  const body = await text(playlistUrl);
  figures.reloads++;
  const changed = body !== previous;
  previous = body;
  const { targetMs, segments, ended } = parsePlaylist(body);
  if (next === undefined) {
    // the first load: wait for a playlist long enough to start `behind` segments back (or one that ended)
    if (segments.length >= behind || (ended && segments.length > 0)) {
      next = segments[Math.max(0, segments.length - behind)].seq;
      figures.startSeq = next;
      log({ msg: "tuned in", seq: next, playlistSegments: segments.length });
    }
  }
  if (next !== undefined) {
    if (segments.length > 0 && segments[0].seq > next) {
      figures.skipped += segments[0].seq - next; // left the playlist before they were fetched
      next = segments[0].seq;
    }
    for (const s of segments) {
      if (s.seq < next) continue;
      if (await fetchSegment(s.uri)) figures.segments++;
      else figures.skipped++;
      next = s.seq + 1;
    }
    if (ended) break;
  }
  await sleep(loadStarted + (changed ? targetMs : targetMs / 2) - Date.now());
}
log({ msg: "hls summary", ...figures });
process.stdout.end(() => process.exit(0));
