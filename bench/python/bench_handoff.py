#!/usr/bin/env python3
"""Frame handoff between two Python processes: an xmem channel beside multiprocessing.shared_memory + Pipe.

    python3 bench/python/bench_handoff.py [--runs 5] [--lockstep 200] [--stream 300]

Follows ../shared/benchmark-protocol.md (the same frame, stamping, checksum and stages as ../shared/peers/py/
peer_shm.py, whose shm_pipe mode is repeated here so that both come from the same run):

  xmem       pool of 4 slots (pre-faulted), queue channel of depth 4. Producer: acquire_cpu(frame, timeout), stamp
             one byte per page through memoryview(buf) (buf.memoryview() without the buffer protocol), seq and t0 in
             the first 16 bytes, ch.send(buf). Consumer: ch.recv(), memoryview, checksum, reply, release. Stream: at
             most 4 frames in flight because the pool has 4 slots (acquire waits for a release).
  shm_pipe   4 SharedMemory segments created and attached once; (idx, seq, t0) through a multiprocessing Pipe;
             a LIFO free list refilled from the consumer's replies.

Replies ({seq, t_recv, t_done}) go back through a multiprocessing Pipe in both. Producer on CPU 0, consumer on CPU 1
(spawned, so no pool handle crosses a fork). Prints RESULT lines (per-run medians, min and max over runs) and a
summary of xmem / shm_pipe ratios. Which xmem implementation runs: XMEM_IMPLEMENTATION (compiled or ctypes).
"""

import argparse
import os
import struct
import sys
import time
from multiprocessing import get_context, shared_memory

import xmem

FRAME = 1920 * 1080 * 3
PAGE = 4096
STAMP_OFF = 128
NPAGES = len(range(STAMP_OFF, FRAME, PAGE))
NBUF = 4
HDR = struct.Struct("<QQ")  # seq, t0
now = time.monotonic_ns
HAS_BUFFER_PROTOCOL = xmem.implementation == "compiled" or sys.version_info >= (3, 12)


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


def stamp(mv, seq):
    mv[STAMP_OFF::PAGE] = bytes((seq & 0xFF,)) * NPAGES


def checksum(mv):
    return sum(mv[STAMP_OFF::PAGE])


def view(buf):
    return memoryview(buf) if HAS_BUFFER_PROTOCOL else buf.memoryview()


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


# ---------------------------------------------------------------------------------------------------- consumers


def xmem_consumer(name, conn):
    pin(1)
    pool = None
    while pool is None:
        try:
            pool = xmem.BufferPool.open(name)
        except xmem.PoolNotFoundError:
            time.sleep(0.01)
    ch = pool.channel("frames", depth=NBUF)
    conn.send("ready")
    while True:
        buf = ch.recv(timeout=60)
        t_recv = now()
        mv = view(buf)
        seq, reply = HDR.unpack_from(mv, 0)
        if seq == 0:
            mv.release()
            buf.release()
            break
        cs = checksum(mv)
        if cs != (seq & 0xFF) * NPAGES:
            print("xmem: checksum mismatch at seq %d" % seq, file=sys.stderr)
            os._exit(3)
        t_done = now()
        mv.release()
        buf.release()
        if reply:
            conn.send((seq, t_recv, t_done))
    ch.close()
    pool.close()


def shm_consumer(names, conn):
    pin(1)
    shms = [shared_memory.SharedMemory(name=n) for n in names]
    views = [s.buf for s in shms]
    while True:
        msg = conn.recv()
        if msg is None:
            break
        idx, seq, t0 = msg
        mv = views[idx]
        t_recv = now()
        cs = checksum(mv)
        if cs != (seq & 0xFF) * NPAGES:
            print("shm_pipe: checksum mismatch at seq %d" % seq, file=sys.stderr)
            os._exit(3)
        t_done = now()
        conn.send((seq, t_recv, t_done))
    del views, mv
    for s in shms:
        s.close()


# ---------------------------------------------------------------------------------------------------- producers

STAGES = ("acquire", "stamp", "send", "deliver", "checksum", "one_way", "round_trip")


def run_xmem(runs, lockstep, stream):
    ctx = get_context("spawn")
    name = "bench-handoff-%d" % os.getpid()
    pconn, cconn = ctx.Pipe()
    pool = xmem.BufferPool(name, NBUF)
    ch = pool.channel("frames", depth=NBUF)
    # Pre-fault every slot: acquire all, touch every page, release.
    bufs = [pool.acquire_cpu(FRAME) for _ in range(NBUF)]
    for b in bufs:
        b.memoryview()[:] = bytes(FRAME)
        b.release()
    proc = ctx.Process(target=xmem_consumer, args=(name, cconn))
    proc.start()
    assert pconn.recv() == "ready"
    pin(0)
    acquire = pool.acquire_cpu
    send = ch.send

    def one(seq, reply):
        t0 = now()
        buf = acquire(FRAME, 30)
        t_acq = now()
        mv = view(buf)
        stamp(mv, seq)
        HDR.pack_into(mv, 0, seq, 1 if reply else 0)
        mv.release()
        t_st = now()
        send(buf)
        return t0, t_acq, t_st, now()

    per_run, fps = [], []
    seq = 0
    try:
        for r in range(runs + 1):
            samples = []
            for _ in range(16 if r == 0 else lockstep):
                seq += 1
                t0, t_acq, t_st, t_sent = one(seq, True)
                rseq, t_recv, t_done = pconn.recv()
                t_back = now()
                assert rseq == seq
                samples.append(((t_acq - t0) / 1e3, (t_st - t_acq) / 1e3, (t_sent - t_st) / 1e3,
                                (t_recv - t_sent) / 1e3, (t_done - t_recv) / 1e3, (t_done - t0) / 1e3,
                                (t_back - t0) / 1e3))
            if r:
                per_run.append(samples)
        for r in range(runs + 1):
            t_first = now()
            for k in range(stream):
                seq += 1
                one(seq, k == stream - 1)  # the pool's 4 slots bound the frames in flight
            rseq, _, t_last = pconn.recv()
            assert rseq == seq
            if r:
                fps.append(stream / ((t_last - t_first) / 1e9))
        buf = acquire(16, 30)
        HDR.pack_into(buf.memoryview(), 0, 0, 0)
        send(buf)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
        ch.close()
        pool.close()
        xmem.BufferPool.remove(name)
    return per_run, fps


def run_shm_pipe(runs, lockstep, stream):
    ctx = get_context("spawn")
    pconn, cconn = ctx.Pipe()
    pool = []
    for _ in range(NBUF):
        s = shared_memory.SharedMemory(create=True, size=FRAME)
        s.buf[:] = bytes(FRAME)
        pool.append(s)
    proc = ctx.Process(target=shm_consumer, args=([s.name for s in pool], cconn))
    proc.start()
    pin(0)
    free = list(range(NBUF - 1, -1, -1))
    slot_of = {}

    def one(seq):
        t0 = now()
        idx = free.pop()
        slot_of[seq] = idx
        mv = pool[idx].buf
        t_acq = now()
        stamp(mv, seq)
        t_st = now()
        pconn.send((idx, seq, t0))
        return t0, t_acq, t_st, now()

    def reply():
        r = pconn.recv()
        free.append(slot_of.pop(r[0]))
        return r

    per_run, fps = [], []
    seq = 0
    try:
        for r in range(runs + 1):
            samples = []
            for _ in range(16 if r == 0 else lockstep):
                seq += 1
                t0, t_acq, t_st, t_sent = one(seq)
                rseq, t_recv, t_done = reply()
                t_back = now()
                samples.append(((t_acq - t0) / 1e3, (t_st - t_acq) / 1e3, (t_sent - t_st) / 1e3,
                                (t_recv - t_sent) / 1e3, (t_done - t_recv) / 1e3, (t_done - t0) / 1e3,
                                (t_back - t0) / 1e3))
            if r:
                per_run.append(samples)
        for r in range(runs + 1):
            inflight = 0
            t_first = t_last = now()
            for _ in range(stream):
                if inflight == NBUF:
                    t_last = reply()[2]
                    inflight -= 1
                seq += 1
                one(seq)
                inflight += 1
            while inflight:
                t_last = reply()[2]
                inflight -= 1
            if r:
                fps.append(stream / ((t_last - t_first) / 1e9))
        pconn.send(None)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
        for s in pool:
            s.close()
            s.unlink()
    return per_run, fps


def report(prefix, per_run, fps):
    out = {}
    for k, stage in enumerate(STAGES):
        meds = [median([s[k] for s in run]) for run in per_run]
        out[stage] = median(meds)
        print("RESULT %-40s median=%-10.4g min=%-10.4g max=%-10.4g unit=us n=%d"
              % ("%s.lockstep.%s" % (prefix, stage), median(meds), min(meds), max(meds), len(meds)))
    out["fps"] = median(fps)
    print("RESULT %-40s median=%-10.4g min=%-10.4g max=%-10.4g unit=frames/s n=%d"
          % (prefix + ".stream.frames_per_s", median(fps), min(fps), max(fps), len(fps)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--lockstep", type=int, default=200, help="frames per lockstep run")
    p.add_argument("--stream", type=int, default=300, help="frames per stream run")
    args = p.parse_args(argv)
    print("# bench_handoff.py: python %s, xmem %s (%s implementation), %d CPUs, load %s, runs=%d"
          % (sys.version.split()[0], xmem.__version__, xmem.implementation, os.cpu_count() or 0,
             " ".join("%.2f" % x for x in os.getloadavg()), args.runs))
    x = report("xmem." + xmem.implementation, *run_xmem(args.runs, args.lockstep, args.stream))
    s = report("py.shm_pipe", *run_shm_pipe(args.runs, args.lockstep, args.stream))
    print("SUMMARY xmem(%s)/shm_pipe: one-way %.2fx (%.1f vs %.1f us), round trip %.2fx, stream %.2fx (%.0f vs %.0f "
          "frames/s)" % (xmem.implementation, x["one_way"] / s["one_way"], x["one_way"], s["one_way"],
                         x["round_trip"] / s["round_trip"], x["fps"] / s["fps"], x["fps"], s["fps"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
