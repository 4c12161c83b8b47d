// Writes a .torrent of FILE for the benchmark's BitTorrent anchors (aria2, WebTorrent).
//   node make-torrent.mjs FILE OUT.torrent ANNOUNCE_URL PIECE_BYTES
import createTorrent from "create-torrent";
import { writeFileSync } from "node:fs";

const [file, out, announce, pieceLength] = process.argv.slice(2);
createTorrent(
  file,
  { announceList: [[announce]], pieceLength: Number(pieceLength), private: false, createdBy: "ds-bench" },
  (err, torrent) => {
    if (err) throw err;
    writeFileSync(out, torrent);
    console.log("torrent written");
  },
);
