// A BitTorrent tracker on loopback for the benchmark: HTTP only (no UDP, no WebSocket), peers told to
// announce every INTERVAL seconds.   node tracker.mjs PORT INTERVAL_SECONDS
import { Server } from "bittorrent-tracker";

const [port, interval = "5"] = process.argv.slice(2);
const server = new Server({ udp: false, http: true, ws: false, stats: false, interval: Number(interval) * 1000 });
server.on("error", (err) => {
  console.error(`tracker error: ${err.message}`);
  process.exit(1);
});
server.listen(Number(port), { http: "127.0.0.1" }, () => console.log(`tracker listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
