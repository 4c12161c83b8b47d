import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DISTRIBUSTREAM, DSCLIENT, freePorts, startNode, type Proc } from "../support/procs.js";

/**
 * dsclient ls / info against a real `distribustream up` (a file and a live
 * broadcast of an ffmpeg test pattern), and dsclient --player with a stand-in
 * player: a script that hashes what arrives on its standard input.
 */
const MiB = 1024 * 1024;
const SECONDS = 16;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** The stand-in player: `node player.mjs OUT [LIMIT]` writes {sha, bytes, eof} of its stdin to OUT; quits after LIMIT bytes. */
const PLAYER = `
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
const [out, limit] = process.argv.slice(2);
const h = createHash("sha256");
let bytes = 0;
const report = (eof) => writeFileSync(out, JSON.stringify({ sha: h.digest("hex"), bytes, eof }));
process.stdin.on("data", (d) => {
  if (limit !== undefined && bytes + d.length >= Number(limit)) {
    d = d.subarray(0, Number(limit) - bytes);
    h.update(d);
    bytes += d.length;
    report(false);
    process.exit(0);
  }
  h.update(d);
  bytes += d.length;
});
process.stdin.on("end", () => report(true));
`;

interface Played {
  sha: string;
  bytes: number;
  eof: boolean;
}

describe("dsclient ls, info and --player against distribustream up", { timeout: 180_000 }, () => {
  let dir: string;
  let up: Proc;
  let port: number;
  let clip: Buffer;
  let film: Buffer;
  let networkKey: string;
  const size = 12 * MiB + 12345;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ds-browse-e2e-"));
    mkdirSync(join(dir, "media/videos"), { recursive: true });
    film = randomBytes(size);
    writeFileSync(join(dir, "media/videos/film.bin"), film);
    writeFileSync(join(dir, "player.mjs"), PLAYER);
    execFileSync("ffmpeg", [
      ...["-v", "error", "-nostdin", "-f", "lavfi", "-i", `testsrc=size=320x240:rate=25:duration=${SECONDS}`],
      ...["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M", "-g", "25", "-f", "mpegts", join(dir, "clip.ts")],
    ]);
    clip = readFileSync(join(dir, "clip.ts"));
    const bitrate = Math.round((clip.length * 8) / SECONDS);
    const [p, data, checksum, metrics] = await freePorts(4);
    port = p!;
    up = startNode(
      DISTRIBUSTREAM,
      ["up", "--media", "media", "--host", "127.0.0.1", "--port", `${port}`, "--data-port", `${data}`].concat(
        ["--checksum-port", `${checksum}`, "--metrics-port", `${metrics}`],
        ["--live", "cam=clip.ts", "--live-bitrate", `${bitrate}`],
      ),
      { cwd: dir },
    );
    await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/cam/, 60_000);
    networkKey = (
      await up.waitFor(/npx dsclient '?pdtp:\/\/localhost:\d+\/videos\/film\.bin\?key=([0-9a-f]{32})/, 60_000)
    )[1]!;
  });

  after(async () => {
    await up?.kill("SIGTERM");
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  const tracker = () => `pdtp://127.0.0.1:${port}`;
  const dsclient = (args: string[]) => startNode(DSCLIENT, args, { cwd: dir });
  const played = (file: string): Played => JSON.parse(readFileSync(join(dir, file), "utf8"));

  test("--player on a live stream: the player gets the broadcast from its tune-in point to its end", async () => {
    const c = dsclient([`${tracker()}/cam`, "--player", "node player.mjs live.json", "-q"]);
    assert.equal(await c.exited, 0, c.stderr());
    const got = played("live.json");
    assert.equal(got.eof, true, "the player saw the end of its input");
    assert.ok(got.bytes > 0 && got.bytes <= clip.length, `the player got ${got.bytes} bytes`);
    assert.equal(got.sha, sha(clip.subarray(clip.length - got.bytes)), "what it played is the clip's tail");
  });

  test("ls prints a table of the file and the live stream", async () => {
    const c = dsclient(["ls", tracker()]);
    assert.equal(await c.exited, 0, c.stderr());
    const lines = c.stdout().trimEnd().split("\n");
    assert.match(lines[0]!, /^NAME\s+KIND\s+SIZE \/ WINDOW\s+SEEDERS\s+VIEWERS$/);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))?.split(/\s{2,}/);
    assert.deepEqual(row("videos/film.bin"), ["videos/film.bin", "file", "12.0 MiB", "1", "0"]);
    const cam = row("cam")!;
    assert.equal(cam[1], "live");
    assert.match(cam[2]!, /window/);
    assert.equal(cam[3], "1", "one seeder");
  });

  test("ls --json is one array; a path lists the names under it; `distribustream dsclient ls` is the same command", async () => {
    const c = dsclient(["ls", tracker(), "--json"]);
    assert.equal(await c.exited, 0, c.stderr());
    const all = JSON.parse(c.stdout()) as Array<Record<string, unknown>>;
    assert.deepEqual(all.map((s) => s.name).sort(), ["cam", "videos/film.bin"]);
    const f = all.find((s) => s.name === "videos/film.bin")!;
    assert.equal(f.kind, "file");
    assert.equal(f.size, size);
    assert.equal(f.seeders, 1);
    assert.equal(f.networkKeyId, networkKey);
    const cam = all.find((s) => s.name === "cam")! as {
      kind: string;
      live: { started: boolean; low: number; edge: number };
    };
    assert.equal(cam.kind, "live");
    assert.equal(cam.live.started, true);
    assert.ok(cam.live.edge >= cam.live.low);

    const under = startNode(DISTRIBUSTREAM, ["dsclient", "ls", `${tracker()}/videos/`, "--json"], { cwd: dir });
    assert.equal(await under.exited, 0, under.stderr());
    assert.deepEqual(
      (JSON.parse(under.stdout()) as { name: string }[]).map((s) => s.name),
      ["videos/film.bin"],
    );
  });

  test("info names the chunks, the manifest's fingerprint and the network key to pin", async () => {
    const c = dsclient(["info", `${tracker()}/videos/film.bin`]);
    assert.equal(await c.exited, 0, c.stderr());
    const out = c.stdout();
    assert.match(out, /^kind: +file$/m);
    assert.match(out, new RegExp(`^size: +12\\.0 MiB \\(${size} bytes\\)$`, "m"));
    assert.match(out, /^manifest: +sha256 [0-9a-f]{64}$/m);
    assert.match(out, new RegExp(`^network key: +${networkKey}$`, "m"));
    assert.match(out, new RegExp(`^url: +pdtp://127\\.0\\.0\\.1:${port}/videos/film\\.bin\\?key=${networkKey}$`, "m"));

    const j = dsclient(["info", `${tracker()}/videos/film.bin`, "--json"]);
    assert.equal(await j.exited, 0, j.stderr());
    const d = JSON.parse(j.stdout()) as {
      chunkSize: number;
      chunkCount: number;
      version: number;
      manifestSha256: string;
    };
    assert.equal(d.chunkCount, Math.ceil(size / d.chunkSize));
    assert.ok(d.version > 0);
    assert.match(d.manifestSha256, /^[0-9a-f]{64}$/);
    // the same manifest on every answer: ls and info agree
    const l = dsclient(["ls", tracker(), "--json"]);
    assert.equal(await l.exited, 0);
    const listed = (JSON.parse(l.stdout()) as { name: string; manifestSha256: string }[]).find(
      (s) => s.name === "videos/film.bin",
    );
    assert.equal(listed?.manifestSha256, d.manifestSha256);
  });

  test("info on a live stream shows its edge and window", async () => {
    const c = dsclient(["info", `${tracker()}/cam`, "--json"]);
    assert.equal(await c.exited, 0, c.stderr());
    const d = JSON.parse(c.stdout()) as {
      kind: string;
      networkKeyId: string;
      live: { edge: number; windowChunks: number };
    };
    assert.equal(d.kind, "live");
    assert.equal(d.networkKeyId, networkKey);
    assert.ok(d.live.windowChunks > 0);
    const t = dsclient(["info", `${tracker()}/cam`]);
    assert.equal(await t.exited, 0, t.stderr());
    assert.match(t.stdout(), new RegExp(`^edge: +chunk ${d.live.edge}\\b`, "m"));
    assert.match(t.stdout(), /^window: +chunks \d+-\d+ /m);
  });

  test("info: an unknown name is exit 3, a key the tracker does not sign with exit 6, an unreachable tracker exit 4", async () => {
    const unknown = dsclient(["info", `${tracker()}/videos/nope.bin`]);
    assert.equal(await unknown.exited, 3);
    assert.equal(unknown.stderr(), `dsclient: no stream named "videos/nope.bin" on 127.0.0.1:${port}\n`);

    const other = "0".repeat(32);
    const pinned = dsclient(["info", `${tracker()}/videos/film.bin?key=${other}`]);
    assert.equal(await pinned.exited, 6);
    assert.match(
      pinned.stderr(),
      new RegExp(`signs "videos/film.bin" with network key ${networkKey}, not the pinned ${other}`),
    );

    const [closed] = await freePorts(1);
    for (const cmd of ["ls", "info"]) {
      const c = dsclient([cmd, `pdtp://127.0.0.1:${closed}/x`, "--connect-attempts", "2"]);
      assert.equal(await c.exited, 4, `${cmd}: ${c.stderr()}`);
      assert.match(
        c.stderr(),
        /^dsclient: tracker 127\.0\.0\.1:\d+ unreachable after 2 attempts \(connect ECONNREFUSED\)\n$/,
      );
    }
    const bad = dsclient(["info", tracker()]);
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr(), /no stream name/);
  });

  test("--player on a file: the player gets every byte, sha256 equal", async () => {
    const c = dsclient([`${tracker()}/videos/film.bin`, "--player", "node player.mjs film.json", "-q"]);
    assert.equal(await c.exited, 0, c.stderr());
    const got = played("film.json");
    assert.deepEqual(got, { sha: sha(film), bytes: size, eof: true });
    assert.equal(existsSync(join(dir, "film.bin")), false, "nothing written beside");
  });

  test("a player that quits early ends the download with exit 0", async () => {
    const c = dsclient([
      `${tracker()}/videos/film.bin`,
      ...["--player", "node player.mjs early.json 100000", "--max-download-rate", "2M", "--log-level", "info"],
    ]);
    assert.equal(await c.exited, 0, c.stderr());
    const got = played("early.json");
    assert.deepEqual(got, { sha: sha(film.subarray(0, 100000)), bytes: 100000, eof: false });
    assert.match(c.stderr(), /the player node player\.mjs early\.json 100000 was closed by its reader/);
  });

  test("a player that cannot start is exit 2 with a clear message", async () => {
    const missing = dsclient([`${tracker()}/videos/film.bin`, "--player", "no-such-player-xyz -"]);
    assert.equal(await missing.exited, 2);
    assert.equal(
      missing.stderr(),
      'dsclient: player "no-such-player-xyz" not found (give mpv, vlc or a command on the PATH)\n',
    );
    // the shell starts, the command in it cannot run: found out when the stream arrives
    const broken = dsclient([`${tracker()}/videos/film.bin`, "--player", "exec ./no-such-dir/player"]);
    assert.equal(await broken.exited, 2, broken.stderr());
    assert.match(
      broken.stderr(),
      /dsclient: player "exec \.\/no-such-dir\/player" could not run \(the shell exited with 127\)\n$/,
    );

    const both = dsclient([`${tracker()}/videos/film.bin`, "--player", "node player.mjs x.json", "-o", "x.bin"]);
    assert.equal(await both.exited, 2);
    assert.match(both.stderr(), /--player plays the stream instead of writing it: leave out -o/);
  });
});
