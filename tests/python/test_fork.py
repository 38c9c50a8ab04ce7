"""fork() safety (issue 9, section 1): children made by os.fork() and multiprocessing's "fork" context.

* A forked child opens the pool itself and uses it (guards, views, channels); what it takes, it gives back.
* Objects inherited through fork are inert in the child: using one fails naming fork and the spawn/forkserver start
  methods; releasing or closing one does nothing (the parent still owns those references).
* A forked child never keeps its parent's process entry alive: the parent SIGKILLed while its child lives has its
  references reclaimed at once; both killed, the pool goes with the next attach.
* 500 forks while 4 parent threads hammer acquire/get/release/channels: no child hangs.

Every wait has a watchdog: a child that does not finish in time is SIGKILLed and counted as a failure.
"""

import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import xmem

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")

CHILD_TIMEOUT_S = 30


def _wait_child(pid, timeout=CHILD_TIMEOUT_S):
    """The child's exit code; a child still running after `timeout` s is SIGKILLed and reported as None (hung)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.002)


def _use_in_child(name, inherited_pool, inherited_guard, capacity):
    """In a forked child: checks that inherited objects are inert, then opens the pool and uses it. Returns an exit
    code (0: all good) and never raises."""
    try:
        # Inherited: using it names fork; releasing it is a no-op that leaves the parent's reference alone.
        try:
            inherited_pool.acquire_cpu(8)
            return 10
        except xmem.PoolClosedError as e:
            if "fork" not in str(e) or "spawn" not in str(e):
                return 11
        inherited_guard.release()
        inherited_pool.close()

        with xmem.BufferPool.open(name) as mine:
            ch = mine.channel("forked", depth=4)
            # More rounds than slots: any reference the child failed to give back would fill the pool.
            for i in range(capacity * 4):
                with mine.acquire_cpu(4096) as g:
                    g.memoryview()[:4] = bytes([i & 0xFF, 1, 2, 3])
                    with mine.get(g.meta_index) as r:
                        if bytes(r.memoryview()[:4]) != bytes([i & 0xFF, 1, 2, 3]):
                            return 12
                sent = mine.acquire_cpu(64)
                ch.send(sent)
                with ch.recv(timeout=10) as got:
                    got.memoryview()[0]
            # Every count the child took is back to 0 while it is still attached; the parent's guard still counts 1.
            counts = [mine.ref_count(i) for i in range(capacity)]
            held = inherited_guard_index[0]
            if counts[held] != 1 or any(c != 0 for i, c in enumerate(counts) if i != held):
                return 13
            ch.close()
        return 0
    except BaseException:  # pragma: no cover - reported through the exit code
        import traceback

        traceback.print_exc()
        return 20


# The meta index of the parent's guard, set before forking (a forked child sees the parent's memory).
inherited_guard_index = [0]


def _mp_child(name, inherited_pool, inherited_guard, capacity):
    os._exit(_use_in_child(name, inherited_pool, inherited_guard, capacity))


def _check_parent_after(pool, guard, capacity):
    assert pool.ref_count(guard.meta_index) == 1  # the child released nothing of the parent's
    others = [pool.acquire_cpu(64) for _ in range(capacity - 1)]  # every other slot is free again
    for g in others:
        g.release()
    guard.release()


def test_a_forked_child_opens_the_pool_uses_it_and_gives_everything_back(unique_name):
    capacity = 8
    name = unique_name("fork")
    with xmem.BufferPool(name, capacity) as pool:
        guard = pool.acquire_cpu(64)
        inherited_guard_index[0] = guard.meta_index
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os._exit(_use_in_child(name, pool, guard, capacity))
        assert _wait_child(pid) == 0
        _check_parent_after(pool, guard, capacity)


def _threads_then_collections(name):
    """In a forked child: three threads of its own use a pool of its own one after another (each takes a stack a
    parent thread had), then enough managed garbage for many collections. Returns an exit code; never raises."""
    try:
        with xmem.BufferPool(name, 4) as mine:
            errors = []

            def use():
                try:
                    with mine.acquire_cpu(4096) as g:
                        g.memoryview()[0] = 1
                except BaseException as e:  # pragma: no cover - reported through the exit code
                    errors.append(e)

            for _ in range(3):
                t = threading.Thread(target=use)
                t.start()
                t.join()
            if errors:
                return 10
            for _ in range(60000):  # each open leaves managed garbage: many collections (about 1.5 s)
                xmem.BufferPool.open(name).close()
            if [mine.ref_count(i) for i in range(4)] != [0, 0, 0, 0]:
                return 11
        return 0
    except BaseException:  # pragma: no cover - reported through the exit code
        import traceback

        traceback.print_exc()
        return 20


def test_a_forked_childs_own_threads_use_xmem_and_its_collections_complete(unique_name):
    """The child's runtime kept listing the parent's threads; a thread the child started was given one's stack (and
    the runtime's record of it in its TLS), and the child's next collection hung for ever (docs/robustness.md)."""
    with xmem.BufferPool(unique_name("forkthreads-parent"), 4) as pool:
        ready = threading.Barrier(3)
        stop = threading.Event()

        def parent_thread():
            with pool.acquire_cpu(4096):
                pass
            ready.wait()
            stop.wait()

        threads = [threading.Thread(target=parent_thread) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            ready.wait()  # both called xmem and are alive at the fork
            child_name = unique_name("forkthreads-child")
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                os._exit(_threads_then_collections(child_name))
            code = _wait_child(pid, timeout=60)
            if code is None:
                xmem.BufferPool.remove(child_name)
            assert code == 0, "the forked child hung (None) or failed"
        finally:
            stop.set()
            for t in threads:
                t.join()


def test_a_multiprocessing_fork_child_opens_the_pool_uses_it_and_gives_everything_back(unique_name):
    capacity = 8
    name = unique_name("mpfork")
    with xmem.BufferPool(name, capacity) as pool:
        guard = pool.acquire_cpu(64)
        inherited_guard_index[0] = guard.meta_index
        p = multiprocessing.get_context("fork").Process(target=_mp_child, args=(name, pool, guard, capacity))
        p.start()
        p.join(CHILD_TIMEOUT_S)
        if p.exitcode is None:
            p.kill()
            p.join()
        assert p.exitcode == 0
        _check_parent_after(pool, guard, capacity)


def test_a_forked_child_cannot_use_inherited_channels_and_closing_them_does_nothing(unique_name):
    name = unique_name("forkch")
    with xmem.BufferPool(name, 8) as pool:
        ch = pool.channel("c", depth=4)
        fan = pool.channel("f", depth=4, mode="fanout")
        sub = fan.subscribe()
        queued = pool.acquire_cpu(64)
        index = queued.meta_index
        ch.send(queued)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            for op in (lambda: ch.try_recv(0), lambda: sub.try_recv(0), lambda: fan.subscribe()):
                try:
                    op()
                    code = 30
                except xmem.PoolClosedError as e:
                    if "fork" not in str(e):
                        code = 31
            sub.close()  # no-op: the subscription (and its ring) stay the parent's
            ch.close()
            fan.close()
            os._exit(code)
        assert _wait_child(pid) == 0
        # Still subscribed, and the queued buffer is still there with its one reference.
        assert pool.ref_count(index) == 1
        with fan.pool.acquire_cpu(16) as g:
            fan.send(g)
        with sub.recv(timeout=10):
            pass
        with ch.recv(timeout=10) as got:
            assert got.meta_index == index
        sub.close()
        fan.close()
        ch.close()


def test_an_inherited_guard_refuses_new_views_in_a_forked_child_and_its_old_views_stay_the_parents(unique_name):
    """A guard inherited through fork() makes no new view in the child (memoryview(), numpy(), DLPack: a
    PoolClosedError naming fork), even when it made one before the fork (the ctypes implementation reused its cached
    lease for that); views made before the fork still read the shared memory in the child, and dropping them there
    leaves the parent's leases alone: the parent's views, guard and counts are intact afterwards."""
    name = unique_name("forkview")
    with xmem.BufferPool(name, 4) as pool:
        g = pool.acquire_cpu(64)
        mv = g.memoryview()
        mv[:4] = b"fork"
        index = g.meta_index
        ops = [g.memoryview]
        try:
            import numpy as np
            arr = g.numpy()
            ops += [g.numpy, lambda: np.from_dlpack(g)]
        except ImportError:  # pragma: no cover
            arr = None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            for op in ops:
                try:
                    op()
                    code = 40
                except xmem.PoolClosedError as e:
                    if "fork" not in str(e):
                        code = 41
                except BaseException:
                    code = 42
            if bytes(mv[:4]) != b"fork":
                code = 43
            del mv, arr
            import gc
            gc.collect()
            os._exit(code)
        assert _wait_child(pid) == 0
        assert bytes(mv[:4]) == b"fork"
        mv[4:8] = b"more"
        assert bytes(g.memoryview()[:8]) == b"forkmore"
        assert pool.ref_count(index) == 1
        del mv, arr
        g.release()
        assert pool.ref_count(index) == 0


@pytest.mark.skipif(xmem.implementation != "compiled" and sys.version_info < (3, 12),
                    reason="the ctypes implementation has no buffer protocol before Python 3.12")
def test_a_borrowing_export_inherited_through_fork_is_the_parents_to_settle(unique_name):
    """A ``memoryview(buf)`` that borrows the guard's mapping (no lease of its own) still reads the memory in a forked
    child, and the child's release of the inherited guard and of the view touches nothing of the parent's: there the
    view is moved onto a lease when the guard is released, and outlives the pool's close."""
    name = unique_name("forkborrow")
    pool = xmem.BufferPool(name, 4)
    g = pool.acquire_cpu(4096)
    index = g.meta_index
    mv = memoryview(g)  # borrows: g.memoryview() was never called
    mv[:6] = b"borrow"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        if bytes(mv[:6]) != b"borrow":
            code = 50
        try:
            g.release()  # inherited: the parent's reference, nothing to do here
        except BaseException:
            code = 51
        mv.release()
        import gc
        gc.collect()
        os._exit(code)
    assert _wait_child(pid) == 0
    assert pool.ref_count(index) == 1
    assert bytes(mv[:6]) == b"borrow"
    g.release()
    assert pool.ref_count(index) == 0
    pool.close()
    assert bytes(mv[:6]) == b"borrow"  # on the lease taken at the release
    mv.release()


def test_the_c_abi_makes_inherited_handles_inert_in_a_forked_child(unique_name):
    from ctypes import byref, c_int32

    lib = xmem._native.lib
    with xmem.BufferPool(unique_name("forkabi"), 8) as pool:
        guard = pool.acquire_cpu(64)
        pool_h, guard_h, index = pool._h, guard._h, guard.meta_index
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            out = c_int32(-1)
            rc = lib.xmem_pool_ref_count(pool_h, index, byref(out))
            message = (lib.xmem_last_error() or b"").decode()
            code = 0 if rc == xmem.Status.DISPOSED and "fork" in message and "spawn" in message else 40
            if lib.xmem_guard_release(guard_h) != 0 or lib.xmem_pool_close(pool_h) != 0:
                code = 41  # both succeed, and do nothing
            os._exit(code)
        assert _wait_child(pid) == 0
        assert pool.ref_count(index) == 1
        guard.release()


# ---------------------------------------------------------------------- a killed parent, its forked child alive

_PARENT = textwrap.dedent("""
    import multiprocessing, os, sys, time, xmem
    name, how = sys.argv[1], sys.argv[2]
    pool = xmem.BufferPool(name, 8)
    guards = [pool.acquire_cpu(64) for _ in range(3)]
    # The child tells when fork() has returned in it, i.e. when its atfork handler has dropped the inherited
    # descriptor and mapping: only from then on is the parent's entry its own alone (a child not yet scheduled still
    # holds the parent's lock, for the microseconds until it runs).
    r, w = os.pipe()
    def child(w):
        os.write(w, b"x")
        time.sleep(120)  # never touches xmem
    if how == "os.fork":
        pid = os.fork()
        if pid == 0:
            child(w)
            os._exit(0)
    else:
        p = multiprocessing.get_context("fork").Process(target=child, args=(w,))
        p.start()
        pid = p.pid
    os.read(r, 1)
    print(pid, flush=True)
    time.sleep(120)
""")


def _start_parent(name, how):
    proc = subprocess.Popen([sys.executable, "-c", _PARENT, name, how], stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], CHILD_TIMEOUT_S)
    if not ready:
        proc.kill()
        proc.wait()
        pytest.fail("the parent process did not start its forked child within %d s" % CHILD_TIMEOUT_S)
    return proc, int(proc.stdout.readline())


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_a_killed_parent_is_reclaimed_at_once_while_its_forked_child_lives(unique_name, how):
    name = unique_name("orphan")
    proc, child = _start_parent(name, how)
    try:
        with xmem.BufferPool.open(name) as observer:
            proc.kill()
            proc.wait(CHILD_TIMEOUT_S)
            assert _alive(child)
            # The pool has 8 slots and the dead parent held 3: a full pool reclaims the dead at once, so all 8 come.
            guards = [observer.acquire_cpu(64) for _ in range(8)]
            assert _alive(child)  # reclaimed while the child still lives
            for g in guards:
                g.release()
    finally:
        _kill(proc.pid)
        _kill(child)
        proc.wait()
        # The multiprocessing child is reparented once its parent dies: reaped by init, not by us.
    assert not xmem.BufferPool.exists(name)  # the observer was the last one attached: the pool went with it


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_a_killed_parent_and_its_killed_forked_child_leave_a_pool_the_next_attach_removes(unique_name, how):
    name = unique_name("bothkilled")
    proc, child = _start_parent(name, how)
    _kill(child)
    proc.kill()
    proc.wait(CHILD_TIMEOUT_S)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while _alive(child) and time.monotonic() < deadline:  # a zombie until init reaps it; its descriptors are gone
        try:
            with open("/proc/%d/stat" % child) as f:
                if f.read().rsplit(") ", 1)[1].startswith("Z"):
                    break
        except OSError:
            break
        time.sleep(0.01)
    assert xmem.BufferPool.exists(name)
    with xmem.BufferPool.open(name) as p:
        guards = [p.acquire_cpu(64) for _ in range(8)]  # the dead parent's 3 were reclaimed on attach
        for g in guards:
            g.release()
    assert not xmem.BufferPool.exists(name)


# ---------------------------------------------------------------------- 500 forks under load

_STRESS = textwrap.dedent("""
    import json, os, signal, sys, threading, time, xmem
    name, forks, capacity = sys.argv[1], int(sys.argv[2]), 64
    pool = xmem.BufferPool(name, capacity)
    stop = threading.Event()
    ops, errors = [0] * 4, []

    def hammer(k):
        ch = pool.channel("h%d" % k, depth=8)
        try:
            while not stop.is_set():
                with pool.acquire_cpu(4096, timeout=10) as g:
                    g.memoryview()[0] = k
                    with pool.get(g.meta_index):
                        pass
                    pool.add_ref(g.meta_index)
                    pool.release(g.meta_index)
                ch.send(pool.acquire_cpu(256, timeout=10))
                with ch.recv(timeout=10):
                    pass
                ops[k] += 1
        except BaseException as e:
            errors.append(repr(e))
        finally:
            ch.close()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    inherited = pool.acquire_cpu(64)
    hangs, failed, codes = 0, 0, {}
    t0 = time.monotonic()
    for i in range(forks):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                try:
                    pool.acquire_cpu(8)
                    code = 3
                except xmem.PoolClosedError as e:
                    code = 0 if "fork" in str(e) else 4
                inherited.release()  # inert: no shared memory touched
                with xmem.BufferPool.open(name) as mine:
                    ch = mine.channel("child", depth=4)
                    for j in range(4):
                        with mine.acquire_cpu(1024, timeout=10) as g:
                            g.memoryview()[:2] = b"ok"
                            with mine.get(g.meta_index) as r:
                                if bytes(r.memoryview()[:2]) != b"ok":
                                    code = 5
                        ch.send(mine.acquire_cpu(64, timeout=10))
                        with ch.recv(timeout=10):
                            pass
                    ch.close()
            except BaseException:
                code = 6
            os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    failed += 1
                    codes[code] = codes.get(code, 0) + 1
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                hangs += 1
                break
            time.sleep(0.0005)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(30)
    assert pool.ref_count(inherited.meta_index) == 1
    inherited.release()
    # Nothing left behind by 500 children and 4 threads: every slot free.
    leaked = [i for i in range(capacity) if pool.ref_count(i) != 0]
    pool.close()
    print(json.dumps(dict(forks=forks, hangs=hangs, failed=failed, codes=codes, ops=sum(ops),
                          thread_errors=errors, leaked=leaked, seconds=round(elapsed, 1))), flush=True)
""")


def test_500_forks_while_four_threads_hammer_the_pool_never_hang_a_child(unique_name):
    name = unique_name("forkstress")
    forks = int(os.environ.get("XMEM_FORK_STRESS_FORKS", "500"))
    out = subprocess.run([sys.executable, "-c", _STRESS, name, str(forks)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print("fork stress:", figures)
    # A child that dies of a signal (a runtime abort) writes its reason to stderr, which the children share with
    # this process: keep it in the failure.
    assert figures["hangs"] == 0, (figures, out.stderr[-4000:])
    assert figures["failed"] == 0, (figures, out.stderr[-4000:])
    assert figures["thread_errors"] == [], figures
    assert figures["leaked"] == [], figures
    assert figures["ops"] > 0
