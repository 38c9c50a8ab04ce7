#!/usr/bin/env python3
"""Runs a small PyTorch model on frames received from an xmem channel, without copying them: each buffer's
description (shape, dtype) makes ``torch.from_dlpack(buf)`` a tensor over the shared memory itself.

    python3 python/examples/torch_consumer.py POOL [--channel frames] [--depth 8] [--count N] [--timeout S]

Frames are float32 tensors shaped (3, H, W) (CHW, as a decoder's converted output would be). For each one it prints a
JSON line ``{"seq": n, "output": [...], "zero_copy": true}``: the model's 5 outputs, and whether the tensor's data
pointer is the buffer's (it is: no copy was made). The guard is held exactly as long as the tensor is used; the
output tensor is the model's own memory. ``make_model()`` builds the same model (fixed seed) wherever it is called,
so a test can check the outputs against the same model run on a copy. With the library built but the package not
installed: ``XMEM_LIBRARY=artifacts/native/libxmem.so PYTHONPATH=python``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import torch

import xmem


def make_model() -> torch.nn.Module:
    """A tiny convolutional net with fixed weights (seed 0): (N, 3, H, W) float32 → (N, 5)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, kernel_size=3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    return model.eval()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pool", help="the pool's name")
    p.add_argument("--channel", default="frames", help="channel name (default: frames)")
    p.add_argument("--depth", type=int, default=8, help="the channel's depth, as the producer opened it (default: 8)")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (default: run until closed)")
    p.add_argument("--timeout", type=float, default=None, help="give up when no frame comes for this many seconds")
    args = p.parse_args(argv)

    model = make_model()
    n = 0
    with xmem.BufferPool.open(args.pool) as pool, pool.channel(args.channel, args.depth) as ch:
        print("ready", flush=True)
        while args.count == 0 or n < args.count:
            with ch.recv(timeout=args.timeout) as buf, torch.inference_mode():  # the guard outlives the tensor
                frame = torch.from_dlpack(buf)  # (3, H, W) float32 over the shared memory: no copy
                zero_copy = frame.data_ptr() == buf.cpu_ptr
                out = model(frame.unsqueeze(0))[0]  # a view of frame, then the model's own output
                print(json.dumps({"seq": buf.seq, "output": out.tolist(), "zero_copy": zero_copy}), flush=True)
                del frame  # nothing points into the buffer once the guard is released
            n += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
