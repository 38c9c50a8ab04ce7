"""BufferGuard: properties, read-only guards, forget, context managers, release on garbage collection."""

import gc

import pytest

import xmem


def test_acquire_gives_a_valid_read_write_guard(pool):
    buf = pool.acquire_cpu(1000)
    assert buf.is_valid
    assert buf.size == 1000
    assert 0 <= buf.meta_index < pool.capacity
    assert isinstance(buf.cpu_ptr, int) and buf.cpu_ptr != 0
    assert buf.cpu_ptr_mut == buf.cpu_ptr
    assert not buf.is_read_only
    assert "read-write" in repr(buf)
    buf.release()


def test_guard_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        xmem.BufferGuard()


def test_get_is_read_only_and_counts(pool):
    with pool.acquire_cpu(10) as w:
        with pool.get(w.meta_index) as r:
            assert r.is_read_only and "read-only" in repr(r)
            assert pool.ref_count(w.meta_index) == 2
            assert r.cpu_ptr == w.cpu_ptr
            assert r.size == 10
            with pytest.raises(xmem.ReadOnlyError, match="get_mut"):
                r.cpu_ptr_mut
            with pytest.raises(xmem.ReadOnlyError):
                r.cuda_ptr_mut
        assert pool.ref_count(w.meta_index) == 1
        with pool.get_mut(w.meta_index) as m:
            assert not m.is_read_only and m.cpu_ptr_mut == w.cpu_ptr
            assert pool.ref_count(w.meta_index) == 2


def test_with_block_releases_exactly_once(pool):
    with pool.acquire_cpu(10) as buf:
        i = buf.meta_index
        pool.add_ref(i)
    assert not buf.is_valid
    assert pool.ref_count(i) == 1
    buf.__exit__(None, None, None)  # a second exit does nothing
    assert pool.ref_count(i) == 1
    assert pool.release(i) == 0


def test_with_block_does_not_swallow_exceptions(pool):
    with pytest.raises(KeyError):
        with pool.acquire_cpu(10) as buf:
            i = buf.meta_index
            raise KeyError("boom")
    assert pool.ref_count(i) == 0


def test_forget_leaves_the_reference_in_flight(pool):
    buf = pool.acquire_cpu(10)
    i = buf.meta_index
    buf.forget()
    assert not buf.is_valid
    assert pool.ref_count(i) == 1
    del buf
    gc.collect()
    assert pool.ref_count(i) == 1  # a forgotten guard releases nothing when collected
    with pool.get(i) as again:
        assert again.size == 10
    assert pool.release(i) == 0


@pytest.mark.parametrize("prop", ["meta_index", "size", "cpu_ptr", "cpu_ptr_mut", "cuda_ptr", "cuda_ptr_mut"])
def test_properties_of_a_forgotten_guard_raise(pool, prop):
    buf = pool.acquire_cpu(10)
    i = buf.meta_index
    buf.forget()
    with pytest.raises(xmem.GuardInvalidError, match="pool.get"):
        getattr(buf, prop)
    pool.release(i)


def test_forget_or_release_twice_raises(pool):
    buf = pool.acquire_cpu(10)
    i = buf.meta_index
    buf.forget()
    with pytest.raises(xmem.GuardInvalidError):
        buf.forget()
    with pytest.raises(xmem.GuardInvalidError):
        buf.release()
    pool.release(i)
    other = pool.acquire_cpu(10)
    other.release()
    with pytest.raises(xmem.GuardInvalidError):
        other.release()
    assert "released" in repr(other)


def test_garbage_collected_guard_releases_once(pool):
    buf = pool.acquire_cpu(10)
    i = buf.meta_index
    pool.add_ref(i)
    del buf
    assert pool.ref_count(i) == 1
    assert pool.release(i) == 0


def test_guard_in_a_reference_cycle_is_released_by_the_collector(pool):
    class Holder:
        pass

    h = Holder()
    h.buf = pool.acquire_cpu(10)
    h.me = h
    i = h.buf.meta_index
    del h
    gc.collect()
    assert pool.ref_count(i) == 0


def test_guard_keeps_its_pool_object_alive(unique_name):
    name = unique_name()
    buf = xmem.BufferPool(name, 2).acquire_cpu(10)
    # The pool object is referenced by the guard only; the pool stays attached while the guard lives.
    assert xmem.BufferPool.exists(name)
    buf.release()
    del buf
    gc.collect()
    assert not xmem.BufferPool.exists(name)


def test_guard_outliving_a_closed_pool_is_harmless(unique_name):
    pool = xmem.BufferPool(unique_name(), 2)
    buf = pool.acquire_cpu(10)
    view = buf.memoryview()
    view[0] = 9
    pool.close()
    assert buf.is_valid and buf.size == 10
    assert view[0] == 9
    buf.release()
    gc.collect()
