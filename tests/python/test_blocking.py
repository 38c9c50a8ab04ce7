"""acquire_cpu(size, timeout=...): waits for a release by any thread or process, without holding the GIL."""

import math
import threading
import time

import pytest

import xmem


def test_timeout_zero_and_short_timeouts_raise_timeout_error(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        held = pool.acquire_cpu(8)
        for timeout in (0, 0.05):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError) as e:
                pool.acquire_cpu(8, timeout=timeout)
            assert isinstance(e.value, xmem.XmemTimeoutError)
            assert time.monotonic() - t0 < timeout + 2
            assert "capacity" in str(e.value)
        held.release()


def test_timeout_longer_than_a_slice_still_times_out(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        held = pool.acquire_cpu(8)
        t0 = time.monotonic()
        with pytest.raises(xmem.XmemTimeoutError, match="0.35 s"):
            pool.acquire_cpu(8, timeout=0.35)
        assert 0.3 <= time.monotonic() - t0 < 3
        held.release()


def test_a_free_slot_is_taken_at_once_with_a_timeout(pool):
    with pool.acquire_cpu(8, timeout=math.inf) as buf:
        assert buf.size == 8


def test_negative_or_nan_timeout_is_a_value_error(pool):
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError):
            pool.acquire_cpu(8, timeout=bad)


def test_waiter_wakes_when_another_thread_releases_and_the_gil_is_free_meanwhile(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        held = pool.acquire_cpu(8)
        got = {}

        def waiter():
            t0 = time.monotonic()
            with pool.acquire_cpu(8, timeout=20) as buf:
                got["after"] = time.monotonic() - t0
                got["index"] = buf.meta_index

        th = threading.Thread(target=waiter)
        th.start()
        # While the waiter blocks in native code this thread keeps running Python: the GIL is released.
        spins = 0
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            spins += 1
        assert spins > 10000
        assert "after" not in got
        held.release()
        th.join(20)
        assert not th.is_alive()
        assert 0.25 <= got["after"] < 10
        assert pool.ref_count(got["index"]) == 0


def test_infinite_wait_is_woken_by_a_release(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        held = pool.acquire_cpu(8)
        timer = threading.Timer(0.2, held.release)
        timer.start()
        with pool.acquire_cpu(8, timeout=math.inf):
            pass
        timer.join()


def test_ctrl_c_interrupts_an_infinite_wait(unique_name):
    import _thread
    with xmem.BufferPool(unique_name(), 1) as pool:
        held = pool.acquire_cpu(8)
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            pool.acquire_cpu(8, timeout=math.inf)
        assert time.monotonic() - t0 < 5
        timer.join()
        held.release()
        assert pool.ref_count(0) == 0
