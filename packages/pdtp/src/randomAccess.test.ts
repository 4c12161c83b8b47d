import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  crc32,
  RANDOM_ACCESS_SPAN,
  RandomAccessScanner,
  startsAtRandomAccess,
  TS_PACKET_SIZE,
  type RandomAccessPoint,
} from "./randomAccess.js";

// ---- synthetic MPEG-TS packets ----------------------------------------------

const PMT_PID = 0x1000;
const VIDEO = 0x100;
const AUDIO = 0x101;

function packet(head: number[], payload: number[] = []): Buffer {
  const p = Buffer.alloc(TS_PACKET_SIZE, 0xff);
  Buffer.from([...head, ...payload]).copy(p);
  return p;
}

/** A packet holding one PSI section (5-byte table header, `body`, CRC). */
function psi(pid: number, tableId: number, body: number[]): Buffer {
  const length = 5 + body.length + 4;
  const section = Buffer.from([tableId, 0xb0 | (length >> 8), length & 0xff, 0, 1, 0xc1, 0, 0, ...body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(section));
  return packet([0x47, 0x40 | (pid >> 8), pid & 0xff, 0x10, 0], [...section, ...crc]);
}

const pat = (pmtPid = PMT_PID) => psi(0, 0x00, [0, 1, 0xe0 | (pmtPid >> 8), pmtPid & 0xff]);
/** A PMT of one program: H.264 video and AAC audio. */
const pmt = (videoType = 0x1b) =>
  psi(PMT_PID, 0x02, [0xe1, 0x00, 0xf0, 0, videoType, 0xe1, 0x00, 0xf0, 0, 0x0f, 0xe1, 0x01, 0xf0, 0]);

/** A PES packet with an adaptation field; `start`: a PES begins here; `rai`: random_access_indicator. */
function pes(pid: number, o: { start: boolean; rai: boolean }): Buffer {
  const flags = o.rai ? 0x40 : 0;
  // the payload holds 0x47 bytes, as real payloads do
  return packet([0x47, (o.start ? 0x40 : 0) | (pid >> 8), pid & 0xff, 0x30, 1, flags], [0, 0, 1, 0xe0, 0x47, 0x47]);
}
const keyframe = () => pes(VIDEO, { start: true, rai: true });
const frame = () => pes(VIDEO, { start: true, rai: false });
const more = (pid = VIDEO) => pes(pid, { start: false, rai: false });
const audio = () => pes(AUDIO, { start: true, rai: true }); // every audio frame is a random access point

const ts = (...packets: Buffer[]) => Buffer.concat(packets);

/** Scans `data` pushed in pieces of the given sizes (cycled). */
function scan(data: Buffer, sizes: number[]): RandomAccessPoint[] {
  const s = new RandomAccessScanner();
  const found: RandomAccessPoint[] = [];
  for (let o = 0, i = 0; o < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    found.push(...s.push(data.subarray(o, o + n)));
    o += n;
  }
  return found;
}

describe("a chunk that begins at a random access point", () => {
  test("is a PAT, its PMT, then a keyframe's first packet on a video PID of that PMT", () => {
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), keyframe(), more())), true);
    // other packets may come between (SDT, audio, PCR) within the span
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), audio(), more(AUDIO), keyframe())), true);
    for (const type of [0x01, 0x02, 0x10, 0x24, 0x33])
      assert.equal(startsAtRandomAccess(ts(pat(), pmt(type), keyframe())), true);
  });

  test("is not one when the first video packet after the PMT is not a keyframe's start", () => {
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), frame(), keyframe())), false, "a PAT between frames");
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), more(), keyframe())), false, "a frame's middle");
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), pes(VIDEO, { start: false, rai: true }))), false);
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), audio(), audio())), false, "audio's RAI is not video's");
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(0x0f), audio())), false, "a program without video");
  });

  test("is not one when it does not begin with the PAT or misses a packet of the sequence", () => {
    assert.equal(startsAtRandomAccess(ts(more(), pat(), pmt(), keyframe())), false, "the PAT is not first");
    assert.equal(startsAtRandomAccess(ts(pat(), keyframe())), false, "no PMT");
    assert.equal(startsAtRandomAccess(ts(pat(0x1001), pmt(), keyframe())), false, "the PAT names another PMT");
    assert.equal(startsAtRandomAccess(ts(pat(), pmt())), false, "cut before the keyframe");
    assert.equal(startsAtRandomAccess(ts(pat(), pmt(), keyframe()).subarray(0, 3 * 188 - 1)), false, "cut inside it");
    const late = [pat(), pmt(), ...Array.from({ length: RANDOM_ACCESS_SPAN - 2 }, () => more(AUDIO)), keyframe()];
    assert.equal(startsAtRandomAccess(ts(...late)), false, "the keyframe beyond the span");
    assert.equal(startsAtRandomAccess(ts(...late.slice(0, 2), ...late.slice(3))), true, "the keyframe at its end");
    const badCrc = pat();
    badCrc.writeUInt8(badCrc[12]! ^ 1, 12);
    assert.equal(startsAtRandomAccess(ts(badCrc, pmt(), keyframe())), false, "a PAT that fails its CRC");
    const transportError = pat();
    transportError.writeUInt8(transportError[1]! | 0x80, 1);
    assert.equal(startsAtRandomAccess(ts(transportError, pmt(), keyframe())), false, "a packet flagged in error");
  });

  test("is never found in what is not MPEG-TS", () => {
    assert.equal(startsAtRandomAccess(Buffer.alloc(0)), false);
    assert.equal(startsAtRandomAccess(Buffer.from("G".repeat(5000))), false);
    assert.equal(startsAtRandomAccess(Buffer.from(ts(pat(), pmt(), keyframe()).subarray(1))), false);
  });
});

describe("RandomAccessScanner", () => {
  // 0: SDT-like, 1: PAT (a point), 4: PAT (no point: a frame follows), 8: PAT (a point after audio)
  const stream = ts(
    psi(0x11, 0x42, [0, 0]),
    pat(),
    pmt(),
    keyframe(),
    pat(),
    pmt(),
    frame(),
    more(),
    pat(),
    pmt(),
    audio(),
    keyframe(),
    more(),
  );
  const points = [
    { offset: 188, end: 4 * 188 },
    { offset: 8 * 188, end: 12 * 188 },
  ];

  test("finds the points of a stream pushed in pieces of any size, the same as in one piece", () => {
    for (const sizes of [[stream.length], [188], [1], [7, 500, 3], [187, 189], [1000, 1]]) {
      assert.deepEqual(scan(stream, sizes), points, `pieces of ${sizes.join(", ")}`);
    }
    for (const p of points) assert.equal(startsAtRandomAccess(stream.subarray(p.offset, p.end)), true);
  });

  test("tells where a chunk may end: packet boundaries, never between a PAT and what may make it a point", () => {
    const s = new RandomAccessScanner();
    s.push(stream.subarray(0, 2 * 188 + 50)); // SDT, PAT, part of the PMT: the PAT is undecided
    assert.equal(s.cutAt(0, 2 * 188 + 50), 188, "up to the undecided PAT");
    assert.equal(s.cutAt(188, 2 * 188 + 50), undefined, "nothing before it");
    assert.equal(s.cutAt(188, 2 * 188 + 50, true), 2 * 188, "unless forced: then a packet boundary");
    assert.equal(s.cutAt(0, 100), undefined, "not inside the first packet");
    assert.deepEqual(s.push(stream.subarray(2 * 188 + 50, 5 * 188 + 10)), [points[0]]);
    // PAT at 4 is undecided again
    assert.equal(s.cutAt(188, 5 * 188 + 10), 4 * 188);
    s.push(stream.subarray(5 * 188 + 10, 7 * 188 + 1)); // its frame came: no point
    assert.equal(s.cutAt(188, 7 * 188 + 1), 7 * 188, "the last whole packet's end");
    s.push(stream.subarray(7 * 188 + 1, 9 * 188));
    assert.equal(s.cutAt(188, 9 * 188), 8 * 188);
    s.end();
    assert.equal(s.cutAt(188, 9 * 188), 9 * 188, "at the end no PAT is waiting");
  });

  test("regains the packet boundaries after bytes that break them, and finds the points after", () => {
    const garbage = Buffer.alloc(100, 0x47); // sync bytes, but not 188 apart
    garbage[50] = 0;
    const broken = ts(stream.subarray(0, 2 * 188 + 30), garbage, stream);
    const lost = 2 * 188 + 30 + garbage.length;
    // out of sync, the stream's own first four packets regain the boundaries at its fifth:
    // its first point is missed, the next found where it is
    const shifted = [{ offset: lost + points[1]!.offset, end: lost + points[1]!.end }];
    for (const sizes of [[broken.length], [1], [188], [33, 400]]) assert.deepEqual(scan(broken, sizes), shifted);
    const s = new RandomAccessScanner();
    s.push(broken.subarray(0, lost + 100));
    assert.equal(s.cutAt(0, lost + 100), lost + 100, "out of sync, a chunk may end anywhere");
  });

  test("finds nothing in what is not MPEG-TS, and lets a chunk end anywhere in it", () => {
    const text = Buffer.from("G".repeat(1000) + "not a transport stream ".repeat(100));
    assert.deepEqual(scan(text, [1000]), []);
    const s = new RandomAccessScanner();
    s.push(Buffer.from("hello"));
    assert.equal(s.cutAt(0, 3), 3);
  });
});

describe("random access points of ffmpeg's MPEG-TS", () => {
  const dir = mkdtempSync(join(tmpdir(), "ds-rap-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Offsets of the video keyframes' first packets, as ffprobe reports them. */
  function keyframes(file: string): number[] {
    const r = spawnSync(
      "ffprobe",
      ["-v", "error", "-select_streams", "v", "-show_entries", "packet=pos,flags"].concat(["-of", "csv=p=0", file]),
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => l.split(","))
      .filter(([, flags]) => flags!.startsWith("K"))
      .map(([pos]) => Number(pos));
  }

  for (const [codec, extra] of [
    ["libx264", ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]],
    ["mpeg2video with AAC audio", ["-c:v", "mpeg2video", "-g", "12", "-c:a", "aac"]],
  ] as const) {
    test(`${codec}: a point 2 packets before each keyframe (PAT, PMT), and a stream cut there decodes cleanly`, () => {
      const file = join(dir, "clip.ts");
      const r = spawnSync(
        "ffmpeg",
        ["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=3"].concat([
          "-f",
          "lavfi",
          "-i",
          "sine=duration=3",
          ...extra,
          "-f",
          "mpegts",
          file,
        ]),
        { encoding: "utf8" },
      );
      assert.equal(r.status, 0, r.stderr);
      const data = readFileSync(file);
      const found = scan(data, [32768]);
      assert.ok(found.length >= 3, `${found.length} points`);
      assert.deepEqual(
        found.map((p) => p.offset),
        keyframes(file).map((pos) => pos - 2 * TS_PACKET_SIZE),
      );
      for (const p of found) assert.equal(startsAtRandomAccess(data.subarray(p.offset, p.end)), true);
      const cut = join(dir, "cut.ts");
      const from = found[1]!.offset;
      writeFileSync(cut, data.subarray(from));
      const decoded = spawnSync("ffmpeg", ["-v", "error", "-nostdin", "-i", cut, "-f", "null", "-"], {
        encoding: "utf8",
      });
      assert.equal(decoded.stderr, "", `ffmpeg prints nothing for the stream from ${from}`);
      // and a cut elsewhere does not (what a viewer saw before)
      writeFileSync(cut, data.subarray(from + 5 * TS_PACKET_SIZE));
      const broken = spawnSync("ffmpeg", ["-v", "error", "-nostdin", "-i", cut, "-f", "null", "-"], {
        encoding: "utf8",
      });
      assert.notEqual(broken.stderr, "", "a cut mid-frame makes the decoder complain");
    });
  }
});
