#!/usr/bin/env python3
"""Frame handoff between two Python processes: an xmem channel beside multiprocessing.shared_memory + Pipe and
torch.multiprocessing, and the paced send -> recv latency of a channel beside an index through a Pipe.

    python3 bench/python/bench_handoff.py [--runs 5] [--lockstep 200] [--stream 300] [--paced 200] [--gap-ms 1]
                                          [--no-torch] [--xmem-only] [--result-lines]

Follows ../shared/benchmark-protocol.md (the same frame, stamping, checksum and stages as ../shared/peers/py/
peer_shm.py and peer_torch.py, repeated here so that every figure comes from the same run):

  xmem       pool of 4 slots (pre-faulted), queue channel of depth 4. Producer: acquire_cpu(frame, timeout), stamp
             one byte per page through memoryview(buf) (buf.memoryview() without the buffer protocol), seq in the
             first 16 bytes, ch.send(buf). Consumer: ch.recv(), memoryview, checksum, reply, release. Stream: at most
             4 frames in flight because the pool has 4 slots (acquire waits for a release).
  shm_pipe   4 SharedMemory segments created and attached once; (idx, seq, t0) through a multiprocessing Pipe; a
             LIFO free list refilled from the consumer's replies.
  torch      peer_torch.py's "prealloc" mode: 4 uint8 tensors shared once (share_memory_(), the file_descriptor
             strategy), (seq, tensor) through a torch.multiprocessing Queue, stamped with t[128::4096].fill_ and
             checksummed with t[128::4096].sum(); a LIFO free list refilled from the replies.

Replies ({seq, t_recv, t_done}) go back through a multiprocessing Pipe in all three. Producer on CPU 0, consumers on
CPU 1 (spawned, so no pool handle crosses a fork). The peers are measured in interleaved rounds (round r runs every
peer's lockstep and stream before round r+1 starts; round 0 is the warm-up), so that a noisy neighbour hits them alike.

Paced latency: every ``--gap-ms`` the producer sends one message to a consumer that sleeps in the kernel waiting for
it; the latency is the consumer's CLOCK_MONOTONIC after its receive returned minus the producer's just before the
send. xmem: a 64-byte buffer (acquired before the clock starts) through ch.send / ch.recv; pipe: the index alone
(conn.send(int) / conn.recv()). Interleaved rounds too.

Prints RESULT lines (median of the per-run medians, min and max of them over runs) and SUMMARY lines with ratios.
Which xmem implementation runs: XMEM_IMPLEMENTATION (compiled or ctypes).

``--xmem-only`` runs the xmem frame handoff alone (no shm_pipe, torch or paced latency: bench/compare.sh measures
those peers with ../shared/peers/run.sh). ``--result-lines`` also prints xmem's figures as the peers' RESULT lines,
``xmem-python.<implementation>.lockstep.producer.acquire(per-run p50)`` and so on with the peers' stage names, so
that bench/compare.py reads them with the same parser as every peer.
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
HDR = struct.Struct("<QQ")  # seq, reply wanted
now = time.monotonic_ns
HAS_BUFFER_PROTOCOL = xmem.implementation == "compiled" or sys.version_info >= (3, 12)
STAGES = ("acquire", "stamp", "send", "deliver", "checksum", "one_way", "round_trip")
# The same stages as ../shared/peers (benchlib.STAGES), for --result-lines.
PEER_STAGES = ("producer.acquire", "producer.stamp_pages", "producer.send", "deliver(send_done->consumer_has_data)",
               "consumer.checksum", "one_way_total", "round_trip(ack back)")


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


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def open_pool(name):
    deadline = time.monotonic() + 60
    while True:
        try:
            return xmem.BufferPool.open(name)
        except xmem.PoolNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------- consumers


def xmem_consumer(name, conn, spin=0.0):
    pin(1)
    pool = open_pool(name)
    ch = pool.channel("frames", depth=NBUF)
    ch.spin = spin  # --spin-us: the receive spins that long before it sleeps (Channel.spin)
    conn.send("ready")
    while True:
        buf = ch.recv(timeout=120)
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
    conn.send("ready")
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


def torch_consumer(q, conn):
    pin(1)
    import torch
    torch.set_num_threads(1)
    conn.send("ready")
    while True:
        item = q.get()
        if item is None:
            break
        seq, t = item
        t_recv = now()
        cs = int(t[STAMP_OFF::PAGE].sum())
        if cs != (seq & 0xFF) * NPAGES:
            print("torch: checksum mismatch at seq %d" % seq, file=sys.stderr)
            os._exit(3)
        t_done = now()
        conn.send((seq, t_recv, t_done))
        del t, item


def xmem_latency_consumer(name, conn):
    pin(1)
    pool = open_pool(name)
    ch = pool.channel("paced", depth=8)
    conn.send("ready")
    got = []
    while True:
        buf = ch.recv(timeout=120)
        t = now()
        seq = HDR.unpack_from(view(buf), 0)[0]
        buf.release()
        if seq == 0:
            conn.send(got)
            got = []
            continue
        if seq == 1 << 63:
            break
        got.append(t)
    ch.close()
    pool.close()


def pipe_latency_consumer(conn):
    pin(1)
    conn.send("ready")
    got = []
    while True:
        seq = conn.recv()
        t = now()
        if seq == 0:
            conn.send(got)
            got = []
            continue
        if seq < 0:
            break
        got.append(t)


# ---------------------------------------------------------------------------------------------------- frame peers


def lockstep_samples(one, reply, n, seq):
    samples = []
    for _ in range(n):
        seq += 1
        t0, t_acq, t_st, t_sent = one(seq, True)
        rseq, t_recv, t_done = reply()
        t_back = now()
        assert rseq == seq, (rseq, seq)
        samples.append(((t_acq - t0) / 1e3, (t_st - t_acq) / 1e3, (t_sent - t_st) / 1e3, (t_recv - t_sent) / 1e3,
                        (t_done - t_recv) / 1e3, (t_done - t0) / 1e3, (t_back - t0) / 1e3))
    return samples, seq


class XmemFrames:
    name = "xmem." + xmem.implementation

    def __init__(self, spin=0.0):
        self.spin = spin
        if spin:
            self.name = "xmem.%s.spin" % xmem.implementation

    def start(self):
        ctx = get_context("spawn")
        self.pool_name = "bench-handoff-%d%s" % (os.getpid(), "-spin" if self.spin else "")
        self.conn, cconn = ctx.Pipe()
        self.pool = xmem.BufferPool(self.pool_name, NBUF)
        self.ch = self.pool.channel("frames", depth=NBUF)
        bufs = [self.pool.acquire_cpu(FRAME) for _ in range(NBUF)]  # pre-fault every slot
        for b in bufs:
            b.memoryview()[:] = bytes(FRAME)
            b.release()
        self.proc = ctx.Process(target=xmem_consumer, args=(self.pool_name, cconn, self.spin))
        self.proc.start()
        assert self.conn.recv() == "ready"
        self.seq = 0

    def one(self, seq, reply):
        t0 = now()
        buf = self.pool.acquire_cpu(FRAME, 30)
        t_acq = now()
        mv = view(buf)
        stamp(mv, seq)
        HDR.pack_into(mv, 0, seq, 1 if reply else 0)
        mv.release()
        t_st = now()
        self.ch.send(buf)
        return t0, t_acq, t_st, now()

    def lockstep(self, n):
        samples, self.seq = lockstep_samples(self.one, self.conn.recv, n, self.seq)
        return samples

    def stream(self, n):
        t_first = now()
        for k in range(n):
            self.seq += 1
            self.one(self.seq, k == n - 1)  # the pool's 4 slots bound the frames in flight
        rseq, _, t_last = self.conn.recv()
        assert rseq == self.seq
        return n / ((t_last - t_first) / 1e9)

    def stop(self):
        try:
            buf = self.pool.acquire_cpu(16, 30)
            HDR.pack_into(buf.memoryview(), 0, 0, 0)
            self.ch.send(buf)
            self.proc.join(30)
        finally:
            if self.proc.is_alive():
                self.proc.kill()
            self.ch.close()
            self.pool.close()
            xmem.BufferPool.remove(self.pool_name)


class FreeListPeer:
    """A peer whose producer keeps a LIFO free list of 4 buffers, refilled from the consumer's replies."""

    def lockstep(self, n):
        samples, self.seq = lockstep_samples(self.one, self.reply, n, self.seq)
        return samples

    def reply(self):
        r = self.conn.recv()
        self.free.append(self.slot_of.pop(r[0]))
        return r

    def stream(self, n):
        inflight = 0
        t_first = t_last = now()
        for _ in range(n):
            if inflight == NBUF:
                t_last = self.reply()[2]
                inflight -= 1
            self.seq += 1
            self.one(self.seq, True)
            inflight += 1
        while inflight:
            t_last = self.reply()[2]
            inflight -= 1
        return n / ((t_last - t_first) / 1e9)


class ShmPipe(FreeListPeer):
    name = "py.shm_pipe"

    def start(self):
        ctx = get_context("spawn")
        self.conn, cconn = ctx.Pipe()
        self.shms = []
        for _ in range(NBUF):
            s = shared_memory.SharedMemory(create=True, size=FRAME)
            s.buf[:] = bytes(FRAME)
            self.shms.append(s)
        self.proc = ctx.Process(target=shm_consumer, args=([s.name for s in self.shms], cconn))
        self.proc.start()
        assert self.conn.recv() == "ready"
        self.free = list(range(NBUF - 1, -1, -1))
        self.slot_of = {}
        self.seq = 0

    def one(self, seq, reply):
        t0 = now()
        idx = self.free.pop()
        self.slot_of[seq] = idx
        mv = self.shms[idx].buf
        t_acq = now()
        stamp(mv, seq)
        t_st = now()
        self.conn.send((idx, seq, t0))
        return t0, t_acq, t_st, now()

    def stop(self):
        try:
            self.conn.send(None)
            self.proc.join(30)
        finally:
            if self.proc.is_alive():
                self.proc.kill()
            for s in self.shms:
                s.close()
                s.unlink()


class TorchQueue(FreeListPeer):
    name = "torch.prealloc"

    def start(self):
        import torch
        import torch.multiprocessing as tmp
        torch.set_num_threads(1)
        tmp.set_sharing_strategy("file_descriptor")
        self.torch = torch
        ctx = tmp.get_context("spawn")
        self.q = ctx.Queue()
        self.conn, cconn = ctx.Pipe()
        self.tensors = [torch.zeros(FRAME, dtype=torch.uint8).share_memory_() for _ in range(NBUF)]
        self.proc = ctx.Process(target=torch_consumer, args=(self.q, cconn))
        self.proc.start()
        assert self.conn.recv() == "ready"
        self.free = list(range(NBUF - 1, -1, -1))
        self.slot_of = {}
        self.seq = 0

    def one(self, seq, reply):
        t0 = now()
        idx = self.free.pop()
        self.slot_of[seq] = idx
        t = self.tensors[idx]
        t_acq = now()
        t[STAMP_OFF::PAGE].fill_(seq & 0xFF)
        t_st = now()
        self.q.put((seq, t))
        return t0, t_acq, t_st, now()

    def stop(self):
        try:
            self.q.put(None)
            self.proc.join(30)
        finally:
            if self.proc.is_alive():
                self.proc.kill()
            self.q.close()
            self.q.join_thread()


# ---------------------------------------------------------------------------------------------------- latency peers


class XmemPaced:
    name = "xmem.%s.paced" % xmem.implementation

    def start(self):
        ctx = get_context("spawn")
        self.pool_name = "bench-paced-%d" % os.getpid()
        self.conn, cconn = ctx.Pipe()
        self.pool = xmem.BufferPool(self.pool_name, 16)
        self.ch = self.pool.channel("paced", depth=8)
        self.proc = ctx.Process(target=xmem_latency_consumer, args=(self.pool_name, cconn))
        self.proc.start()
        assert self.conn.recv() == "ready"

    def _send(self, seq, stamp_it):
        buf = self.pool.acquire_cpu(64, 30)
        mv = view(buf)
        HDR.pack_into(mv, 0, seq, 0)
        mv.release()
        if not stamp_it:
            self.ch.send(buf)
            return 0
        t0 = now()
        self.ch.send(buf)
        return t0

    def paced(self, n, gap_s):
        sent = []
        for k in range(1, n + 1):
            time.sleep(gap_s)
            sent.append(self._send(k, True))
        self._send(0, False)
        got = self.conn.recv()
        assert len(got) == n
        return [(r - s) / 1e3 for s, r in zip(sent, got)]

    def stop(self):
        try:
            self._send(1 << 63, False)
            self.proc.join(30)
        finally:
            if self.proc.is_alive():
                self.proc.kill()
            self.ch.close()
            self.pool.close()
            xmem.BufferPool.remove(self.pool_name)


class PipePaced:
    name = "py.pipe_index.paced"

    def start(self):
        ctx = get_context("spawn")
        self.conn, cconn = ctx.Pipe()
        self.proc = ctx.Process(target=pipe_latency_consumer, args=(cconn,))
        self.proc.start()
        assert self.conn.recv() == "ready"

    def paced(self, n, gap_s):
        sent = []
        send = self.conn.send
        for k in range(1, n + 1):
            time.sleep(gap_s)
            t0 = now()
            send(k)
            sent.append(t0)
        send(0)
        got = self.conn.recv()
        assert len(got) == n
        return [(r - s) / 1e3 for s, r in zip(sent, got)]

    def stop(self):
        try:
            self.conn.send(-1)
            self.proc.join(30)
        finally:
            if self.proc.is_alive():
                self.proc.kill()


# ---------------------------------------------------------------------------------------------------- report


def result(name, values, unit):
    print("RESULT %-44s median=%-10.4g min=%-10.4g max=%-10.4g unit=%s n=%d"
          % (name, median(values), min(values), max(values), unit, len(values)), flush=True)


def peer_result_lines(prefix, runs, fps):
    """xmem's figures as the peers' RESULT lines (the peers' stage names and median: pct(v, 0.5))."""
    for k, stage in enumerate(PEER_STAGES):
        meds = [median([s[k] for s in run]) for run in runs]
        print("RESULT %-44s median=%-12.4g min=%-12.4g max=%-12.4g unit=us n=%d"
              % ("%s.lockstep.%s(per-run p50)" % (prefix, stage), pct(meds, 0.5), min(meds), max(meds), len(meds)))
    print("RESULT %-44s median=%-12.4g min=%-12.4g max=%-12.4g unit=frames/s n=%d"
          % (prefix + ".stream.frames_per_s", pct(fps, 0.5), min(fps), max(fps), len(fps)))
    usf = [1e6 / f for f in fps]
    print("RESULT %-44s median=%-12.4g min=%-12.4g max=%-12.4g unit=us n=%d"
          % (prefix + ".stream.us_per_frame", pct(usf, 0.5), min(usf), max(usf), len(usf)), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--lockstep", type=int, default=200, help="frames per lockstep run")
    p.add_argument("--stream", type=int, default=300, help="frames per stream run")
    p.add_argument("--paced", type=int, default=200, help="messages per paced-latency run")
    p.add_argument("--gap-ms", type=float, default=1.0, help="pause before each paced message")
    p.add_argument("--no-torch", action="store_true", help="leave torch.multiprocessing out")
    p.add_argument("--xmem-only", action="store_true", help="the xmem frame handoff alone (no peers, no paced)")
    p.add_argument("--spin-us", type=float, default=0.0,
                   help="also run xmem with the consumer's receive spinning this long before it sleeps (Channel.spin)")
    p.add_argument("--result-lines", action="store_true",
                   help="also print xmem's figures as the peers' RESULT lines (xmem-python.<implementation>.*)")
    args = p.parse_args(argv)
    print("# bench_handoff.py: python %s, xmem %s (%s implementation), %d CPUs, load %s, runs=%d"
          % (sys.version.split()[0], xmem.__version__, xmem.implementation, os.cpu_count() or 0,
             " ".join("%.2f" % x for x in os.getloadavg()), args.runs), flush=True)

    peers = [XmemFrames()] if args.xmem_only else [XmemFrames(), ShmPipe()]
    if args.spin_us:
        peers.insert(1, XmemFrames(args.spin_us * 1e-6))
    if not args.no_torch and not args.xmem_only:
        try:
            import torch  # noqa: F401
            peers.append(TorchQueue())
        except ImportError:
            print("SKIP torch: not importable here (Debian: apt-get install python3-torch)")
    paced = [] if args.xmem_only else [XmemPaced(), PipePaced()]
    started = []
    try:
        for peer in peers + paced:
            peer.start()
            started.append(peer)
        pin(0)
        stages = {peer.name: [] for peer in peers}
        fps = {peer.name: [] for peer in peers}
        lat = {peer.name: [] for peer in paced}
        lat_p90 = {peer.name: [] for peer in paced}
        for r in range(args.runs + 1):  # round 0 warms up
            for peer in peers:
                samples = peer.lockstep(16 if r == 0 else args.lockstep)
                f = peer.stream(50 if r == 0 else args.stream)
                if r:
                    stages[peer.name].append(samples)
                    fps[peer.name].append(f)
            for peer in paced:
                v = peer.paced(20 if r == 0 else args.paced, args.gap_ms / 1e3)
                if r:
                    lat[peer.name].append(median(v))
                    lat_p90[peer.name].append(pct(v, 0.9))
    finally:
        for peer in reversed(started):
            peer.stop()

    out = {}
    for peer in peers:
        o = out[peer.name] = {}
        for k, stage in enumerate(STAGES):
            meds = [median([s[k] for s in run]) for run in stages[peer.name]]
            o[stage] = median(meds)
            result("%s.lockstep.%s" % (peer.name, stage), meds, "us")
        o["fps"] = median(fps[peer.name])
        result(peer.name + ".stream.frames_per_s", fps[peer.name], "frames/s")
    for peer in paced:
        out[peer.name] = {"p50": median(lat[peer.name]), "p90": median(lat_p90[peer.name])}
        result(peer.name + ".latency_p50", lat[peer.name], "us")
        result(peer.name + ".latency_p90", lat_p90[peer.name], "us")
    if args.result_lines:
        xmem_peer = peers[0]
        peer_result_lines("xmem-python." + xmem.implementation, stages[xmem_peer.name], fps[xmem_peer.name])

    mine = [p for p in peers if isinstance(p, XmemFrames)]  # xmem, and xmem spinning with --spin-us
    for me in mine:
        x = out[me.name]
        for other in (p for p in peers if not isinstance(p, XmemFrames)):
            s = out[other.name]
            print("SUMMARY %s/%s: one-way %.2fx (%.1f vs %.1f us), round trip %.2fx, stream %.2fx (%.0f vs %.0f "
                  "frames/s)" % (me.name, other.name, x["one_way"] / s["one_way"], x["one_way"], s["one_way"],
                                 x["round_trip"] / s["round_trip"], x["fps"] / s["fps"], x["fps"], s["fps"]))
    if not paced:
        return 0
    a, b = out[paced[0].name], out[paced[1].name]
    print("SUMMARY %s/%s: latency p50 %.2fx (%.1f vs %.1f us), p90 %.2fx (%.1f vs %.1f us)"
          % (paced[0].name, paced[1].name, a["p50"] / b["p50"], a["p50"], b["p50"], a["p90"] / b["p90"], a["p90"],
             b["p90"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
