#!/usr/bin/env python3
"""Call costs of two builds of the xmem package in ONE process, interleaved: before/after ratios that a loaded
machine cannot skew (both builds see the same neighbours, caches and CPU frequency at the same moments).

    python3 bench/python/bench_ab.py BEFORE_DIR AFTER_DIR [--iterations 3000] [--rounds 15]

BEFORE_DIR and AFTER_DIR are the ``xmem`` package directories of two installed wheels (for example
``venv/lib/python3.11/site-packages/xmem``). Each is copied under another name (``xmem_before``, ``xmem_after``)
into a temporary directory and imported from there: the package imports itself relatively and loads the
``libxmem.so`` beside it, so the two builds, each with its own NativeAOT runtime, live side by side. Round r runs
every operation of one build, then of the other (the order alternates), for ``--iterations`` calls each; the
figure is the median over rounds of this thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

CLOCK = time.thread_time_ns


def operations(x, tag):
    """The pool, a held guard and the timed loops of package ``x``."""
    pool = x.BufferPool("bench-ab-%s-%d" % (tag, os.getpid()), 64)
    held = pool.acquire_cpu(4096)
    i = held.meta_index
    ch = pool.channel("ab", 8)
    acquire, get, send, recv = pool.acquire_cpu, pool.get, ch.send, ch.recv

    def acquire_release(n):
        for _ in range(n):
            acquire(4096).release()

    def acquire_timeout(n):
        for _ in range(n):
            acquire(4096, timeout=30).release()

    def get_release(n):
        for _ in range(n):
            get(i).release()

    def export_again(n):
        for _ in range(n):
            memoryview(held).release()

    def export_first(n):
        for _ in range(n):
            with acquire(4096) as g:
                memoryview(g).release()

    def send_recv(n):
        for _ in range(n):
            send(acquire(64))
            recv().release()

    def send_iterate(n):
        it = iter(ch)
        for _ in range(n):
            send(acquire(64))
            next(it).release()

    def send_recv_timeout(n):
        for _ in range(n):
            send(acquire(64), timeout=30)
            recv(timeout=30).release()

    ops = [("acquire_cpu(4096) + release()", acquire_release),
           ("acquire_cpu(4096, timeout=30) + release()", acquire_timeout),
           ("get(i) + release()", get_release),
           ("memoryview(guard) + release, again", export_again),
           ("with acquire_cpu(4096): memoryview (first export)", export_first),
           ("acquire_cpu(64) + ch.send + ch.recv + release()", send_recv),
           ("the same, timeout=30 on all three", send_recv_timeout),
           ("acquire_cpu(64) + ch.send + next(iter(ch)) + release()", send_iterate)]

    def close():
        held.release()
        ch.close()
        pool.close()

    return ops, close


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="xmem-ab-")
    try:
        for tag, src in (("before", args.before), ("after", args.after)):
            shutil.copytree(src, os.path.join(tmp, "xmem_" + tag), ignore=shutil.ignore_patterns("__pycache__"))
        sys.path.insert(0, tmp)
        import xmem_after  # noqa: E402
        import xmem_before  # noqa: E402
        builds = {"before": xmem_before, "after": xmem_after}
        for tag, x in builds.items():
            if x.implementation != "compiled":
                print("note: %s runs the %s implementation" % (tag, x.implementation))
        made = {tag: operations(x, tag) for tag, x in builds.items()}
        times = {}
        for r in range(args.rounds):
            for tag in ("before", "after") if r % 2 == 0 else ("after", "before"):
                for name, fn in made[tag][0]:
                    t0 = CLOCK()
                    fn(args.iterations)
                    times.setdefault((name, tag), []).append((CLOCK() - t0) / args.iterations)
        print("load %s; %d rounds of %d calls, medians of this thread's CPU time per call"
              % (" ".join(open("/proc/loadavg").read().split()[:3]), args.rounds, args.iterations))
        print("| operation | before (ns) | after (ns) | after / before |")
        print("|---|---:|---:|---:|")
        for name, _ in made["before"][0]:
            b = statistics.median(times[(name, "before")])
            a = statistics.median(times[(name, "after")])
            print("| %s | %.0f | %.0f | %.2f |" % (name, b, a, a / b))
        for ops, close in made.values():
            close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
