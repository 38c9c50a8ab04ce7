"""The behaviours the original xmem's Python tests (Rust + PyO3) check, in our own tests: a pool named with a leading
'/' keeps that name, its default and chosen capacity, the first acquire, reference counts owned by no process, forget,
the guard as a context manager, preallocation, the CPU pointer, and read-only guards refusing write access.

Every pool here is named as the original names its pools ('/' + a unique name) and closed by its test, so nothing is
left in the shared-memory directory (the unique_name fixture checks it)."""

import pytest

import xmem


def slashed(unique_name):
    return "/" + unique_name("orig")


def test_a_slashed_name_is_kept_and_the_default_capacity_is_1024(unique_name):
    name = slashed(unique_name)
    with xmem.BufferPool(name) as pool:
        assert pool.name == name
        assert pool.capacity == 1024


def test_capacity_given_by_keyword(unique_name):
    with xmem.BufferPool(slashed(unique_name), capacity=100) as pool:
        assert pool.capacity == 100


def test_the_first_acquire_of_a_fresh_pool_is_slot_0_and_valid(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        buf = pool.acquire_cpu(1024)
        assert buf.meta_index == 0
        assert buf.is_valid
        assert buf.size == 1024
        buf.release()
        assert pool.ref_count(0) == 0


def test_add_ref_and_release_move_the_count_by_one(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        with pool.acquire_cpu(1024) as buf:
            i = buf.meta_index
            assert pool.ref_count(i) == 1
            assert pool.add_ref(i) == 2
            assert pool.ref_count(i) == 2
            assert pool.release(i) == 1
            assert pool.ref_count(i) == 1
        assert pool.ref_count(i) == 0


def test_forget_leaves_the_reference_in_the_count(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        buf = pool.acquire_cpu(1024)
        i = buf.meta_index
        buf.forget()
        assert not buf.is_valid
        assert pool.ref_count(i) == 1
        # Someone (here: us) takes the in-flight reference over and drops it: the slot is free again.
        assert pool.release(i) == 0


def test_leaving_the_with_block_releases_exactly_the_guards_reference(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        with pool.acquire_cpu(1024) as buf:
            i = buf.meta_index
            pool.set_ref_count(i, 2)
            assert buf.is_valid
        assert not buf.is_valid
        assert pool.ref_count(i) == 1
        pool.release(i)


def test_preallocate_cpu_leaves_each_buffer_live_with_count_1(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        indices = pool.preallocate_cpu(1024, 5)
        assert len(indices) == 5 and len(set(indices)) == 5
        for i in indices:
            assert pool.ref_count(i) == 1
            with pool.get(i) as g:
                assert g.size >= 1024
        for i in indices:
            assert pool.release(i) == 0


def test_cpu_ptr_is_an_address(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        with pool.acquire_cpu(1024) as buf:
            assert isinstance(buf.cpu_ptr, int) and buf.cpu_ptr > 0
            assert buf.cpu_ptr_mut == buf.cpu_ptr


def test_a_get_guard_reads_but_refuses_write_access_with_a_runtime_error(unique_name):
    with xmem.BufferPool(slashed(unique_name)) as pool:
        buf = pool.acquire_cpu(1024)
        i = buf.meta_index
        pool.set_ref_count(i, 2)
        buf.forget()
        with pool.get(i) as ro:
            assert ro.is_read_only
            assert ro.cpu_ptr > 0
            with pytest.raises(RuntimeError):  # what the original asks; ours is a ReadOnlyError (an XmemError)
                ro.cpu_ptr_mut
            with pytest.raises(xmem.ReadOnlyError):
                ro.cpu_ptr_mut
            assert pool.ref_count(i) == 3
        assert pool.ref_count(i) == 2
        pool.set_ref_count(i, 0)


def test_a_slashed_and_a_bare_name_open_the_same_pool_from_another_process(unique_name):
    import subprocess
    import sys

    name = slashed(unique_name)
    with xmem.BufferPool(name, capacity=4) as pool:
        buf = pool.acquire_cpu(64)
        i = buf.meta_index
        buf.forget()
        code = ("import sys, xmem\n"
                "p = xmem.BufferPool.open(sys.argv[1])\n"
                "assert p.name == sys.argv[1], p.name\n"
                "print(p.capacity, p.add_ref(int(sys.argv[2])))\n"
                "p.close()\n")
        res = subprocess.run([sys.executable, "-c", code, name[1:], str(i)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["4", "2"]
        assert pool.ref_count(i) == 2
        pool.set_ref_count(i, 0)
