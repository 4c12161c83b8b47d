import type { AvailabilityStrip, HistoryPoint, NoticeRow, PeerRow, StreamDetail } from "../src/api.js";
import { bytes, cell, clock, count, el, fillTable, listen, ms, percent, rate, setTile, shortId } from "./common.js";

/**
 * One stream's page: its figures, the availability strip (a canvas, one
 * column per bucket of chunks), offload and throughput over time (uPlot),
 * its busiest and misbehaving peers, and what happened lately.
 */

const id = new URLSearchParams(location.search).get("id") ?? "";
const HISTORY_POINTS = 600;

type Series = [number[], (number | null)[], ...(number | null)[][]];
const offloadData: Series = [[], []];
const throughputData: Series = [[], [], []];
let offloadChart: UPlot | undefined;
let throughputChart: UPlot | undefined;
let strip: AvailabilityStrip | undefined;

function chartWidth(elId: string): number {
  return Math.max(300, (document.getElementById(elId)?.clientWidth ?? 600) - 4);
}

function charts(): void {
  const axisColor = { stroke: "#9aa4b2", grid: { stroke: "#2a3140" }, ticks: { stroke: "#2a3140" } };
  offloadChart = new uPlot(
    {
      width: chartWidth("offload-chart"),
      height: 180,
      scales: { y: { range: [0, 100] } },
      axes: [axisColor, { ...axisColor, size: 60, values: (_u, v) => v.map((x) => `${x} %`) }],
      series: [{}, { label: "offload", stroke: "#4fc3f7", width: 2, value: (_u, v) => percent(v) }],
    },
    offloadData as UPlotData,
    document.getElementById("offload-chart")!,
  );
  throughputChart = new uPlot(
    {
      width: chartWidth("throughput-chart"),
      height: 180,
      axes: [axisColor, { ...axisColor, size: 90, values: (_u, v) => v.map((x) => rate(x)) }],
      series: [
        {},
        { label: "from peers", stroke: "#66bb6a", width: 2, value: (_u, v) => rate(v) },
        { label: "from seeders", stroke: "#ffa726", width: 2, value: (_u, v) => rate(v) },
      ],
    },
    throughputData as UPlotData,
    document.getElementById("throughput-chart")!,
  );
  new ResizeObserver(() => {
    offloadChart?.setSize({ width: chartWidth("offload-chart"), height: 180 });
    throughputChart?.setSize({ width: chartWidth("throughput-chart"), height: 180 });
    drawStrip();
  }).observe(document.getElementById("charts")!);
}

function addPoints(points: readonly HistoryPoint[], reset: boolean): void {
  if (reset) for (const s of [...offloadData, ...throughputData]) s.length = 0;
  for (const p of points) {
    const t = p.t / 1000;
    if (offloadData[0].length > 0 && t <= offloadData[0].at(-1)!) continue;
    offloadData[0].push(t);
    offloadData[1].push(p.offloadPercent);
    throughputData[0].push(t);
    throughputData[1].push(p.peerRate);
    throughputData[2]!.push(p.seederRate);
  }
  for (const s of [...offloadData, ...throughputData])
    if (s.length > HISTORY_POINTS) s.splice(0, s.length - HISTORY_POINTS);
  offloadChart?.setData(offloadData as UPlotData);
  throughputChart?.setData(throughputData as UPlotData);
}

/** Colour of a bucket by its fewest copies: red where only a seeder has a chunk, green where many peers do. */
function colour(copies: number): string {
  if (copies <= 0) return "#e53935";
  if (copies === 1) return "#fb8c00";
  if (copies === 2) return "#fdd835";
  if (copies <= 4) return "#9ccc65";
  return "#2e7d32";
}

function drawStrip(): void {
  const canvas = document.getElementById("strip") as HTMLCanvasElement | null;
  if (!canvas || !strip) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d")!;
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const n = strip.minHolders.length;
  for (let b = 0; b < n; b++) {
    ctx.fillStyle = colour(strip.minHolders[b]!);
    const x0 = Math.floor((b * width) / n);
    const x1 = Math.floor(((b + 1) * width) / n);
    ctx.fillRect(x0, 0, Math.max(1, x1 - x0), height);
  }
  const scarce = strip.minHolders.filter((c) => c === 0).length;
  setTile(
    "strip-summary",
    n === 0
      ? "no chunks"
      : `chunks ${count(strip.low)}–${count(strip.high)}, ${count(strip.bucketChunks)} per column; ` +
          `${scarce} of ${n} columns held by no viewer`,
  );
}

function stripHover(e: MouseEvent): void {
  const canvas = e.currentTarget as HTMLCanvasElement;
  if (!strip || strip.minHolders.length === 0) return;
  const b = Math.min(
    strip.minHolders.length - 1,
    Math.floor((e.offsetX / canvas.clientWidth) * strip.minHolders.length),
  );
  const first = strip.low + b * strip.bucketChunks;
  const last = Math.min(strip.high, first + strip.bucketChunks - 1);
  const copies = strip.minHolders[b]!;
  setTile(
    "strip-info",
    `chunks ${count(first)}–${count(last)}: ${copies === 0 ? "only a seeder has some of them" : `at least ${copies} cop${copies === 1 ? "y" : "ies"} among viewers`}`,
  );
}

function peerRow(p: PeerRow, chunks: number, kind: "file" | "live"): HTMLTableRowElement {
  const tr = el("tr");
  tr.dataset.peerId = p.peerId;
  if (p.banned) tr.classList.add("banned");
  else if (p.bad > 0) tr.classList.add("suspect");
  const held = p.held === null || chunks === 0 ? null : Math.min(100, (p.held / chunks) * 100);
  tr.append(
    cell("peer", shortId(p.peerId), p.peerId, p.peerId),
    cell("role", p.role, p.role),
    cell("address", p.address || "—", p.address),
    cell("agent", p.agent || "—", p.agent),
    cell("downRate", rate(p.downRate), p.downRate),
    cell("upRate", rate(p.upRate), p.upRate),
    cell("held", p.role === "seeder" ? "all" : kind === "live" ? "—" : percent(held), p.held),
    cell("trust", `${count(p.served)} ok · ${count(p.failures)} failed · ${count(p.bad)} bad`, p.served),
    cell("banned", p.banned ? "banned" : "", p.banned),
    cell("delay", ms(p.delayMs), p.delayMs),
    cell("replica", shortId(p.replicaId), p.replicaId, p.replicaId),
  );
  return tr;
}

function noticeItem(n: NoticeRow): HTMLLIElement {
  const li = el("li");
  li.dataset.type = n.type;
  li.append(
    el("time", clock(n.atMs)),
    el("span", n.type, { class: `notice ${n.type}` }),
    el("code", shortId(n.peerId), { title: n.peerId }),
    el("span", n.detail, { class: "detail" }),
  );
  return li;
}

function render(d: StreamDetail, first: boolean): void {
  const s = d.stream;
  document.title = `${s.name} — DistribuStream`;
  setTile("name", s.name);
  setTile("kind", s.kind === "live" ? `live${s.ended ? " (ended)" : ""}` : "file", s.kind);
  setTile(
    "size",
    s.kind === "file"
      ? `${bytes(s.size)} in ${count(s.chunks)} chunks of ${bytes(s.chunkSize)}`
      : `window ${count(s.window?.low ?? 0)}–${count(s.window?.high ?? 0)} (${count(s.window?.windowChunks ?? 0)} chunks)`,
    s.size,
  );
  setTile("s-viewers", count(s.viewers), s.viewers);
  setTile("s-seeders", count(s.seeders), s.seeders);
  setTile("s-completed", s.kind === "file" ? count(s.completed) : "—", s.completed);
  setTile("s-offload", percent(s.offloadPercent), s.offloadPercent);
  setTile("s-peer-bytes", bytes(s.peerBytes), s.peerBytes);
  setTile("s-seeder-bytes", bytes(s.seederBytes), s.seederBytes);
  setTile("s-edge", s.liveEdge === null ? "—" : count(s.liveEdge), s.liveEdge);
  setTile("s-delay", s.kind === "live" ? `${ms(s.delayP50Ms)} / ${ms(s.delayP95Ms)}` : "—", s.delayP50Ms);
  strip = d.availability;
  drawStrip();
  addPoints(d.history, first);
  fillTable(
    "peers",
    d.peers.map((p) => peerRow(p, s.chunks, s.kind)),
    "no peer in this stream",
    11,
  );
  setTile("peers-shown", `${d.peers.length} of ${count(d.peersTotal)} peers`, d.peersTotal);
  const list = document.getElementById("notices");
  list?.replaceChildren(
    ...(d.notices.length > 0 ? d.notices.map(noticeItem) : [el("li", "nothing yet", { class: "empty" })]),
  );
}

if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
  setTile("name", "no stream id in the address: open a stream from the streams page");
} else {
  document.getElementById("strip")?.addEventListener("mousemove", stripHover);
  charts();
  let first = true;
  listen(`/api/events?stream=${encodeURIComponent(id)}`, {
    stream: (data) => {
      const d = data as StreamDetail;
      // the first message after (re)connecting carries the whole history
      render(d, first || d.history.length > 1);
      first = false;
    },
  });
}
