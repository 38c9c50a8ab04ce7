"""Channels: send moves a reference, receive takes it out exactly once, across threads and processes; timeouts,
fan-out, iteration, interruption, and descriptions travelling with the buffers (C# <-> Python too)."""

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import xmem
from conftest import locate_testchild

np = pytest.importorskip("numpy", reason="numpy is not installed (the tests check arrays with it)")

import _children  # noqa: E402

CTX = multiprocessing.get_context("spawn")
TIMEOUT = 60


# ---------------------------------------------------------------------------------------------------- one process


def test_send_moves_the_reference_and_recv_takes_it_out_once(pool):
    with pool.channel("c", 4) as ch:
        assert (ch.name, ch.depth, ch.mode, len(ch)) == ("c", 4, "queue", 0)
        buf = pool.acquire_cpu(16)
        i = buf.meta_index
        buf.numpy()[:] = 7
        ch.send(buf)
        assert not buf.is_valid  # spent
        with pytest.raises(xmem.GuardInvalidError):
            ch.send(buf)
        assert pool.ref_count(i) == 1 and len(ch) == 1  # owned by the channel now
        with ch.recv() as got:
            assert got.meta_index == i and got.is_read_only
            assert (got.numpy() == 7).all()
            assert pool.ref_count(i) == 1
        assert pool.ref_count(i) == 0 and len(ch) == 0


def test_writable_receive(pool):
    with pool.channel("c", 2) as ch:
        ch.send(pool.acquire_cpu(8))
        with ch.recv(writable=True) as buf:
            assert not buf.is_read_only
            buf.numpy()[:] = 1


def test_messages_come_out_in_order(pool):
    with pool.channel("c", 8) as ch:
        for k in range(5):
            ch.send(pool.acquire_cpu(8, seq=k))
        assert [ch.recv(0).seq for _ in range(5)] == list(range(5))


def test_empty_channel_times_out_with_timeout_error(pool):
    with pool.channel("c", 2) as ch:
        for timeout in (0, 0.05, 0.25):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError) as e:
                ch.recv(timeout=timeout)
            assert isinstance(e.value, xmem.XmemTimeoutError)
            assert timeout <= time.monotonic() - t0 < timeout + 3
        assert ch.try_recv() is None
        assert ch.try_recv(0.05) is None


def test_full_channel_send_times_out_and_the_guard_stays_yours(pool):
    with pool.channel("c", 1) as ch:
        ch.send(pool.acquire_cpu(8))
        buf = pool.acquire_cpu(8)
        with pytest.raises(TimeoutError, match="still yours"):
            ch.send(buf, timeout=0.05)
        assert buf.is_valid and pool.ref_count(buf.meta_index) == 1
        assert ch.try_send(buf) is False and buf.is_valid
        ch.recv().release()
        assert ch.try_send(buf) is True and not buf.is_valid
        ch.recv().release()
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_bad_arguments_are_value_errors(pool):
    for name in ("", "a/b", ".hidden", "x" * 49):
        with pytest.raises(ValueError):
            pool.channel(name, 4)
    for depth in (0, 3, 1 << 17):
        with pytest.raises(ValueError):
            pool.channel("c", depth)
    with pytest.raises(ValueError):
        pool.channel("c", 4, mode="broadcast")
    with pool.channel("c", 4) as ch:
        with pytest.raises(ValueError):
            ch.recv(timeout=-1)
        with pytest.raises(TypeError):
            ch.send(b"bytes")
        with pytest.raises(ValueError):
            ch.subscribe()  # a queue has no subscribers


def test_spin_is_a_number_of_seconds_from_0_to_1(pool):
    with pool.channel("c", 4) as ch:
        assert ch.spin == 0.0  # sleeps at once by default
        ch.spin = 200e-6
        assert ch.spin == pytest.approx(200e-6)
        ch.spin = 0
        assert ch.spin == 0.0
        for bad in (-1e-9, 1.5, math.nan, math.inf):
            with pytest.raises(ValueError):
                ch.spin = bad
        for bad in ("0.1", None, True):
            with pytest.raises(TypeError):
                ch.spin = bad
        assert ch.spin == 0.0  # a refused value changed nothing
    with pytest.raises(xmem.XmemError):
        ch.spin = 0.001  # the handle is closed


def test_a_spinning_receive_gets_what_another_process_sends(unique_name):
    with xmem.BufferPool(unique_name("spin"), 4) as pool, pool.channel("s", 4) as ch:
        ch.spin = 0.05  # longer than the producer's pause: the receive is spinning when the buffer comes
        producer = CTX.Process(target=_children.channel_producer, args=(pool.name, "s", 7, 3, 4))
        producer.start()
        try:
            got = []
            for _ in range(3):
                with ch.recv(timeout=TIMEOUT) as buf:
                    got.append((buf.seq & 0xFFFFFFFF, int(buf.numpy()[0])))
            assert got == [(0, 0), (1, 1), (2, 2)]
        finally:
            producer.join(TIMEOUT)
        assert producer.exitcode == 0
        assert [pool.ref_count(i) for i in range(4)] == [0, 0, 0, 0]


def test_a_buffer_of_another_pool_object_is_refused(pool):
    other = xmem.BufferPool.open(pool.name)
    try:
        with pool.channel("c", 2) as ch:
            buf = other.acquire_cpu(8)
            with pytest.raises(ValueError, match="another BufferPool"):
                ch.send(buf)
            assert buf.is_valid
            buf.release()
    finally:
        other.close()


def test_closed_channel_and_closed_pool(unique_name):
    pool = xmem.BufferPool(unique_name(), 4)
    ch = pool.channel("c", 2)
    ch.close()
    ch.close()
    with pytest.raises(xmem.PoolClosedError, match="closed"):
        ch.recv(0)
    ch2 = pool.channel("c", 2)
    ch2.send(pool.acquire_cpu(8))
    pool.close()
    with pytest.raises(xmem.PoolClosedError):
        ch2.recv(0)
    ch2.close()


def test_iteration_ends_when_the_channel_is_closed_from_another_thread(pool):
    ch = pool.channel("c", 4)
    for k in range(3):
        ch.send(pool.acquire_cpu(8, seq=k))
    threading.Timer(0.3, ch.close).start()
    seen = []
    t0 = time.monotonic()
    for buf in ch:
        with buf:
            seen.append(buf.seq)
    assert seen == [0, 1, 2] and time.monotonic() - t0 < 10


def test_iteration_of_a_subscription_ends_when_it_or_the_pool_is_closed(unique_name):
    pool = xmem.BufferPool(unique_name(), 8)
    fan = pool.channel("f", 4, mode="fanout")
    sub = fan.subscribe()
    for k in range(2):
        fan.send(pool.acquire_cpu(8, seq=k))
    threading.Timer(0.3, sub.close).start()
    seen = []
    for buf in sub:
        with buf:
            seen.append(buf.seq)
    assert seen == [0, 1] and sub.closed
    assert list(sub) == []  # a closed subscription's iteration ends at once
    sub2 = fan.subscribe()
    fan.send(pool.acquire_cpu(8, seq=7))
    it = iter(sub2)
    with next(it) as buf:
        assert buf.seq == 7
    threading.Timer(0.3, pool.close).start()
    assert list(it) == []  # the pool's close wakes the wait and ends it
    assert next(iter(fan), None) is None  # (list(fan) would ask len(fan), which a closed pool refuses)
    sub2.close()
    fan.close()


def test_blocked_recv_leaves_the_gil_free_and_wakes_on_send(pool):
    with pool.channel("c", 2) as ch:
        got = {}

        def receiver():
            t0 = time.monotonic()
            with ch.recv(timeout=20) as buf:
                got["after"] = time.monotonic() - t0
                got["seq"] = buf.seq

        th = threading.Thread(target=receiver)
        th.start()
        spins, deadline = 0, time.monotonic() + 0.3
        while time.monotonic() < deadline:
            spins += 1
        assert spins > 10000 and "after" not in got
        ch.send(pool.acquire_cpu(8, seq=99))
        th.join(20)
        assert not th.is_alive() and got["seq"] == 99 and got["after"] >= 0.25


def test_ctrl_c_interrupts_a_blocked_recv(pool):
    import _thread
    # Python's own Ctrl-C handler, even where this process was started with SIGINT ignored (a background job, a CI
    # runner): interrupt_main() does nothing for an ignored signal, and the recv below would then never end.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pool.channel("c", 2) as ch:
            timer = threading.Timer(0.3, _thread.interrupt_main)
            timer.start()
            t0 = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                ch.recv()
            assert time.monotonic() - t0 < 5
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_interrupts_a_blocked_recv_in_another_process(pool):
    here = os.path.dirname(os.path.abspath(__file__))
    code = "import sys; sys.path.insert(0, %r); import _children; _children.blocked_receiver(%r, 'c')" % (here, pool.name)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "receiving"
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        assert p.wait(TIMEOUT) == 42
    finally:
        if p.poll() is None:  # pragma: no cover
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------------------------------- processes


def test_exactly_once_across_processes(unique_name):
    producers, consumers, per_producer, depth = 2, 2, 150, 4
    with xmem.BufferPool(unique_name(), 16) as pool, pool.channel("q", depth) as ch:
        results = CTX.Queue()
        cons = [CTX.Process(target=_children.channel_consumer, args=(pool.name, "q", depth, results))
                for _ in range(consumers)]
        for c in cons:
            c.start()
        with CTX.Pool(producers) as procs:
            sent = procs.starmap_async(_children.channel_producer,
                                       [(pool.name, "q", pid + 1, per_producer, depth) for pid in range(producers)])
            assert sent.get(TIMEOUT) == [per_producer] * producers
        for _ in range(consumers):
            ch.send(pool.acquire_cpu(8, content_type="stop", timeout=30), timeout=30)
        got = [results.get(timeout=TIMEOUT) for _ in range(consumers)]
        for c in cons:
            c.join(TIMEOUT)
            assert c.exitcode == 0
        every = sorted(s for g in got for s in g)
        assert every == sorted((pid + 1) << 32 | i for pid in range(producers) for i in range(per_producer))
        for g in got:  # each producer's messages reach each consumer in the order they were sent
            for pid in range(producers):
                mine = [s for s in g if s >> 32 == pid + 1]
                assert mine == sorted(mine)
        assert len(ch) == 0
        assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_fanout_every_subscriber_in_other_processes_gets_every_buffer(unique_name):
    subscribers, count = 2, 10
    with xmem.BufferPool(unique_name(), 16) as pool, pool.channel("f", 8, mode="fanout") as ch:
        ready, results = CTX.Queue(), CTX.Queue()
        subs = [CTX.Process(target=_children.fanout_subscriber, args=(pool.name, "f", count, ready, results))
                for _ in range(subscribers)]
        for s in subs:
            s.start()
        for _ in range(subscribers):
            ready.get(timeout=TIMEOUT)
        with pytest.raises(ValueError, match="subscri"):
            ch.recv(0)
        for k in range(count):
            buf = pool.acquire_cpu(8, seq=k, timeout=30)
            buf.numpy()[:] = k + 1
            ch.send(buf, timeout=30)
        got = [results.get(timeout=TIMEOUT) for _ in range(subscribers)]
        for s in subs:
            s.join(TIMEOUT)
            assert s.exitcode == 0
        assert got == [[(k, k + 1) for k in range(count)]] * subscribers
        assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_fanout_in_one_process_and_leaving_releases_what_waits(pool):
    with pool.channel("f", 4, mode="fanout") as ch:
        assert ch.mode == "fanout"
        lonely = pool.acquire_cpu(8)
        i = lonely.meta_index
        ch.send(lonely)  # nobody subscribed: the buffer goes back
        assert pool.ref_count(i) == 0
        a, b = ch.subscribe(), ch.subscribe()
        buf = pool.acquire_cpu(8, seq=5)
        i = buf.meta_index
        ch.send(buf)
        assert pool.ref_count(i) == 2  # one reference per subscriber
        with a.recv(0) as got:
            assert got.seq == 5 and got.meta_index == i
        b.close()  # releases what still waited for b
        assert pool.ref_count(i) == 0
        with pytest.raises(xmem.PoolClosedError):
            b.recv(0)
        assert a.try_recv() is None
        a.close()


# ---------------------------------------------------------------------------------------------------- C# <-> Python


@pytest.fixture(scope="module")
def child_cmd():
    dll = locate_testchild()
    if dll is None or not os.path.isfile(dll):
        pytest.fail("the C# test child is not built; run `dotnet build tests/Xmem.TestChild -c Release` "
                    "(scripts/test-python.sh does) or set XMEM_TESTCHILD_DLL.")
    return ["dotnet", dll]


def test_csharp_sends_described_frames_python_receives_arrays(pool, child_cmd):
    count = 6
    with pool.channel("frames", 4) as ch:
        child = subprocess.Popen(child_cmd + ["py-channel-produce", pool.name, "frames", str(count)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            for i in range(count):
                with ch.recv(timeout=30) as buf:
                    a = buf.numpy()  # no arguments: the description's shape, dtype and strides
                    base = np.arange(12, dtype=np.float32) + i * 100
                    assert (buf.seq, buf.content_type, buf.producer, buf.dtype) == (i, "test/frame", "csharp", "float32")
                    if i % 2 == 0:
                        assert a.shape == (3, 4) and a.strides == (16, 4) and a.flags.c_contiguous
                        assert (a == base.reshape(3, 4)).all()
                    else:
                        assert a.shape == (4, 3) and a.strides == (4, 16)
                        assert (a == base.reshape(3, 4).T).all()
                    assert not a.flags.writeable
                    t = np.from_dlpack(buf)
                    assert t.shape == a.shape and t.dtype == np.float32 and (t == a).all()
                    assert abs(buf.timestamp_ns - time.monotonic_ns()) < 120 * 10**9
            assert child.stdout.readline().strip() == "sent %d" % count
            child.stdin.close()
            assert child.wait(TIMEOUT) == 0
        finally:
            if child.poll() is None:  # pragma: no cover
                child.kill()
                child.wait()
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_python_sends_described_arrays_csharp_receives_them(pool, child_cmd):
    frames = [
        (np.arange(24, dtype=np.float32).reshape(2, 3, 4), {}),
        (np.arange(6, dtype=np.int16).reshape(2, 3) - 3, {"content_type": "image/gray16", "producer": "py"}),
        (np.arange(10, dtype=np.float64), {"seq": 1 << 40}),
        (np.array(5, dtype=np.int64), {}),  # a scalar: zero dimensions
        (np.arange(8, dtype=np.uint8).reshape(2, 4), {"strides": (1, 2), "shape": (4, 2)}),  # a transposed view
    ]
    child = subprocess.Popen(child_cmd + ["py-channel-consume", pool.name, "frames", str(len(frames) + 1)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pool.channel("frames", 4) as ch:
            expected = []
            for k, (arr, extra) in enumerate(frames):
                shape = extra.pop("shape", arr.shape)
                buf = pool.acquire_cpu(arr.nbytes, shape=shape, dtype=arr.dtype, seq=extra.pop("seq", k), **extra)
                buf.numpy(arr.dtype, arr.size)[:] = arr.reshape(-1)
                view = buf.numpy()
                expected.append((view.shape, float(view.astype(np.float64).sum())))
                ch.send(buf, timeout=30)
            tagged = pool.acquire_cpu(3, content_type="text/plain", producer="py")  # a description without a tensor
            ch.send(tagged, timeout=30)
            lines = [child.stdout.readline().split() for _ in range(len(frames) + 1)]
        assert child.stdout.readline().strip() == "done"
        assert child.wait(TIMEOUT) == 0
    finally:
        if child.poll() is None:  # pragma: no cover
            child.kill()
            child.wait()
    assert lines[0][:7] == ["frame", "0", "Float32", "2x3x4", "48,16,4", "-", "-"] and float(lines[0][7]) == 276.0
    assert lines[1][:7] == ["frame", "1", "Int16", "2x3", "6,2", "image/gray16", "py"] and float(lines[1][7]) == -3.0
    assert lines[2][:5] == ["frame", str(1 << 40), "Float64", "10", "8"] and float(lines[2][7]) == 45.0
    assert lines[3][:5] == ["frame", "3", "Int64", "-", "-"] and float(lines[3][7]) == 5.0
    assert lines[4][:5] == ["frame", "4", "UInt8", "4x2", "1,2"] and float(lines[4][7]) == expected[4][1]
    assert lines[5] == ["frame", "0", "none", "text/plain", "py"]
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))
