"""Functions run in child processes (multiprocessing, spawn context) by test_multiprocess.py."""

import os

import numpy as np

import xmem


def pattern(seed, n):
    """The bytes of tests/Xmem.TestChild/Shared/BytePattern.cs: (seed*131 + i*7 + (i >> 9) + 1) mod 256."""
    i = np.arange(n, dtype=np.int64)
    return ((seed * 131 + i * 7 + (i >> 9) + 1) & 0xFF).astype(np.uint8)


def read_and_release(name, index, seed):
    """Gets the buffer read-only, checks the pattern, drops the producer's in-flight reference."""
    with xmem.BufferPool.open(name) as pool:
        with pool.get(index) as buf:
            ok = bool((buf.numpy() == pattern(seed, buf.size)).all())
            size = buf.size
            count_while_held = pool.ref_count(index)
        left = pool.release(index)
    return ok, size, count_while_held, left


def add_refs(name, index, n):
    with xmem.BufferPool.open(name) as pool:
        for _ in range(n):
            pool.add_ref(index)
        return pool.ref_count(index)


def write_with_get_mut(name, index, seed):
    with xmem.BufferPool.open(name) as pool:
        with pool.get_mut(index) as buf:
            buf.numpy()[:] = pattern(seed, buf.size)
            return pool.ref_count(index)


def acquire_and_die(name, ready):
    """Takes a buffer and exits without releasing anything, as a crash would."""
    pool = xmem.BufferPool.open(name)
    buf = pool.acquire_cpu(64)
    ready.put(buf.meta_index)
    ready.close()
    ready.join_thread()  # flush the queue before dying: os._exit skips its feeder thread
    os._exit(3)


def release_later(name, index, delay, started):
    import time
    with xmem.BufferPool.open(name) as pool:
        started.put(os.getpid())
        time.sleep(delay)
        return pool.release(index)


def produce_forgotten(name, size, seed):
    with xmem.BufferPool.open(name) as pool:
        buf = pool.acquire_cpu(size)
        buf.numpy()[:] = pattern(seed, size)
        index = buf.meta_index
        buf.forget()
    return index
