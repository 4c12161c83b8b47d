#!/bin/sh
# Remakes demo-live.mpegts, the clip docker-compose.yml's seeder broadcasts in a loop as
# demo-live: 10 s of ffmpeg's test pattern (480x270, 25 fps, H.264 about 260 kbit/s, a
# key frame a second), video only so that the loop's seam decodes without a word
# (an AAC track's last frame overlaps the next loop's first). Its bitrate, 8 x bytes / 10,
# is the seeder's DS_LIVE_BITRATE.
set -eu
cd "$(dirname "$0")"
ffmpeg -v error -nostdin -y -f lavfi -i "testsrc=size=480x270:rate=25:duration=10" \
  -c:v libx264 -preset medium -b:v 300k -maxrate 400k -bufsize 400k \
  -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p -f mpegts demo-live.mpegts
echo "demo-live.mpegts: $(wc -c <demo-live.mpegts) bytes, $(($(wc -c <demo-live.mpegts) * 8 / 10)) bit/s"
