// The video frames of an MPEG-TS byte stream, for the live scenario's timing: each video PES that starts in a
// 188-byte packet and carries a PTS is a frame; the stream is fed piece by piece with the time each piece was
// written, and a frame is timed by the piece that brought its packet's first byte.

export const TS_PACKET = 188;
const SYNC = 0x47;

/** PTS (90 kHz) of the PES header at `buf[at]`, or undefined when it has none. */
function ptsOf(buf, at) {
  if (at + 14 > buf.length || buf[at] !== 0 || buf[at + 1] !== 0 || buf[at + 2] !== 1) return undefined;
  if ((buf[at + 7] & 0x80) === 0) return undefined;
  const p = at + 9;
  return (
    ((buf[p] >> 1) & 0x07) * 2 ** 30 +
    ((buf[p + 1] << 7) | (buf[p + 2] >> 1)) * 2 ** 15 +
    ((buf[p + 3] << 7) | (buf[p + 4] >> 1))
  );
}

/**
 * Finds the video frames of a TS stream: onFrame(pts, offset, t) for each, with the stream offset of the
 * packet that starts it and the time of the piece that brought that packet's first byte. The video PID is
 * the first one whose PES has a video stream id (0xE0-0xEF). A byte where a packet should start that is
 * not the sync byte makes it look for the next one (a stream that does not start on a packet boundary).
 */
export class TsFrames {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.videoPid = undefined;
    this.partial = Buffer.alloc(TS_PACKET);
    this.partialLength = 0;
    this.partialTime = 0;
    this.offset = 0; // stream offset of the next byte pushed
    this.resyncs = 0;
  }

  push(buf, t) {
    let i = 0;
    const start = this.offset;
    this.offset += buf.length;
    if (this.partialLength > 0) {
      const n = Math.min(TS_PACKET - this.partialLength, buf.length);
      buf.copy(this.partial, this.partialLength, 0, n);
      this.partialLength += n;
      i = n;
      if (this.partialLength < TS_PACKET) return;
      this.partialLength = 0;
      this.packet(this.partial, 0, start - (TS_PACKET - n), this.partialTime);
    }
    while (i < buf.length) {
      if (buf[i] !== SYNC) {
        const next = buf.indexOf(SYNC, i);
        this.resyncs++;
        if (next < 0) return;
        i = next;
      }
      if (i + TS_PACKET > buf.length) {
        buf.copy(this.partial, 0, i);
        this.partialLength = buf.length - i;
        this.partialTime = t;
        return;
      }
      this.packet(buf, i, start + i, t);
      i += TS_PACKET;
    }
  }

  packet(buf, at, offset, t) {
    if ((buf[at + 1] & 0x40) === 0) return; // no payload unit starts here
    const pid = ((buf[at + 1] & 0x1f) << 8) | buf[at + 2];
    if (this.videoPid !== undefined && pid !== this.videoPid) return;
    const afc = (buf[at + 3] >> 4) & 0x3;
    if ((afc & 0x1) === 0) return; // no payload
    const payload = at + 4 + (afc & 0x2 ? 1 + buf[at + 4] : 0);
    if (payload + 4 > at + TS_PACKET) return;
    const streamId = buf[payload + 3];
    if (buf[payload] !== 0 || buf[payload + 1] !== 0 || buf[payload + 2] !== 1) return;
    if (streamId < 0xe0 || streamId > 0xef) return;
    this.videoPid ??= pid;
    const pts = ptsOf(buf, payload);
    if (pts !== undefined) this.onFrame(pts, offset, t);
  }
}
