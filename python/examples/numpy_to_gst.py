#!/usr/bin/env python3
"""NumPy frames from Python into a GStreamer encoder through xmem: this script sends described frames on a channel,
and gst-launch-1.0 reads them with ``xmemsrc`` (no copy), encodes and writes a file.

    python3 python/examples/numpy_to_gst.py OUTPUT.avi [--count N] [--width W --height H] [--pool NAME]

The pipeline is ``xmemsrc ! videoconvert ! jpegenc ! avimux ! filesink`` (Motion JPEG in AVI: both elements are in
Debian's gstreamer1.0-plugins-good). With gstreamer1.0-plugins-ugly installed, ``--h264`` writes an MP4
(``x264enc ! mp4mux``). The caps come from the frames' descriptions; the end marker ends the file cleanly.
Needs the plugin: ``GST_PLUGIN_PATH=artifacts/gstreamer`` (set here when it exists) — docs/gstreamer.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import struct
import subprocess
import sys

import numpy as np

import xmem

END_CONTENT_TYPE = "application/x-xmem-end"
# The trailer xmemsrc reads back (docs/gstreamer.md): the last 32 bytes of the buffer, after the tensor.
TRAILER = struct.Struct("<IIIIQQ")
TRAILER_MAGIC, TRAILER_PTS, TRAILER_DURATION = 0x54534758, 1, 2
FPS = 30


def frame(i: int, height: int, width: int) -> np.ndarray:
    """A moving gradient with a white square: easy to recognise after lossy compression."""
    y, x = np.mgrid[0:height, 0:width]
    f = np.empty((height, width, 3), np.uint8)
    f[..., 0] = (x * 255 // max(width - 1, 1) + i * 4) % 256
    f[..., 1] = y * 255 // max(height - 1, 1)
    f[..., 2] = 128
    s = (i * 5) % max(width - 32, 1)
    f[height // 2 - 16:height // 2 + 16, s:s + 32] = 255
    return f


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--pool", default="numpy-to-gst-%d" % os.getpid())
    p.add_argument("--h264", action="store_true", help="x264enc ! mp4mux (gstreamer1.0-plugins-ugly)")
    args = p.parse_args(argv)

    encoder = "x264enc ! mp4mux" if args.h264 else "jpegenc ! avimux"
    # Each frame carries its PTS in the trailer (frame i at i/30 s); the caps carry no rate, videorate states it.
    pipeline = ("xmemsrc pool=%s ! videoconvert ! videorate ! video/x-raw,framerate=%d/1 ! "
                "%s ! filesink location=%s" % (args.pool, FPS, encoder, shlex.quote(args.output)))
    env = dict(os.environ)
    plugin_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "artifacts", "gstreamer")
    if "GST_PLUGIN_PATH" not in env and os.path.isdir(plugin_dir):
        env["GST_PLUGIN_PATH"] = os.path.normpath(plugin_dir)

    with xmem.BufferPool(args.pool, 32) as pool, pool.channel("frames", depth=8) as ch:
        gst = subprocess.Popen(["gst-launch-1.0", "-q", "-e"] + shlex.split(pipeline), env=env)
        try:
            for i in range(args.count):
                f = frame(i, args.height, args.width)
                buf = pool.acquire_cpu(f.nbytes + TRAILER.size, shape=f.shape, dtype=f.dtype, seq=i,
                                       content_type="image/rgb8", timeout=30)
                buf.numpy()[:] = f
                pts, duration = i * 10**9 // FPS, (i + 1) * 10**9 // FPS - i * 10**9 // FPS
                buf.memoryview()[-TRAILER.size:] = TRAILER.pack(TRAILER_MAGIC, TRAILER_PTS | TRAILER_DURATION, 0, 0,
                                                                pts, duration)
                ch.send(buf, timeout=30)  # waits while the encoder is behind (depth 8)
            ch.send(pool.acquire_cpu(1, content_type=END_CONTENT_TYPE), timeout=30)
            rc = gst.wait(60)
        finally:
            if gst.poll() is None:
                gst.kill()
                gst.wait()
    print("%d frames -> %s (%d bytes), gst-launch exit %d" % (args.count, args.output,
                                                            os.path.getsize(args.output), rc))
    return rc


if __name__ == "__main__":
    sys.exit(main())
