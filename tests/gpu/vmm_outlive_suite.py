"""xmem on a real GPU: a CUDA buffer outlives its producer (docs/cuda.md, "Buffers that outlive their producer").

Run by scripts/gpu-test.sh after cuda_ipc_suite.py. NOT YET RUN ON HARDWARE: the VMM path was verified only against
the stand-in driver (tests/cuda-standin). What it checks, in real processes:

1. a producer process fills a buffer with a kernel (PyTorch), records its writes and hands the buffer over
   (forget: the reference stays in flight), the consumer (this process) takes it with get() and checks every byte;
2. the producer is SIGKILLed while the consumer holds the buffer (guard and DLPack tensor);
3. the consumer checks every byte again, on the GPU, through its own VMM handle and mapping, and copies it;
4. a process that starts after the producer died cannot open the buffer, and is told the exporter exited;
5. the consumer lets go; the slot's references go back to 0.

Exit status: 0 passed (or skipped: the device reports no VMM with POSIX file descriptors, so xmem uses IPC, which
cannot do this), 1 a check failed, 2 no usable GPU.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
from typing import Any, Dict, List

import torch
import xmem

MIB = 1 << 20
SIZE = 5 * MIB + 17


def pattern(n: int, seed: int) -> "torch.Tensor":
    i = torch.arange(n, device="cuda", dtype=torch.int64)
    return ((i * 7 + seed * 131 + (i >> 9) + 1) & 0xFF).to(torch.uint8)


def device_supports_vmm_fds(ordinal: int) -> bool:
    """Attributes 102 (VMM) and 103 (POSIX fd handles) from the driver itself."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    dev, v102, v103 = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), ordinal) != 0:
        return False
    if not hasattr(cuda, "cuDeviceGetAttribute"):
        return False
    ok = cuda.cuDeviceGetAttribute(ctypes.byref(v102), 102, dev) == 0 and cuda.cuDeviceGetAttribute(ctypes.byref(v103), 103, dev) == 0
    return ok and v102.value == 1 and v103.value == 1


def producer_main(pool_name: str) -> int:
    torch.cuda.init()
    pool = xmem.BufferPool.open(pool_name)
    g = pool.acquire_cuda(SIZE, 0)
    torch.as_tensor(g, device="cuda").copy_(pattern(SIZE, 7))  # a kernel writes the buffer
    g.record_writes_done(torch.cuda.current_stream().cuda_stream)
    idx = g.meta_index
    g.forget()  # the reference stays in flight for the consumer
    print(json.dumps({"index": idx}), flush=True)
    sys.stdin.readline()  # wait to be killed
    return 0


def late_main(pool_name: str, idx: int) -> int:
    torch.cuda.init()
    pool = xmem.BufferPool.open(pool_name)
    try:
        g = pool.get(idx)
        g.release()
        print(json.dumps({"opened": True}), flush=True)
    except xmem.XmemError as e:
        print(json.dumps({"opened": False, "error": "%s: %s" % (type(e).__name__, e)}), flush=True)
    pool.close()
    return 0


def main() -> int:
    if not torch.cuda.is_available():
        print("SKIP  torch sees no CUDA device")
        return 2
    if os.environ.get("XMEM_CUDA_VMM") == "0" or not device_supports_vmm_fds(0):
        print("SKIP  device 0 reports no VMM with POSIX file descriptors (or XMEM_CUDA_VMM=0): xmem uses CUDA IPC there")
        return 0
    torch.cuda.init()
    failures: List[str] = []

    def check(ok: bool, what: str) -> None:
        print(("PASS  " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            failures.append(what)

    name = "xmem-gpu-vmm-%d" % os.getpid()
    pool = xmem.BufferPool(name, capacity=4)
    me = os.path.abspath(__file__)
    producer = subprocess.Popen([sys.executable, me, "producer", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert producer.stdout
        line = producer.stdout.readline()
        if not line:
            check(False, "the producer handed a buffer over (it exited %s)" % producer.poll())
            return 1
        idx = json.loads(line)["index"]
        g = pool.get(idx)  # imports the VMM allocation by file descriptor; waits for the producer's writes
        t = torch.from_dlpack(g)
        check(bool(torch.equal(t, pattern(SIZE, 7))), "consumer reads every byte the producer's kernel wrote")

        producer.send_signal(signal.SIGKILL)
        producer.wait(timeout=60)
        check(producer.returncode == -signal.SIGKILL, "the producer was SIGKILLed while the consumer holds the buffer")

        torch.cuda.synchronize()
        check(bool(torch.equal(t, pattern(SIZE, 7))), "after the producer died, the consumer still reads every byte (kernel compare)")
        copy = t.clone()
        torch.cuda.synchronize()
        check(bool(torch.equal(copy, pattern(SIZE, 7))), "after the producer died, the consumer copies every byte")

        late = subprocess.run([sys.executable, me, "late", name, str(idx)], stdout=subprocess.PIPE, text=True, timeout=120)
        r: Dict[str, Any] = json.loads(late.stdout.strip().splitlines()[-1]) if late.stdout.strip() else {}
        check(r.get("opened") is False and "has exited" in r.get("error", ""),
              "a process started after the producer died cannot open the buffer and is told why (%s)" % r.get("error", r))

        del t
        g.release()
        check(pool.release(idx) == 0, "the in-flight reference goes back: the slot is free")
        check(pool.trim() >= 0, "trim")
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=60)
        pool.close()
        xmem.BufferPool.remove(name)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all VMM checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "producer":
        sys.exit(producer_main(sys.argv[2]))
    if len(sys.argv) > 3 and sys.argv[1] == "late":
        sys.exit(late_main(sys.argv[2], int(sys.argv[3])))
    sys.exit(main())
