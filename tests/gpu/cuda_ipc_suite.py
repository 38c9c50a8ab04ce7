#!/usr/bin/env python3
"""xmem CUDA suite for a machine with an NVIDIA GPU, PyTorch and (optionally) CuPy. Run by scripts/gpu-test.sh.

Two real processes share CUDA device buffers through an xmem pool:

* the producer (this process) acquires device memory with xmem, fills it with torch kernels, records its writes
  and hands the meta index to the consumer;
* the consumer (a child started with ``consumer`` as argv[1], driven over a pipe) ``get``s the index, wraps the
  device pointer with ``__cuda_array_interface__`` (torch.as_tensor / cupy.asarray) and checks every byte on the GPU.

It checks counts across processes, recycling (same slot and device pointer for a fitting acquire), copies across
kinds when the Python package offers them, and reports timings: acquire, first get (opens the IPC handle), cached
get, and a 64 MiB device-to-device handoff. Exit status 0 only when every check passed.
"""

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import torch
import xmem

MIB = 1 << 20
HANDOFF_BYTES = 64 * MIB


class CudaView:
    """A device range as ``__cuda_array_interface__`` (version 3), so CuPy and Numba wrap it without a copy.

    PyTorch refuses any interface whose read-only flag is True ("the read only flag is not supported"), so the suite
    never hands PyTorch a read-only one: see :func:`as_tensor`."""

    def __init__(self, ptr: int, size: int, read_only: bool) -> None:
        self.__cuda_array_interface__ = {
            "shape": (size,),
            "typestr": "|u1",
            "data": (ptr, read_only),
            "version": 3,
            "strides": None,
            "stream": None,  # ordering is xmem's interprocess event, not the consumer's stream
        }


def as_tensor(guard: Any, writable: bool) -> "torch.Tensor":
    """The guard's bytes as a CUDA uint8 tensor, the way docs/cuda.md tells PyTorch users: DLPack
    (``torch.from_dlpack``, read-only flag in a versioned capsule) for reading, the package's own
    ``__cuda_array_interface__`` (writable for ``get_mut``/``acquire_cuda`` guards) for writing."""
    if writable:
        _ = guard.cuda_ptr_mut  # refuses a read-only guard
        return torch.as_tensor(guard, device="cuda").view(torch.uint8).reshape(-1)[: guard.size]
    return torch.from_dlpack(guard).view(torch.uint8).reshape(-1)[: guard.size]


def pattern(n: int, seed: int) -> "torch.Tensor":
    """The expected bytes, computed on the GPU: (i * 131 + seed) mod 251, never constant over a page."""
    return ((torch.arange(n, dtype=torch.int64, device="cuda") * 131 + seed) % 251).to(torch.uint8)


def record_writes(guard: Any) -> None:
    """Orders the consumer after our kernels: xmem's interprocess event when the package has it, else a full sync."""
    if hasattr(guard, "record_writes_done"):
        guard.record_writes_done(torch.cuda.current_stream().cuda_stream)
    else:
        torch.cuda.current_stream().synchronize()


# ---------------------------------------------------------------------------------------------------- consumer

def consumer_main(pool_name: str) -> int:
    torch.cuda.init()
    pool = xmem.BufferPool.open(pool_name)
    out = sys.stdout
    for line in sys.stdin:
        cmd = json.loads(line)
        reply: Dict[str, Any] = {"ok": True}
        try:
            op = cmd["op"]
            if op == "check":
                t0 = time.perf_counter_ns()
                g = pool.get(cmd["index"])
                t1 = time.perf_counter_ns()
                g2 = pool.get(cmd["index"])  # second get: cached mapping
                t2 = time.perf_counter_ns()
                g2.release()
                t = as_tensor(g, writable=False)
                good = bool(torch.equal(t, pattern(cmd["size"], cmd["seed"])))
                torch.cuda.synchronize()
                t3 = time.monotonic_ns()
                reply.update(equal=good, size=g.size, get_ns=t1 - t0, cached_get_ns=t2 - t1, done_monotonic_ns=t3,
                             ref_count=pool.ref_count(cmd["index"]))
                if cmd.get("copy_out"):
                    dst = torch.empty(g.size, dtype=torch.uint8, device="cuda")
                    c0 = time.perf_counter_ns()
                    dst.copy_(t)
                    torch.cuda.synchronize()
                    reply["copy_ns"] = time.perf_counter_ns() - c0
                g.release()
                if cmd.get("release_in_flight"):
                    reply["count_after_release"] = pool.release(cmd["index"])
            elif op == "cupy":
                import cupy  # optional
                g = pool.get(cmd["index"])
                a = cupy.asarray(CudaView(g.cuda_ptr, g.size, True))
                exp = cupy.asarray(pattern(cmd["size"], cmd["seed"]))
                reply["equal"] = bool((a == exp).all())
                g.release()
            elif op == "write":
                g = pool.get_mut(cmd["index"])
                as_tensor(g, writable=True).copy_(pattern(g.size, cmd["seed"]))
                record_writes(g)
                g.release()
            elif op == "quit":
                out.write(json.dumps(reply) + "\n")
                out.flush()
                break
        except Exception as e:  # report, keep serving
            reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    pool.close()
    return 0


# ---------------------------------------------------------------------------------------------------- producer

class Consumer:
    def __init__(self, pool_name: str) -> None:
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "consumer", pool_name],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd: Any) -> Dict[str, Any]:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("consumer died (exit %s)" % self.p.poll())
        return json.loads(line)

    def close(self) -> None:
        try:
            self.ask(op="quit")
        finally:
            self.p.wait(timeout=60)


class Results:
    def __init__(self) -> None:
        self.failures: List[str] = []
        self.timings: Dict[str, float] = {}

    def check(self, ok: bool, what: str) -> None:
        print(("PASS  " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            self.failures.append(what)


def median_us(samples: List[int]) -> float:
    s = sorted(samples)
    return s[len(s) // 2] / 1000.0


def producer_main() -> int:
    if not torch.cuda.is_available():
        print("SKIP  torch sees no CUDA device")
        return 2
    torch.cuda.init()
    res = Results()
    name = "xmem-gpu-%d" % os.getpid()
    pool = xmem.BufferPool(name, capacity=16)
    consumer = Consumer(name)
    try:
        # 1. One buffer, filled by a kernel here, checked byte for byte by the consumer.
        size = 3 * MIB + 123
        g = pool.acquire_cuda(size, 0)
        idx = g.meta_index
        ptr = g.cuda_ptr
        as_tensor(g, writable=True).copy_(pattern(size, 7))
        record_writes(g)
        g.forget()  # count 1 stays in flight for the consumer
        r = consumer.ask(op="check", index=idx, size=size, seed=7, release_in_flight=True)
        res.check(r.get("ok") and r.get("equal"), "consumer reads every byte the producer wrote (%s)" % r.get("error", ""))
        res.check(r.get("ref_count") == 2, "count seen by the consumer while it holds a get: 2 (in flight + its guard)")
        res.check(r.get("count_after_release") == 0, "consumer's release of the in-flight reference frees the slot")
        res.check(pool.ref_count(idx) == 0, "producer sees count 0")

        # 2. Recycling: a fitting acquire on the same device gets the same slot and allocation.
        t0 = time.perf_counter_ns()
        g = pool.acquire_cuda(4 * MIB, 0)
        acquire_reuse_ns = time.perf_counter_ns() - t0
        res.check(g.meta_index == idx and g.cuda_ptr == ptr, "recycled slot keeps its allocation (same index and pointer)")
        g.release()
        t0 = time.perf_counter_ns()
        g = pool.acquire_cuda(5 * MIB, 0)
        acquire_new_ns = time.perf_counter_ns() - t0
        res.check(g.meta_index != idx, "a larger acquire does not squeeze into the 4 MiB allocation")
        g.release()
        res.timings["acquire_reused_us"] = acquire_reuse_ns / 1000.0
        res.timings["acquire_new_allocation_us"] = acquire_new_ns / 1000.0

        # 3. The consumer writes (get_mut), the producer reads.
        g = pool.acquire_cuda(MIB, 0)
        idx2 = g.meta_index
        r = consumer.ask(op="write", index=idx2, seed=99)
        res.check(r.get("ok", False), "consumer writes through get_mut (%s)" % r.get("error", ""))
        view = pool.get(idx2)
        res.check(bool(torch.equal(as_tensor(view, False), pattern(MIB, 99))), "producer reads the consumer's writes")
        view.release()
        g.release()

        # 4. CuPy, when present.
        try:
            import cupy  # noqa: F401
            g = pool.acquire_cuda(MIB, 0)
            as_tensor(g, True).copy_(pattern(MIB, 3))
            record_writes(g)
            i3 = g.meta_index
            g.forget()
            r = consumer.ask(op="cupy", index=i3, size=MIB, seed=3)
            res.check(r.get("ok") and r.get("equal"), "CuPy wraps the same memory (%s)" % r.get("error", ""))
            pool.release(i3)
        except ImportError:
            print("SKIP  CuPy not installed")

        # 5. Copies across kinds (when the package exposes them).
        g = pool.acquire_cuda(MIB, 0)
        as_tensor(g, True).copy_(pattern(MIB, 5))
        record_writes(g)
        if hasattr(g, "copy_to_cpu"):
            c = g.copy_to_cpu()
            host = torch.frombuffer(bytearray(c.memoryview()), dtype=torch.uint8)
            res.check(bool(torch.equal(host, pattern(MIB, 5).cpu())), "copy_to_cpu carries every byte")
            d = c.copy_to_cuda(0)
            res.check(bool(torch.equal(as_tensor(d, False), pattern(MIB, 5))), "copy_to_cuda carries every byte")
            if torch.cuda.device_count() > 1:
                p = d.copy_to_device(1)
                with torch.cuda.device(1):
                    res.check(bool(torch.equal(as_tensor(p, False).to("cuda:0"), pattern(MIB, 5))), "copy to device 1")
                p.release()
            d.release()
            c.release()
        else:
            print("SKIP  copies across kinds: the Python package has no copy_to_cpu/copy_to_cuda yet")
        g.release()

        # 6. Timings: first get, cached get, 64 MiB device-to-device handoff (producer kernel → consumer copy).
        gets, cached, handoff, copies = [], [], [], []
        src = pattern(HANDOFF_BYTES, 11)
        for i in range(10):
            g = pool.acquire_cuda(HANDOFF_BYTES, 0)
            idx4 = g.meta_index
            t_start = time.monotonic_ns()
            as_tensor(g, True).copy_(src)
            record_writes(g)
            g.forget()
            r = consumer.ask(op="check", index=idx4, size=HANDOFF_BYTES, seed=11, copy_out=True, release_in_flight=True)
            if not (r.get("ok") and r.get("equal")):
                res.check(False, "64 MiB handoff %d (%s)" % (i, r.get("error", "bytes differ")))
                break
            gets.append(r["get_ns"])
            cached.append(r["cached_get_ns"])
            copies.append(r["copy_ns"])
            handoff.append(r["done_monotonic_ns"] - t_start)
        else:
            res.check(True, "10 handoffs of 64 MiB checked byte for byte")
        if gets:
            res.timings["first_get_us"] = gets[0] / 1000.0  # the only get that opened the IPC handle
            res.timings["get_after_first_us_median"] = median_us(gets[1:] or gets)
            res.timings["cached_get_us_median"] = median_us(cached)
            res.timings["consumer_64MiB_dtod_copy_us_median"] = median_us(copies)
            res.timings["handoff_64MiB_write_to_checked_us_median"] = median_us(handoff)

        res.check(pool.trim() >= 0, "trim")
    finally:
        consumer.close()
        pool.close()
        xmem.BufferPool.remove(name)

    print(json.dumps({"device": torch.cuda.get_device_name(0), "timings": res.timings}, indent=2))
    if res.failures:
        print("%d check(s) failed" % len(res.failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "consumer":
        sys.exit(consumer_main(sys.argv[2]))
    sys.exit(producer_main())
