import type { StatsSnapshot, StreamRow } from "../src/api.js";
import { bytes, cell, count, el, fillTable, listen, ms, percent, setTile } from "./common.js";

/** The streams page: every stream with its viewers, seeders, completions and offload. */
function render(s: StatsSnapshot): void {
  const t = s.totals;
  setTile("t-streams", count(t.streams), t.streams);
  setTile("t-viewers", count(t.viewers), t.viewers);
  setTile("t-seeders", count(t.seeders), t.seeders);
  setTile("t-unreachable", count(t.unreachablePeers), t.unreachablePeers);
  setTile("t-offload", percent(t.offloadPercent), t.offloadPercent);
  setTile("t-completed", count(t.completed), t.completed);
  const alive = s.fleet.replicas.filter((r) => r.alive).length;
  setTile("t-replicas", `${alive} / ${s.fleet.replicas.length}`, alive);
  fillTable("streams", s.streams.map(row), "no stream published yet", 11);
  const more = t.streams - s.streams.length;
  setTile("streams-more", more > 0 ? `and ${count(more)} more streams with fewer viewers` : "");
}

function row(r: StreamRow): HTMLTableRowElement {
  const tr = el("tr");
  tr.dataset.streamId = r.streamId;
  const name = el("td");
  name.dataset.field = "name";
  name.append(el("a", r.name, { href: `/stream?id=${encodeURIComponent(r.streamId)}` }));
  const size =
    r.kind === "file" ? bytes(r.size) : `${count(r.window?.windowChunks ?? 0)} chunks${r.ended ? " (ended)" : ""}`;
  tr.append(
    name,
    cell("kind", r.kind, r.kind),
    cell("size", size, r.size ?? r.window?.windowChunks ?? null),
    cell("viewers", count(r.viewers), r.viewers),
    cell("seeders", count(r.seeders), r.seeders),
    cell("completed", r.kind === "file" ? count(r.completed) : "—", r.completed),
    cell("peerBytes", bytes(r.peerBytes), r.peerBytes),
    cell("seederBytes", bytes(r.seederBytes), r.seederBytes),
    cell("offload", percent(r.offloadPercent), r.offloadPercent, "share of the bytes carried by peers"),
    cell("liveEdge", r.liveEdge === null ? "—" : count(r.liveEdge), r.liveEdge),
    cell("delay", r.kind === "live" ? `${ms(r.delayP50Ms)} / ${ms(r.delayP95Ms)}` : "—", r.delayP50Ms),
  );
  if (r.status !== "ready") tr.classList.add(`status-${r.status}`);
  return tr;
}

listen("/api/events", { stats: (d) => render(d as StatsSnapshot) });
