"""Real processes (multiprocessing, spawn context) sharing one pool."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

import xmem

np = pytest.importorskip("numpy", reason="numpy is not installed (the children check bytes with it)")

import _children  # noqa: E402
from _children import pattern  # noqa: E402

CTX = multiprocessing.get_context("spawn")
TIMEOUT = 60


@pytest.fixture(scope="module")
def procs():
    with CTX.Pool(2) as p:
        yield p


def test_child_reads_what_the_parent_wrote(pool, procs):
    with pool.acquire_cpu(100000) as buf:
        buf.numpy()[:] = pattern(11, buf.size)
        i = buf.meta_index
        pool.add_ref(i)  # the child's reference, in flight
        ok, size, count_while_held, left = procs.apply_async(_children.read_and_release, (pool.name, i, 11)).get(TIMEOUT)
        assert (ok, size, count_while_held, left) == (True, 100000, 3, 1)
        assert pool.ref_count(i) == 1
    assert pool.ref_count(i) == 0


def test_counts_cross_processes(pool, procs):
    with pool.acquire_cpu(8) as buf:
        i = buf.meta_index
        assert procs.apply_async(_children.add_refs, (pool.name, i, 5)).get(TIMEOUT) == 6
        assert pool.ref_count(i) == 6
        pool.set_ref_count(i, 2)
        assert procs.apply_async(_children.add_refs, (pool.name, i, 0)).get(TIMEOUT) == 2
        pool.release(i)


def test_child_gets_a_forgotten_buffer(pool, procs):
    buf = pool.acquire_cpu(4096)
    buf.numpy()[:] = pattern(5, 4096)
    i = buf.meta_index
    buf.forget()
    del buf
    ok, size, count_while_held, left = procs.apply_async(_children.read_and_release, (pool.name, i, 5)).get(TIMEOUT)
    assert ok and size == 4096 and count_while_held == 2 and left == 0
    assert pool.ref_count(i) == 0


def test_parent_gets_what_a_child_produced_and_forgot(pool, procs):
    i = procs.apply_async(_children.produce_forgotten, (pool.name, 3000, 8)).get(TIMEOUT)
    assert pool.ref_count(i) == 1
    with pool.get(i) as buf:
        assert (buf.numpy() == pattern(8, 3000)).all()
    assert pool.release(i) == 0


def test_child_writes_through_get_mut(pool, procs):
    with pool.acquire_cpu(777) as buf:
        assert procs.apply_async(_children.write_with_get_mut, (pool.name, buf.meta_index, 21)).get(TIMEOUT) == 2
        assert (buf.numpy() == pattern(21, 777)).all()


def test_a_dead_childs_buffer_is_reclaimed(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        q = CTX.Queue()
        p = CTX.Process(target=_children.acquire_and_die, args=(pool.name, q))
        p.start()
        i = q.get(timeout=TIMEOUT)
        p.join(TIMEOUT)
        assert p.exitcode == 3
        assert pool.ref_count(i) == 1  # still held by the dead process
        with pool.acquire_cpu(64, timeout=30) as buf:  # the full pool reclaims what the dead held
            assert buf.meta_index == i


def test_blocked_acquire_is_woken_by_another_process(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool:
        [i] = pool.preallocate_cpu(16, 1)
        q = CTX.Queue()
        p = CTX.Process(target=_children.release_later, args=(pool.name, i, 0.3, q))
        p.start()
        q.get(timeout=TIMEOUT)
        t0 = time.monotonic()
        with pool.acquire_cpu(16, timeout=30):
            waited = time.monotonic() - t0
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert 0.1 <= waited < 20


def test_a_forked_child_cannot_use_the_parents_pool(pool):
    if not hasattr(os, "fork"):  # pragma: no cover
        pytest.skip("no fork")
    buf = pool.acquire_cpu(8)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            pool.acquire_cpu(8)
        except xmem.PoolClosedError as e:
            code = 0 if "forked" in str(e) else 2
        finally:
            os.write(w, b"%d" % code)
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    verdict = os.read(r, 8)
    os.close(r)
    assert verdict == b"0" and os.WEXITSTATUS(status) == 0
    assert pool.ref_count(buf.meta_index) == 1  # the child's exit released nothing of the parent's
    buf.release()


def test_subprocess_round_trip(pool):
    with pool.acquire_cpu(64) as buf:
        buf.memoryview()[:5] = b"hello"
        pool.add_ref(buf.meta_index)
        code = textwrap.dedent("""
            import sys, xmem
            with xmem.BufferPool.open(sys.argv[1]) as pool:
                i = int(sys.argv[2])
                with pool.get(i) as g:
                    print(bytes(g.memoryview()[:5]).decode(), pool.ref_count(i))
                print(pool.release(i))
        """)
        out = subprocess.run([sys.executable, "-c", code, pool.name, str(buf.meta_index)],
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["hello", "3", "1"]
