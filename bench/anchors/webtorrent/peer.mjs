// One WebTorrent peer of the benchmark, over TCP only: no DHT, LSD, UPnP, NAT-PMP, uTP or WebRTC.
//   node peer.mjs seed|get TORRENT DIR PORT UP_BYTES_PER_S DOWN_BYTES_PER_S   (a rate of 0: no limit)
// seed: DIR holds the complete file (not verified again); get: downloads into DIR. Prints "ready" when it
// serves, "done" when the download is complete, and keeps seeding until SIGTERM.
import { readFileSync } from "node:fs";
import WebTorrent from "webtorrent";

const [mode, torrentFile, dir, port, up, down] = process.argv.slice(2);
const limit = (v) => (Number(v) > 0 ? Number(v) : -1);
const client = new WebTorrent({
  dht: false,
  lsd: false,
  natUpnp: false,
  natPmp: false,
  utp: false,
  webSeeds: false,
  torrentPort: Number(port),
  uploadLimit: limit(up),
  downloadLimit: limit(down),
});
client.on("error", (err) => {
  console.error(`webtorrent error: ${err.message ?? err}`);
  process.exit(1);
});
const torrent = client.add(readFileSync(torrentFile), { path: dir, skipVerify: mode === "seed" });
torrent.on("error", (err) => {
  console.error(`torrent error: ${err.message ?? err}`);
  process.exit(1);
});
torrent.on("ready", () => console.log("ready"));
torrent.on("done", () => console.log("done"));
process.on("SIGTERM", () => client.destroy(() => process.exit(0)));
