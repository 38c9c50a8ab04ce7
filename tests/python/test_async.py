"""asyncio: Channel.arecv / async for / BufferPool.aacquire_cpu never block the event loop, use one helper thread per
source however many coroutines wait, and lose no buffer when coroutines are cancelled (real producer processes)."""

import asyncio
import multiprocessing
import random
import threading
import time

import pytest

import xmem

np = pytest.importorskip("numpy", reason="numpy is not installed (the producer processes describe arrays with it)")

import _children  # noqa: E402

CTX = multiprocessing.get_context("spawn")
TIMEOUT = 60


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def all_free(pool):
    return all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def helper_idle(source_owner):
    """True once no helper thread of the channel/subscription/pool runs (its last slice is over)."""
    pair = source_owner._async
    sources = [pair] if isinstance(pair, xmem._async.AsyncSource) else [s for s in (pair or ()) if s is not None]
    return not any(s.counts()[2] for s in sources)


def wait_until(cond, what, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def test_arecv_returns_a_ready_buffer_at_once_and_async_for_yields_in_order(pool):
    with pool.channel("q", 8) as ch:
        for i in range(5):
            ch.send(pool.acquire_cpu(8, seq=i))

        async def main():
            first = await ch.arecv()
            with first:
                assert first.seq == 0 and first.is_read_only
            got = []
            async for buf in ch:
                with buf:
                    got.append(buf.seq)
                if len(got) == 4:
                    break
            return got

        assert run(main()) == [1, 2, 3, 4]
        assert ch._async is None  # nothing had to wait: no helper was ever made
    assert all_free(pool)


def test_arecv_writable_and_timeouts_are_timeout_errors(pool):
    with pool.channel("q", 4) as ch:
        async def main():
            with pytest.raises(xmem.XmemTimeoutError):
                await ch.arecv(timeout=0)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await ch.arecv(timeout=0.05)
            assert time.monotonic() - t0 >= 0.04
            ch.send(pool.acquire_cpu(8))
            with await ch.arecv(writable=True) as buf:
                assert not buf.is_read_only
            with pytest.raises(xmem.InvalidArgumentError):
                await ch.arecv(timeout=-1)

        run(main())
        wait_until(lambda: helper_idle(ch), "the helper to end")
    assert all_free(pool)


def test_a_coroutine_awaiting_every_frame_keeps_one_helper_thread_which_leaves_once_idle(pool):
    with pool.channel("paced", 4) as ch:
        async def main():
            loop = asyncio.get_running_loop()
            helpers = []
            for i in range(5):
                # Nothing is there yet: each receive waits, and the frame comes 20 ms later.
                loop.call_later(0.02, lambda i=i: ch.send(pool.acquire_cpu(8, seq=i)))
                with await ch.arecv() as buf:
                    assert buf.seq == i
                helpers.append(ch._async[False]._thread)
            return helpers

        helpers = run(main())
        assert helpers[0] is not None and all(h is helpers[0] for h in helpers), \
            "a new helper thread was started for a later frame"
        wait_until(lambda: helper_idle(ch), "the idle helper to leave")
    assert all_free(pool)


def test_150_waiting_coroutines_share_one_helper_thread_and_never_block_the_loop(unique_name):
    waiters, depth = 150, 8
    with xmem.BufferPool(unique_name(), 32) as pool, pool.channel("q", depth) as ch:
        async def main():
            threads_before = threading.active_count()
            tasks = [asyncio.ensure_future(ch.arecv()) for _ in range(waiters)]
            ticks = 0
            while ch._async is None or ch._async[False].counts()[0] < waiters:
                await asyncio.sleep(0.005)
            assert threading.active_count() - threads_before <= 1
            producer = CTX.Process(target=_children.channel_producer, args=(pool.name, "q", 1, waiters, depth))
            producer.start()
            try:
                pending = set(tasks)
                got = []
                while pending:  # the loop keeps running while all of them wait
                    done, pending = await asyncio.wait(pending, timeout=0.01)
                    ticks += 1
                    for t in done:
                        with t.result() as buf:
                            got.append(buf.seq & 0xFFFFFFFF)
                assert sorted(got) == list(range(waiters))
                assert ticks > 5, "the event loop did not run while the coroutines waited"
            finally:
                producer.join(TIMEOUT)
            assert producer.exitcode == 0

        run(main())
        wait_until(lambda: helper_idle(ch), "the helper to end")
        assert len(ch) == 0
        assert all_free(pool)


def test_cancellation_storms_racing_producer_processes_lose_no_buffer(unique_name):
    producers, per_producer, depth, loops = 2, 400, 8, 40
    with xmem.BufferPool(unique_name(), 32) as pool, pool.channel("q", depth) as ch:
        got = []
        stats = {"cancelled": 0, "timeouts": 0}

        async def consumer(seed, done):
            rng = random.Random(seed)
            # Until every message is sent and none is left, and at least 50 receives were cancelled or timed out (on a
            # quiet machine the producers can be done first: the receives after that all end against an empty channel).
            while not (done.is_set() and len(ch) == 0 and stats["cancelled"] + stats["timeouts"] > 50):
                task = asyncio.ensure_future(ch.arecv())
                how = rng.randrange(4)
                if how == 0:
                    await asyncio.sleep(0)
                    task.cancel()
                elif how == 1:
                    await asyncio.sleep(rng.random() * 0.003)
                    task.cancel()
                try:
                    if how == 2:
                        buf = await asyncio.wait_for(task, 0.002 + rng.random() * 0.003)
                    else:  # a longer wait, so that every consumer ends once nothing more comes
                        buf = await asyncio.wait_for(task, 0.2)
                except asyncio.CancelledError:
                    stats["cancelled"] += 1
                    continue
                except asyncio.TimeoutError:
                    stats["timeouts"] += 1
                    continue
                with buf:
                    a = buf.numpy()
                    assert (a == (buf.seq & 0xFFFFFFFF) & 0xFFFF).all()
                    got.append(buf.seq)

        async def main():
            done = asyncio.Event()
            procs = [CTX.Process(target=_children.channel_producer, args=(pool.name, "q", p + 1, per_producer, depth))
                     for p in range(producers)]
            for p in procs:
                p.start()
            consumers = [asyncio.ensure_future(consumer(i, done)) for i in range(loops)]
            loop = asyncio.get_running_loop()
            for p in procs:
                await loop.run_in_executor(None, p.join, TIMEOUT)
                assert p.exitcode == 0
            done.set()
            await asyncio.gather(*consumers)

        run(main())
        # A buffer a helper took in its last slice for a coroutine that was gone waits in the stash: recv serves it.
        wait_until(lambda: helper_idle(ch), "the helper to end")
        while True:
            buf = ch.try_recv(0)
            if buf is None:
                break
            with buf:
                got.append(buf.seq)
        expected = sorted((p + 1) << 32 | i for p in range(producers) for i in range(per_producer))
        assert sorted(got) == expected, "lost or doubled: %d of %d" % (len(got), len(expected))
        assert all_free(pool)


def test_a_buffer_handed_to_a_cancelled_coroutine_goes_to_the_next_arecv(pool):
    with pool.channel("q", 4) as ch:
        async def main():
            task = asyncio.ensure_future(ch.arecv())
            while ch._async is None or ch._async[False].counts()[0] == 0:
                await asyncio.sleep(0.005)
            ch.send(pool.acquire_cpu(8, seq=7))
            # The helper hands it over through the loop: let it land in the future, then cancel before the task runs.
            while not task._fut_waiter or not task._fut_waiter.done():  # noqa: SLF001 - the race, made deterministic
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with await ch.arecv(timeout=TIMEOUT) as buf:  # given back: the next arecv gets it
                assert buf.seq == 7

        run(main())
        wait_until(lambda: helper_idle(ch), "the helper to end")
    assert all_free(pool)


def test_a_given_back_buffer_goes_back_into_a_queue_or_waits_for_the_subscription(pool):
    with pool.channel("q", 4) as ch:
        src = xmem._channel._source(ch, False)
        src.give_back(pool.acquire_cpu(8, seq=3))  # as a cancelled coroutine's buffer, with nobody else waiting
        assert src.counts()[1] == 0 and len(ch) == 1  # back in the channel, for any receiver of any process
        with ch.recv(timeout=0) as buf:
            assert buf.seq == 3
    with pool.channel("f", 4, mode="fanout") as f, f.subscribe() as sub:
        src = xmem._channel._source(sub, False)
        src.give_back(_read_only(pool, 4))
        assert src.counts()[1] == 1  # a subscription's ring cannot take it back: it waits for its next receive
        with sub.recv(timeout=0, writable=True) as buf:  # taken over with the access asked for
            assert buf.seq == 4 and not buf.is_read_only
        assert src.counts()[1] == 0
        src.give_back(_read_only(pool, 5))
    assert all_free(pool)  # closing the subscription released what was still stashed


def _read_only(pool, seq):
    with pool.acquire_cpu(8, seq=seq) as w:
        return pool.get(w.meta_index)


def test_aacquire_cpu_waits_without_blocking_and_cancelled_waits_take_no_slot(unique_name):
    with xmem.BufferPool(unique_name(), 4) as pool:
        held = [pool.acquire_cpu(64) for _ in range(4)]

        async def main():
            with pytest.raises(xmem.XmemTimeoutError):
                await pool.aacquire_cpu(64, timeout=0)
            with pytest.raises(TimeoutError):
                await pool.aacquire_cpu(64, timeout=0.05)
            tasks = [asyncio.ensure_future(pool.aacquire_cpu(64, shape=(8,), dtype="float32")) for _ in range(120)]
            await asyncio.sleep(0.05)
            for t in tasks[::2]:
                t.cancel()
            held.pop().release()  # a slot for the oldest waiter still there
            got = []
            rng = random.Random(5)
            loop = asyncio.get_running_loop()
            while len(got) < 60:
                done, _ = await asyncio.wait([t for t in tasks if not t.done()] or tasks, timeout=0.01)
                for t in done:
                    if not t.cancelled() and t not in got:
                        got.append(t)
                        buf = t.result()
                        assert buf.shape == (8,) and buf.dtype == "float32"
                        loop.call_later(rng.random() * 0.003, buf.release)  # free it again soon
            assert sum(t.cancelled() for t in tasks) == 60

        run(main())
        for g in held:
            g.release()
        wait_until(lambda: helper_idle(pool), "the helper to end")
        assert all_free(pool)


def test_aacquire_cpu_cancellation_storm_against_a_producer_process_loses_no_slot(unique_name):
    with xmem.BufferPool(unique_name(), 3) as pool, pool.channel("q", 2) as ch:
        stats = {"taken": 0, "cancelled": 0}

        async def acquirer(seed):
            rng = random.Random(seed)
            for _ in range(60):
                task = asyncio.ensure_future(pool.aacquire_cpu(64 << rng.randrange(4)))
                await asyncio.sleep(rng.random() * 0.002)
                task.cancel()
                try:
                    buf = await task
                except asyncio.CancelledError:
                    stats["cancelled"] += 1
                    continue
                stats["taken"] += 1
                await asyncio.sleep(0)
                buf.release()

        async def drain(stop):
            while not stop.is_set():
                try:
                    buf = await ch.arecv(timeout=0.05)
                except TimeoutError:
                    continue
                buf.release()

        async def main():
            # Another process competes for the same slots: it acquires, sends, and we release what it sent.
            producer = CTX.Process(target=_children.channel_producer, args=(pool.name, "q", 1, 200, 2))
            producer.start()
            stop = asyncio.Event()
            drainer = asyncio.ensure_future(drain(stop))
            await asyncio.gather(*(acquirer(i) for i in range(16)))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, producer.join, TIMEOUT)
            assert producer.exitcode == 0
            while len(ch):
                await asyncio.sleep(0.01)
            stop.set()
            await drainer

        run(main())
        assert stats["taken"] > 0 and stats["cancelled"] > 0, stats
        wait_until(lambda: helper_idle(pool) and helper_idle(ch), "the helpers to end")
        while True:
            buf = ch.try_recv(0)
            if buf is None:
                break
            buf.release()
        assert all_free(pool)


def test_closing_the_pool_ends_waiting_coroutines_and_async_for(unique_name):
    pool = xmem.BufferPool(unique_name(), 1)
    ch = pool.channel("q", 4)
    held = pool.acquire_cpu(8)

    async def iterate():
        n = 0
        async for buf in ch:
            buf.release()
            n += 1
        return n

    async def main():
        recv = asyncio.ensure_future(ch.arecv())
        acq = asyncio.ensure_future(pool.aacquire_cpu(8))
        it = asyncio.ensure_future(iterate())
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pool.close)
        with pytest.raises(xmem.XmemError):
            await recv
        with pytest.raises(xmem.XmemError):
            await acq
        assert await it == 0

    run(main())
    del held
    ch.close()


def test_async_api_is_coroutines_annotated_and_documented():
    import inspect
    for fn in (xmem.Channel.arecv, xmem.Subscription.arecv, xmem.BufferPool.aacquire_cpu):
        assert inspect.iscoroutinefunction(fn)
        assert fn.__doc__ and "event loop" in fn.__doc__ or "Channel.arecv" in fn.__doc__
        assert "return" in fn.__annotations__
    assert list(inspect.signature(xmem.BufferPool.aacquire_cpu).parameters) == list(
        inspect.signature(xmem.BufferPool.acquire_cpu).parameters)
    for cls in (xmem.Channel, xmem.Subscription):
        assert "return" in cls.__aiter__.__annotations__
