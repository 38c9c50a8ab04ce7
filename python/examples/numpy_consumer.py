#!/usr/bin/env python3
"""Computes per-channel statistics of frames received from an xmem channel with NumPy only, from asyncio, without
copying them: ``buf.numpy()`` is an array over the shared memory, shaped and typed by the buffer's description.

    python3 python/examples/numpy_consumer.py POOL [--channel frames] [--depth 8] [--count N] [--timeout S]

Frames are (H, W, C) images of any dtype (uint8 RGB from a decoder, say). For each one it prints a JSON line
``{"seq": n, "shape": [...], "mean": [...], "max": [...], "zero_copy": true}`` (``zero_copy``: the array's memory is
the buffer's). Receiving is ``async for buf in channel``: the event loop stays free for other work while it waits
(here a heartbeat counts its ticks and reports them at the end, ``{"ticks": n}``). With the library built but the
package not installed: ``XMEM_LIBRARY=artifacts/native/libxmem.so PYTHONPATH=python``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Dict, List, Optional

import numpy as np

import xmem


def frame_stats(image: np.ndarray) -> Dict[str, Any]:
    """Mean and maximum of each channel of an (H, W, C) image, in float64 (the same function a test runs on a copy)."""
    flat = image.reshape(-1, image.shape[-1])
    return {"mean": flat.mean(axis=0, dtype=np.float64).tolist(), "max": flat.max(axis=0).astype(np.float64).tolist()}


async def consume(ch: xmem.Channel, count: int) -> int:
    n = 0
    async for buf in ch:  # ends when the channel or its pool is closed
        with buf:  # the guard outlives every view of it
            image = buf.numpy()
            line = {"seq": buf.seq, "shape": list(image.shape), **frame_stats(image),
                    "zero_copy": image.ctypes.data == buf.cpu_ptr}
            del image
        print(json.dumps(line), flush=True)
        n += 1
        if n == count:
            break
    return n


async def heartbeat(ticks: List[int]) -> None:
    while True:
        await asyncio.sleep(0.01)
        ticks[0] += 1


async def run(args: argparse.Namespace) -> None:
    with xmem.BufferPool.open(args.pool) as pool, pool.channel(args.channel, args.depth) as ch:
        ticks = [0]
        beat = asyncio.ensure_future(heartbeat(ticks))
        print("ready", flush=True)
        try:
            await asyncio.wait_for(consume(ch, args.count), args.timeout)
        finally:
            beat.cancel()
        print(json.dumps({"ticks": ticks[0]}), flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pool", help="the pool's name")
    p.add_argument("--channel", default="frames", help="channel name (default: frames)")
    p.add_argument("--depth", type=int, default=8, help="the channel's depth, as the producer opened it (default: 8)")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (default: run until closed)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds in all")
    asyncio.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
