#!/usr/bin/env python3
"""Frames/s and handoff latency of GStreamer video into a Python consumer process (docs/gstreamer.md):

* xmem:   gst-launch-1.0 ``videotestsrc ! video/x-raw,... ! xmemsink`` (upstream writes into xmem buffers, zero
          copy) -> this process receives each frame as a numpy array from the channel.
* appsink: the hand-written way: a Python process runs ``videotestsrc ! ... ! appsink``, pulls each sample, copies it
          into one of 8 ``multiprocessing.shared_memory`` blocks and sends the block's number over a Pipe; this
          process maps the block as a numpy array and hands the block back (backpressure), as the xmem channel does.

Latency: from the moment the frame reached the sink (xmemsink's description timestamp, taken as it sends; the
appsink process's clock right after pull_sample) to the consumer having the array, CLOCK_MONOTONIC in both
processes. The consumer reads one byte of each frame. Needs PyGObject (python3-gi, gir1.2-gst-plugins-base-1.0) for
the appsink side and the plugin (artifacts/gstreamer).

    artifacts/venv-python/bin/python bench/python/bench_gstreamer.py [--frames 300] [--width 1280 --height 720] [--runs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shlex
import statistics
import subprocess
import sys
import time
from multiprocessing import shared_memory

import numpy as np

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SLOTS = 8


def source(frames: int, w: int, h: int) -> str:
    return "videotestsrc num-buffers=%d ! video/x-raw,format=RGB,width=%d,height=%d,framerate=30/1" % (frames, w, h)


def run_xmem(frames: int, w: int, h: int):
    import xmem
    env = dict(os.environ, GST_PLUGIN_PATH=os.path.join(REPO, "artifacts", "gstreamer"))
    name = "bench-gst-%d" % os.getpid()
    lat = []
    with xmem.BufferPool(name, 32) as pool, pool.channel("frames", depth=SLOTS) as ch:
        gst = subprocess.Popen(["gst-launch-1.0", "-q"] + shlex.split(source(frames, w, h) +
                                                                     " ! xmemsink sync=false pool=" + name), env=env)
        first = None
        for _ in range(frames):
            with ch.recv(timeout=60) as buf:
                a = buf.numpy()
                _ = a[0, 0, 0]
                now = time.monotonic_ns()
                lat.append(now - buf.timestamp_ns)
                first = first or now
        last = time.monotonic_ns()
        with ch.recv(timeout=60):
            pass  # the end marker
        gst.wait(60)
    return (frames - 1) / ((last - first) / 1e9), lat


def _appsink_producer(frames, w, h, names, conn):
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    Gst.init(None)
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    pipeline = Gst.parse_launch(source(frames, w, h) + " ! appsink name=s sync=false max-buffers=8")
    sink = pipeline.get_by_name("s")
    pipeline.set_state(Gst.State.PLAYING)
    free = list(range(SLOTS))
    for _ in range(frames):
        sample = sink.emit("pull-sample")
        t = time.monotonic_ns()
        while not free:
            free.append(conn.recv())
        slot = free.pop()
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        blocks[slot].buf[:info.size] = info.data  # the copy
        buf.unmap(info)
        conn.send((slot, t))
        while conn.poll():
            free.append(conn.recv())
    conn.send(None)
    pipeline.set_state(Gst.State.NULL)
    for b in blocks:
        b.close()


def run_appsink(frames: int, w: int, h: int):
    size = w * h * 3
    blocks = [shared_memory.SharedMemory(create=True, size=size) for _ in range(SLOTS)]
    try:
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        p = ctx.Process(target=_appsink_producer, args=(frames, w, h, [b.name for b in blocks], there))
        p.start()
        lat, first = [], None
        views = [np.ndarray((h, w, 3), np.uint8, b.buf) for b in blocks]
        while True:
            msg = here.recv()
            if msg is None:
                break
            slot, t = msg
            a = views[slot]
            _ = a[0, 0, 0]
            now = time.monotonic_ns()
            lat.append(now - t)
            first = first or now
            here.send(slot)
        last = time.monotonic_ns()
        p.join(60)
        del views, a
    finally:
        for b in blocks:
            b.close()
            b.unlink()
    return (len(lat) - 1) / ((last - first) / 1e9), lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    print("%dx%d RGB (%d bytes), %d frames, load average %s" % (args.width, args.height, args.width * args.height * 3,
                                                                args.frames, " ".join(open("/proc/loadavg").read().split()[:3])))
    for run in range(args.runs):
        for label, fn in (("xmemsink", run_xmem), ("appsink+shared_memory", run_appsink)):
            fps, lat = fn(args.frames, args.width, args.height)
            lat = sorted(lat[len(lat) // 10:])
            print("run %d  %-22s %7.1f frames/s   latency median %7.1f us  p99 %8.1f us" % (
                run + 1, label, fps, statistics.median(lat) / 1e3, lat[int(len(lat) * 0.99) - 1] / 1e3))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
