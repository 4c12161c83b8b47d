import type { ReplicaRow, SeederRow, StatsSnapshot } from "../src/api.js";
import { bytes, cell, clock, count, duration, el, fillTable, listen, rate, shortId, setTile } from "./common.js";

/** The fleet page: tracker replicas, the swarm store, the checksum service, the seeders. */
function render(s: StatsSnapshot): void {
  const { replicas, store, checksum, seeders } = s.fleet;
  fillTable("replicas", replicas.map(replica), "no tracker replica heard from yet", 10);
  setTile("store-kind", `${store.kind}${store.nodes > 1 ? ` (${store.nodes} masters)` : ""}`, store.kind);
  setTile("store-up", store.up ? "up" : "DOWN", String(store.up));
  setTile("store-latency", store.latencyMs === null ? "—" : `${store.latencyMs.toFixed(2)} ms`, store.latencyMs);
  setTile("store-memory", store.usedMemoryBytes === null ? "—" : bytes(store.usedMemoryBytes), store.usedMemoryBytes);
  setTile("store-version", store.version || "—");
  setTile(
    "checksum-up",
    !checksum.configured ? "not watched" : checksum.up === null ? "—" : checksum.up ? "up" : "DOWN",
    String(checksum.up),
  );
  setTile("checksum-rate", rate(checksum.hashBytesPerSecond), checksum.hashBytesPerSecond);
  setTile(
    "checksum-live",
    checksum.liveChunksAttestedPerSecond === null ? "—" : `${checksum.liveChunksAttestedPerSecond} /s`,
    checksum.liveChunksAttestedPerSecond,
  );
  setTile("checksum-hashed", bytes(checksum.bytesHashedTotal), checksum.bytesHashedTotal);
  const alive = replicas.filter((r) => r.alive).length;
  setTile("checksum-reach", `${checksum.reachableFromReplicas} of ${alive} replicas`, checksum.reachableFromReplicas);
  fillTable("seeders", seeders.map(seeder), "no seeder connected", 6);
}

function replica(r: ReplicaRow): HTMLTableRowElement {
  const tr = el("tr");
  tr.dataset.replicaId = r.replicaId;
  tr.classList.add(r.alive ? "alive" : "gone");
  tr.append(
    cell("address", r.address, r.address, r.replicaId),
    cell("alive", r.alive ? "alive" : `gone (last heard ${clock(r.lastSeenMs)})`, r.alive),
    cell("uptime", duration(r.uptimeSeconds), r.uptimeSeconds),
    cell("viewers", count(r.viewers), r.viewers),
    cell("seeders", count(r.seeders), r.seeders),
    cell(
      "unreachablePeers",
      count(r.unreachablePeers),
      r.unreachablePeers,
      "viewers whose data port it could not connect to: they download, never serve",
    ),
    cell("directives", r.directivesPerSecond.toFixed(1), r.directivesPerSecond),
    cell(
      "storeLatency",
      r.storeLatencyMs === null ? "unreachable" : `${r.storeLatencyMs.toFixed(2)} ms`,
      r.storeLatencyMs,
    ),
    cell("leader", r.cleanupLeader ? "yes" : "", r.cleanupLeader, "holds the cleanup lease (runs the expiry sweeps)"),
    cell("checksum", r.checksumReachable ? "reached" : "not reached", r.checksumReachable),
  );
  return tr;
}

function seeder(s: SeederRow): HTMLTableRowElement {
  const tr = el("tr");
  tr.append(
    cell("peer", shortId(s.peerId), s.peerId, s.peerId),
    cell("address", s.address, s.address),
    cell("agent", s.agent, s.agent),
    cell("streams", count(s.streams), s.streams),
    cell("upRate", rate(s.upRate), s.upRate, "as reported by the viewers on its replica"),
    cell("replica", shortId(s.replicaId), s.replicaId, s.replicaId),
  );
  return tr;
}

listen("/api/events", { stats: (d) => render(d as StatsSnapshot) });
