#!/usr/bin/env python3
"""Receives frames from an xmem channel as NumPy arrays: no shape or dtype agreed out of band, each buffer's
description says what it is.

    python3 python/examples/consumer.py POOL [--channel frames] [--depth 64] [--fanout] [--count N] [--timeout S]

prints one line per frame (sequence number, shape, dtype, content type, handoff latency) and a summary. With the
library built but the package not installed: ``XMEM_LIBRARY=artifacts/native/libxmem.so PYTHONPATH=python``.

``--demo`` speaks the consumer protocol of ``xmem demo --python`` (docs/cli.md): it prints ``ready`` once it can
receive, checks every frame byte for byte against the demo's pattern, stops at the end-of-stream buffer (content type
``application/x-xmem-end``), on ``stop`` from stdin, or when stdin closes (the producer died), and ends with
``result {json}``. The demo starts it as ``python3 -u consumer.py --demo POOL --channel frames --depth N [--fanout]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np

import xmem

END_CONTENT_TYPE = "application/x-xmem-end"
POLL_S = 0.1


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pool", nargs="?", help="the pool's name")
    p.add_argument("--demo", metavar="POOL", help="run as a consumer of `xmem demo --python`")
    p.add_argument("--channel", default="frames", help="channel name (default: frames)")
    p.add_argument("--depth", type=int, default=64, help="the channel's depth, as the producer opened it (default: 64)")
    p.add_argument("--fanout", action="store_true", help="the channel is a fan-out channel: subscribe to it")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (default: until the end buffer)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds without a frame")
    args = p.parse_args(argv)
    if args.demo:
        return demo(args.demo, args.channel, args.depth, args.fanout)
    if not args.pool:
        p.error("give the pool's name (or --demo POOL)")
    return watch(args.pool, args.channel, args.depth, args.fanout, args.count, args.timeout)


def watch(pool_name: str, channel: str, depth: int, fanout: bool, count: int, timeout: Optional[float]) -> int:
    """Prints what arrives until the end buffer, `count` frames, or `timeout` seconds without one."""
    latencies: List[int] = []
    with xmem.BufferPool.open(pool_name) as pool, pool.channel(channel, depth, "fanout" if fanout else "queue") as ch:
        source: Any = ch.subscribe() if fanout else ch
        try:
            while not count or len(latencies) < count:
                try:
                    buf = source.recv(timeout=timeout)
                except TimeoutError:
                    print("no frame for %g s; stopping" % timeout)
                    break
                received = time.monotonic_ns()
                with buf:
                    if buf.content_type == END_CONTENT_TYPE:
                        break
                    frame = buf.numpy()  # the description's shape and dtype, zero-copy, read-only
                    latency = received - buf.timestamp_ns
                    latencies.append(latency)
                    print("seq %-8d %-18s %-8s %-22s %8.1f us  mean %.4g" % (
                        buf.seq, frame.shape, frame.dtype, buf.content_type or "-", latency / 1e3,
                        float(frame.mean()) if frame.size else 0.0))
        finally:
            if fanout:
                source.close()
    if latencies:
        lat = np.array(latencies) / 1e3
        print("%d frames; handoff latency us: median %.1f, p99 %.1f, max %.1f"
              % (len(lat), np.median(lat), np.percentile(lat, 99), lat.max()))
    return 0


# ---------------------------------------------------------------------------------------------------- xmem demo

_STEP = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_bases: Dict[int, np.ndarray] = {}


def _seed(seq: int) -> int:
    """SplitMix64 of the sequence number (src/Xmem.Cli/Demo/FramePattern.cs)."""
    z = (seq + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def find_mismatch(frame: np.ndarray, seq: int) -> int:
    """-1 when every byte of `frame` (uint8, 1-D) is the demo's pattern for `seq`, else the first bad offset.
    Little-endian 64-bit word j of the pattern is seed(seq) + j * STEP (mod 2**64)."""
    n = frame.size
    words = n // 8 + (1 if n % 8 else 0)
    base = _bases.get(words)
    if base is None:
        with np.errstate(over="ignore"):
            base = np.arange(words, dtype=np.uint64) * np.uint64(_STEP)
        _bases.clear()
        _bases[words] = base
    with np.errstate(over="ignore"):
        expected = (base + np.uint64(_seed(seq))).astype("<u8").view(np.uint8)[:n]
    if np.array_equal(frame, expected):
        return -1
    return int(np.argmax(frame != expected))


class _Lifeline:
    """Reads stdin on a thread: "stop" (or SIGINT/SIGTERM) stops after the frame in hand; end of file without it
    means the producer died."""

    def __init__(self) -> None:
        self.stopped = False
        self.producer_died = False
        threading.Thread(target=self._read, daemon=True).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, *_: Any) -> None:
        self.stopped = True

    def _read(self) -> None:
        try:
            for line in sys.stdin:
                if line.strip() == "stop":
                    self.stopped = True
                    return
        except (OSError, ValueError):
            pass
        if not self.stopped:
            self.producer_died = True
            self.stopped = True


def demo(pool_name: str, channel: str, depth: int, fanout: bool) -> int:
    lifeline = _Lifeline()
    report: Optional[Dict[str, Any]] = None
    with xmem.BufferPool.open(pool_name) as pool, pool.channel(channel, depth, "fanout" if fanout else "queue") as ch:
        source: Any = ch.subscribe() if fanout else ch
        try:
            print("ready", flush=True)
            report = _consume(source, lifeline)
        finally:
            if fanout:
                source.close()
    if report is None:
        return 1 if lifeline.producer_died else 0
    print("result " + json.dumps(report, separators=(",", ":")), flush=True)
    if report["mismatchSeq"] is not None:
        print("consumer.py: frame %d differs from its pattern at byte %d." % (report["mismatchSeq"], report["mismatchOffset"]),
              file=sys.stderr)
        return 1
    return 0 if report["error"] is None else 1


def _consume(source: Any, lifeline: _Lifeline) -> Optional[Dict[str, Any]]:
    seqs: List[int] = []
    latencies: List[int] = []
    dones: List[int] = []
    checked = 0
    view: Optional[str] = None

    def report(mismatch_seq: Optional[int] = None, offset: Optional[int] = None, error: Optional[str] = None) -> Dict[str, Any]:
        return {"runtime": "python", "view": view, "seqs": seqs, "latencyNs": latencies, "doneNs": dones,
                "bytesChecked": checked, "mismatchSeq": mismatch_seq, "mismatchOffset": offset, "error": error}

    while not lifeline.stopped:
        buf = source.try_recv(POLL_S)
        if buf is None:
            continue
        received = time.monotonic_ns()
        with buf:
            d = buf.description
            if d is None:
                return report(error="slot %d arrived without a description" % buf.meta_index)
            if d.content_type == END_CONTENT_TYPE:
                return report()
            if d.dtype is None:
                return report(error="frame %d is not described as a tensor" % d.seq)
            frame = buf.numpy()  # shaped by the description, zero-copy
            if view is None:
                view = "numpy %s %s" % (frame.shape, frame.dtype)
            seqs.append(d.seq)
            latencies.append(received - d.timestamp_ns)
            flat = np.frombuffer(buf.memoryview(), dtype=np.uint8, count=frame.nbytes)
            bad = find_mismatch(flat, d.seq)
            if bad >= 0:
                dones.append(time.monotonic_ns())
                return report(d.seq, bad)
            checked += frame.nbytes
        dones.append(time.monotonic_ns())  # checked and released
    return None


if __name__ == "__main__":
    sys.exit(main())
