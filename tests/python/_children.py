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


# ---------------------------------------------------------------------------------------------------- channels


def channel_producer(name, channel, producer_id, count, depth):
    """Sends `count` described buffers; seq = producer_id << 32 | i, first byte = i mod 256."""
    with xmem.BufferPool.open(name) as pool, pool.channel(channel, depth) as ch:
        for i in range(count):
            buf = pool.acquire_cpu(shape=(4,), dtype="uint16", seq=(producer_id << 32) | i, content_type="test/seq",
                                   timeout=30)
            buf.numpy()[:] = i & 0xFFFF
            ch.send(buf, timeout=30)
    return count


def channel_consumer(name, channel, depth, results):
    """Receives until a buffer with content type "stop"; puts the list of seqs it got (checked against the data)."""
    seqs = []
    with xmem.BufferPool.open(name) as pool, pool.channel(channel, depth) as ch:
        for buf in ch:
            with buf:
                if buf.content_type == "stop":
                    break
                a = buf.numpy()
                assert a.shape == (4,) and a.dtype == np.uint16 and (a == (buf.seq & 0xFFFFFFFF) & 0xFFFF).all()
                seqs.append(buf.seq)
    results.put(seqs)


def fanout_subscriber(name, channel, count, ready, results):
    """Subscribes to a fan-out channel, signals `ready`, receives `count` buffers; puts their (seq, first value)."""
    with xmem.BufferPool.open(name) as pool, pool.channel(channel, 8, mode="fanout") as ch, ch.subscribe() as sub:
        ready.put(os.getpid())
        got = []
        for _ in range(count):
            with sub.recv(timeout=30) as buf:
                got.append((buf.seq, int(buf.numpy()[0])))
    results.put(got)


def blocked_receiver(name, channel):
    """Blocks in recv() for ever; Ctrl-C (SIGINT) must end it with KeyboardInterrupt (exit code 42)."""
    import signal
    import sys
    # A process started with SIGINT ignored (a background job, a CI runner) inherits that, and Python then leaves it
    # ignored: install Python's own handler, as an interactive session has it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with xmem.BufferPool.open(name) as pool, pool.channel(channel, 4) as ch:
        print("receiving", flush=True)
        try:
            ch.recv()
        except KeyboardInterrupt:
            sys.exit(42)
    sys.exit(1)
