"""BufferPool: creation, attachment, properties, counts, preallocation, closing."""

import threading

import pytest

import xmem


def test_create_sets_name_and_capacity(unique_name):
    name = unique_name()
    with xmem.BufferPool(name, 8) as pool:
        assert pool.name == name
        assert pool.capacity == 8
        assert not pool.closed
        assert repr(pool) == "<xmem.BufferPool %r capacity=8>" % name


def test_default_capacity_is_1024(unique_name):
    with xmem.BufferPool(unique_name()) as pool:
        assert pool.capacity == 1024


def test_leading_slash_names_the_same_pool(unique_name):
    name = unique_name()
    with xmem.BufferPool("/" + name, 4) as pool, xmem.BufferPool.open(name) as other:
        with pool.acquire_cpu(8) as buf:
            assert other.ref_count(buf.meta_index) == 1
            with xmem.BufferPool.open("/" + name) as third, third.get(buf.meta_index):
                assert pool.ref_count(buf.meta_index) == 2


def test_name_is_the_name_as_given(unique_name):
    name = unique_name()
    with xmem.BufferPool("/" + name, 4) as pool:
        assert pool.name == "/" + name
        assert repr(pool) == "<xmem.BufferPool %r capacity=4>" % ("/" + name)
        with xmem.BufferPool.open(name) as bare, xmem.BufferPool.open("/" + name) as slashed:
            assert bare.name == name
            assert slashed.name == "/" + name


def test_open_attaches_to_the_same_slots(pool):
    with pool.acquire_cpu(64) as buf:
        with xmem.BufferPool.open(pool.name) as other:
            assert other.capacity == pool.capacity
            assert other.ref_count(buf.meta_index) == 1
            other.add_ref(buf.meta_index)
            assert pool.ref_count(buf.meta_index) == 2
            assert other.release(buf.meta_index) == 1


def test_exists_and_remove(unique_name):
    name = unique_name()
    assert not xmem.BufferPool.exists(name)
    assert xmem.BufferPool.remove(name) is False
    pool = xmem.BufferPool(name, 2)
    assert xmem.BufferPool.exists(name)
    assert xmem.BufferPool.remove(name) is True
    assert not xmem.BufferPool.exists(name)
    pool.close()


def test_persistent_pool_outlives_its_last_process_until_removed(unique_name):
    name = unique_name()
    xmem.BufferPool(name, 2, persistent=True).close()
    assert xmem.BufferPool.exists(name)
    with xmem.BufferPool.open(name) as pool:
        assert pool.capacity == 2
    assert xmem.BufferPool.remove(name)


def test_closing_the_last_attachment_removes_a_pool(unique_name):
    name = unique_name()
    xmem.BufferPool(name, 2).close()
    assert not xmem.BufferPool.exists(name)


def test_close_is_idempotent_and_context_manager_closes(unique_name):
    with xmem.BufferPool(unique_name(), 2) as pool:
        pass
    assert pool.closed
    pool.close()
    assert "closed" in repr(pool)


def test_calls_on_a_closed_pool_raise_pool_closed_error(unique_name):
    pool = xmem.BufferPool(unique_name(), 2)
    pool.close()
    for call in (lambda: pool.acquire_cpu(1), lambda: pool.get(0), lambda: pool.add_ref(0), lambda: pool.ref_count(0),
                 lambda: pool.preallocate_cpu(1, 1), lambda: pool.trim()):
        with pytest.raises(xmem.PoolClosedError, match="closed; open it again") as e:
            call()
        assert isinstance(e.value, ValueError)


def test_garbage_collected_pool_detaches(unique_name):
    name = unique_name()
    pool = xmem.BufferPool(name, 2)
    del pool
    assert not xmem.BufferPool.exists(name)


def test_add_ref_release_ref_count_and_set_ref_count(pool):
    buf = pool.acquire_cpu(10)
    i = buf.meta_index
    assert pool.ref_count(i) == 1
    assert pool.add_ref(i) == 2
    assert pool.add_ref(i) == 3
    assert pool.release(i) == 2
    assert pool.set_ref_count(i, 5) is None
    assert pool.ref_count(i) == 5
    pool.set_ref_count(i, 1)
    buf.forget()
    assert pool.release(i) == 0
    assert pool.ref_count(i) == 0
    with pytest.raises(xmem.SlotNotLiveError):
        pool.release(i)


def test_preallocate_cpu_returns_in_flight_indexes(pool):
    indexes = pool.preallocate_cpu(100, 5)
    assert isinstance(indexes, list) and len(set(indexes)) == 5
    assert all(isinstance(i, int) and pool.ref_count(i) == 1 for i in indexes)
    with pool.get_mut(indexes[0]) as g:
        assert g.size == 100
    for i in indexes:
        assert pool.release(i) == 0
    assert pool.preallocate_cpu(10, 0) == []


def test_preallocate_is_all_or_nothing(unique_name):
    with xmem.BufferPool(unique_name(), 3) as pool:
        keep = pool.acquire_cpu(8)
        with pytest.raises(xmem.InvalidArgumentError):
            pool.preallocate_cpu(8, 4)
        pool.preallocate_cpu(8, 2)
        with pytest.raises(xmem.PoolFullError):
            pool.preallocate_cpu(8, 1)
        keep.release()


def test_pool_full_raises_at_once_without_timeout(unique_name):
    with xmem.BufferPool(unique_name(), 2) as pool:
        a, b = pool.acquire_cpu(1), pool.acquire_cpu(1)
        with pytest.raises(xmem.PoolFullError, match="capacity"):
            pool.acquire_cpu(1)
        a.release()
        pool.acquire_cpu(1).release()
        b.release()


def test_freed_slot_memory_is_reused_and_trim_gives_it_back(pool):
    with pool.acquire_cpu(100000):
        pass
    assert pool.trim() >= 100000
    assert pool.trim() == 0


def test_close_releases_what_this_process_held(unique_name):
    name = unique_name()
    owner = xmem.BufferPool(name, 4)
    other = xmem.BufferPool.open(name)
    buf = owner.acquire_cpu(8)
    held = other.get(buf.meta_index)
    assert owner.ref_count(buf.meta_index) == 2
    other.close()
    assert owner.ref_count(buf.meta_index) == 1
    assert held.is_valid  # the Python object lives on; releasing it now does nothing
    held.release()
    assert owner.ref_count(buf.meta_index) == 1
    buf.release()
    owner.close()


def test_threads_share_a_pool(pool):
    errors = []

    def work():
        try:
            for _ in range(300):
                with pool.acquire_cpu(64) as b:
                    i = b.meta_index
                    assert pool.add_ref(i) == 2
                    assert pool.release(i) == 1
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_close_while_other_threads_call_never_crashes(unique_name):
    pool = xmem.BufferPool(unique_name(), 4)
    buf = pool.acquire_cpu(8)
    i = buf.meta_index
    stop = threading.Event()
    outcomes = []

    def hammer():
        while not stop.is_set():
            try:
                pool.add_ref(i)
                pool.release(i)
            except xmem.PoolClosedError:
                outcomes.append("closed")
                return
            except xmem.SlotNotLiveError:
                outcomes.append("closed")  # closing released this process's references
                return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    pool.close()
    stop.set()
    for t in threads:
        t.join(30)
    buf.release()
    assert len(outcomes) <= 3
