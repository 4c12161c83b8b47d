/**
 * Random access points of an MPEG-TS stream (ISO/IEC 13818-1): the places a
 * viewer can start decoding from. A random access point is a PAT packet
 * followed, within RANDOM_ACCESS_SPAN packets of 188 bytes, by the PMT it
 * names and then by the first packet of a video keyframe: the first packet
 * after that PMT on one of its video PIDs starts a PES and has the adaptation
 * field's random_access_indicator set. Muxers (ffmpeg's among them) write a
 * PAT and PMT right before every keyframe, so a stream cut at that PAT
 * decodes from its first byte; the PATs written in between (every ~0.1 s)
 * are followed by other frames and are no such point.
 *
 * The rule looks at those few packets only, never at what came before, so a
 * seeder that cuts its chunks at random access points (RandomAccessScanner)
 * and a checksum service that checks each chunk alone (startsAtRandomAccess)
 * agree. Tables must fit one packet (they do for a handful of programs). An
 * input that is not MPEG-TS has no random access points.
 */

export const TS_PACKET_SIZE = 188;
/** Packets from a PAT within which its PMT and the keyframe's first packet must come. */
export const RANDOM_ACCESS_SPAN = 8;

const SYNC_BYTE = 0x47;
const PAT_PID = 0;
const PAT_TABLE = 0x00;
const PMT_TABLE = 0x02;
/** PMT stream types of video: MPEG-1, MPEG-2, MPEG-4 part 2, H.264, HEVC, VVC. */
const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x10, 0x1b, 0x24, 0x33]);
/**
 * Packet starts in a row, 188 bytes apart, that regain the packet boundaries
 * after a loss of sync: in bytes that are not MPEG-TS, five 0x47 bytes 188
 * apart come once in 2^40 places.
 */
const RESYNC_PACKETS = 5;

/** Whether `chunk`, read alone, begins at a random access point. */
export function startsAtRandomAccess(chunk: Uint8Array): boolean {
  const candidate = Candidate.at(chunk.subarray(0, TS_PACKET_SIZE), 0);
  if (!candidate) return false;
  for (let at = TS_PACKET_SIZE; at + TS_PACKET_SIZE <= chunk.length; at += TS_PACKET_SIZE) {
    const verdict = candidate.next(chunk.subarray(at, at + TS_PACKET_SIZE));
    if (verdict !== undefined) return verdict;
  }
  return false;
}

export interface RandomAccessPoint {
  /** Stream offset of its PAT packet: where a chunk is to begin. */
  offset: number;
  /** Stream offset just past the keyframe's first packet: a chunk must reach this far to show the point. */
  end: number;
}

/**
 * Finds the random access points of a stream pushed in pieces of any size,
 * and tells where a chunk may end so that it keeps the stream's 188-byte
 * packets whole. Offsets count bytes from the stream's first. A stream that
 * loses the packet boundaries (a byte other than 0x47 where a packet should
 * start) regains them at five packet starts in a row; until then it has no
 * boundaries and no random access points, which is all an input that is not
 * MPEG-TS ever has. No byte is copied except a packet split between pieces.
 */
export class RandomAccessScanner {
  /** Stream offset of the next byte pushed. */
  private pos = 0;
  /** Offset of a packet start while in sync (the packets lie at grid + k * 188); undefined out of sync. */
  private grid: number | undefined = 0;
  /** The bytes of a packet split between pieces. */
  private readonly split = new Uint8Array(TS_PACKET_SIZE);
  private splitBytes = 0;
  /** A PAT whose packets after it are still coming. */
  private candidate: Candidate | undefined;
  /** Out of sync, per offset mod 188: where the last 0x47 was, and how many in a row 188 apart ended there. */
  private readonly lastSync = new Float64Array(TS_PACKET_SIZE).fill(-Infinity);
  private readonly syncRun = new Uint8Array(TS_PACKET_SIZE);

  /** Scans the next bytes; returns the random access points they confirmed, in order. */
  push(bytes: Uint8Array): RandomAccessPoint[] {
    const found: RandomAccessPoint[] = [];
    let i = 0;
    while (i < bytes.length) {
      if (this.grid === undefined) {
        i = this.resync(bytes, i);
      } else if (this.splitBytes === 0 && bytes[i] !== SYNC_BYTE) {
        this.grid = undefined;
        this.candidate = undefined;
      } else if (this.splitBytes === 0 && bytes.length - i >= TS_PACKET_SIZE) {
        this.packet(bytes.subarray(i, i + TS_PACKET_SIZE), this.pos + i, found);
        i += TS_PACKET_SIZE;
      } else {
        const n = Math.min(TS_PACKET_SIZE - this.splitBytes, bytes.length - i);
        this.split.set(bytes.subarray(i, i + n), this.splitBytes);
        this.splitBytes += n;
        i += n;
        if (this.splitBytes === TS_PACKET_SIZE) {
          this.splitBytes = 0;
          this.packet(this.split, this.pos + i - TS_PACKET_SIZE, found);
        }
      }
    }
    this.pos += bytes.length;
    return found;
  }

  /** The stream ended: a PAT still waiting for its keyframe is no random access point. */
  end(): void {
    this.candidate = undefined;
  }

  /**
   * Where a chunk of the bytes [from, to) may end: the last offset in
   * (from, to] at a packet boundary that does not split a PAT from the
   * packets that may still make it a random access point (with `force`, it
   * may: a chunk that must end at a size bound). Out of sync, `to`.
   * Undefined when no such offset exists.
   */
  cutAt(from: number, to: number, force = false): number | undefined {
    let at = to;
    if (this.grid !== undefined && to > this.grid) {
      at = to - ((to - this.grid) % TS_PACKET_SIZE);
      if (!force && this.candidate && this.candidate.offset < at) at = this.candidate.offset;
    }
    return at > from ? at : undefined;
  }

  private packet(p: Uint8Array, at: number, found: RandomAccessPoint[]): void {
    if (this.candidate) {
      const verdict = this.candidate.next(p);
      if (verdict === undefined) return;
      if (verdict) found.push({ offset: this.candidate.offset, end: at + TS_PACKET_SIZE });
      this.candidate = undefined;
    }
    this.candidate = Candidate.at(p, at);
  }

  /** Looks for the packet boundaries from bytes[i]; returns where scanning goes on. */
  private resync(bytes: Uint8Array, i: number): number {
    for (;;) {
      const k = bytes.indexOf(SYNC_BYTE, i);
      if (k < 0) return bytes.length;
      const at = this.pos + k;
      const slot = at % TS_PACKET_SIZE;
      const run = this.lastSync[slot] === at - TS_PACKET_SIZE ? this.syncRun[slot]! + 1 : 1;
      this.lastSync[slot] = at;
      this.syncRun[slot] = Math.min(run, RESYNC_PACKETS);
      if (run >= RESYNC_PACKETS) {
        this.grid = at; // the packet at k is read whole from here
        return k;
      }
      i = k + 1;
    }
  }
}

/** A PAT packet and the packets after it, until they show whether it begins a random access point. */
class Candidate {
  private readonly videoPids = new Set<number>();
  private packets = 1;

  private constructor(
    readonly offset: number,
    private readonly pmtPids: ReadonlySet<number>,
  ) {}

  /** A candidate when `p` is a PAT packet naming at least one PMT. */
  static at(p: Uint8Array, offset: number): Candidate | undefined {
    if (p.length < TS_PACKET_SIZE || pidOf(p) !== PAT_PID) return undefined;
    const pat = section(p, PAT_TABLE);
    if (!pat) return undefined;
    const pmtPids = new Set<number>();
    // entries of 4 bytes (program number, PMT PID) between the 8-byte header and the CRC
    for (let i = 8; i + 4 <= pat.length - 4; i += 4) {
      if (((pat[i]! << 8) | pat[i + 1]!) !== 0) pmtPids.add(pid13(pat, i + 2));
    }
    return pmtPids.size > 0 ? new Candidate(offset, pmtPids) : undefined;
  }

  /** The next packet: true when it is the keyframe's, false when this PAT is no random access point, undefined to look further. */
  next(p: Uint8Array): boolean | undefined {
    this.packets++;
    const pid = pidOf(p);
    if (pid === undefined || pid === PAT_PID) return false;
    if (this.videoPids.has(pid)) return startsKeyframe(p);
    if (this.pmtPids.has(pid)) {
      const pmt = section(p, PMT_TABLE);
      if (pmt) for (const v of videoPidsOf(pmt)) this.videoPids.add(v);
    }
    return this.packets >= RANDOM_ACCESS_SPAN ? false : undefined;
  }
}

/** The PID of a packet without transport errors, or undefined. */
function pidOf(p: Uint8Array): number | undefined {
  if (p[0] !== SYNC_BYTE || p[1]! & 0x80) return undefined;
  return pid13(p, 1);
}

function pid13(b: Uint8Array, i: number): number {
  return ((b[i]! & 0x1f) << 8) | b[i + 1]!;
}

/** Where a packet's payload starts (after its adaptation field), or undefined when it has none. */
function payloadStart(p: Uint8Array): number | undefined {
  const control = (p[3]! >> 4) & 3;
  const at = control & 2 ? 5 + p[4]! : 4;
  return control & 1 && at < TS_PACKET_SIZE ? at : undefined;
}

/** The packet starts a PES (payload_unit_start) with random_access_indicator set. */
function startsKeyframe(p: Uint8Array): boolean {
  const hasAdaptation = (p[3]! & 0x20) !== 0;
  return (p[1]! & 0x40) !== 0 && hasAdaptation && p[4]! > 0 && (p[5]! & 0x40) !== 0;
}

/** The PSI section of table `tableId` that the packet starts, whole in it and with a valid CRC, or undefined. */
function section(p: Uint8Array, tableId: number): Uint8Array | undefined {
  const payload = payloadStart(p);
  if (payload === undefined || !(p[1]! & 0x40)) return undefined;
  const at = payload + 1 + p[payload]!; // after the pointer field
  const s = p.subarray(at);
  if (s.length < 12 || s[0] !== tableId || !(s[1]! & 0x80)) return undefined;
  const length = 3 + (((s[1]! & 0x0f) << 8) | s[2]!);
  if (length < 12 || length > s.length) return undefined;
  const whole = s.subarray(0, length);
  return crc32(whole) === 0 ? whole : undefined;
}

/** The video PIDs a PMT section lists. */
function videoPidsOf(pmt: Uint8Array): number[] {
  const out: number[] = [];
  // 8-byte header, PCR PID, program info (length-prefixed), then entries up to the CRC
  let i = 12 + (((pmt[10]! & 0x0f) << 8) | pmt[11]!);
  while (i + 5 <= pmt.length - 4) {
    if (VIDEO_STREAM_TYPES.has(pmt[i]!)) out.push(pid13(pmt, i + 1));
    i += 5 + (((pmt[i + 3]! & 0x0f) << 8) | pmt[i + 4]!);
  }
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32/MPEG-2 (what PSI sections end with): 0 over a section and its CRC when they match. */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = (c << 8) ^ CRC_TABLE[((c >>> 24) ^ x) & 0xff]!;
  return c >>> 0;
}
