#!/usr/bin/env python3
"""A GStreamer pipeline feeding NumPy frames to Python through xmem: gst-launch-1.0 decodes (or generates) video
and writes it with ``xmemsink`` into a pool this script created; the script receives each frame as a zero-copy
``(height, width, 3)`` array described by the buffer itself.

    python3 python/examples/gst_to_numpy.py [--file VIDEO] [--count N] [--width W --height H] [--pool NAME]

Without ``--file`` the source is ``videotestsrc``. Prints one line per frame (seq, shape, mean, PTS) and a summary.
Needs the plugin: ``GST_PLUGIN_PATH=artifacts/gstreamer`` (set here when it exists) — docs/gstreamer.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import struct
import subprocess
import sys
import time

import xmem

END_CONTENT_TYPE = "application/x-xmem-end"
TRAILER = struct.Struct("<IIIIQQ")  # the xmemsink trailer: magic, flags, buffer flags, 0, pts, duration


def pts_of(buf: xmem.BufferGuard) -> float:
    magic, flags, _, _, pts, _ = TRAILER.unpack(bytes(buf.memoryview()[-TRAILER.size:]))
    return pts / 1e9 if magic == 0x54534758 and flags & 1 else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", help="a video file to decode (filesrc ! decodebin); default: videotestsrc")
    p.add_argument("--count", type=int, default=30, help="frames of videotestsrc (default 30)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--pool", default="gst-to-numpy-%d" % os.getpid())
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    args = p.parse_args(argv)

    if args.file:
        source = "filesrc location=%s ! decodebin ! videoconvert ! videoscale" % shlex.quote(args.file)
    else:
        source = "videotestsrc num-buffers=%d pattern=ball" % args.count
    pipeline = "%s ! video/x-raw,format=RGB,width=%d,height=%d ! xmemsink pool=%s sync=false" % (
        source, args.width, args.height, args.pool)
    env = dict(os.environ)
    plugin_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "artifacts", "gstreamer")
    if "GST_PLUGIN_PATH" not in env and os.path.isdir(plugin_dir):
        env["GST_PLUGIN_PATH"] = os.path.normpath(plugin_dir)

    frames, total = 0, 0.0
    start = time.monotonic()
    with xmem.BufferPool(args.pool, 32) as pool, pool.channel("frames", depth=8) as ch:
        gst = subprocess.Popen(["gst-launch-1.0", "-q"] + shlex.split(pipeline), env=env)
        try:
            while True:
                buf = ch.try_recv(timeout=0.5)
                if buf is None:
                    if gst.poll() is not None and len(ch) == 0:
                        print("gst-launch-1.0 ended (exit %d) before the end of the stream" % gst.returncode,
                              file=sys.stderr)
                        return 1
                    continue
                with buf:
                    if buf.content_type == END_CONTENT_TYPE:
                        break
                    image = buf.numpy()  # (height, width, 3) uint8, zero-copy, the real row stride
                    frames += 1
                    total += float(image.mean())
                    if not args.quiet:
                        print("seq %d  %s %s  mean %.1f  pts %.3f s  %s" % (buf.seq, image.shape, image.dtype,
                                                                          image.mean(), pts_of(buf), buf.content_type))
        finally:
            if gst.wait(30) != 0:
                return 1
    elapsed = time.monotonic() - start
    print("frames %d  mean %.2f  %.1f frames/s" % (frames, total / max(frames, 1), frames / elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
