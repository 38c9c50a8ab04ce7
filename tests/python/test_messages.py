"""The messages of the core reach Python as the core wrote them (no table rewrites them): they name operations
("wait for a free slot with a timeout", "open it by name"), never a member of the C# API (TryAcquireCpu,
BufferPool.Open, GetMut, Dispose), so that they read right in Python as in C# and C."""

import re

import pytest

import xmem
from xmem import _check

# A C# name: two or more capitalized words run together (GetMut, TryAcquireCpu, BufferPool, CopyToCpu, SetRefCount),
# or one of the one-word C# members the old messages named, written as code ("(Dispose)", "Subscribe()", "/Span").
CSHARP = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b|\b(?:Dispose|Subscribe|Get|Open|Create|Span)\b(?:\(|\))"
                    r"|\((?:Dispose|Subscribe|Get|Open|Create)\)|/(?:Span|Get)\b")


def native_message(exc):
    """The core's message in ``exc`` (a BufferPool's name may precede it, in the package's own wrappers)."""
    return str(exc)


def assert_reads_right(exc, words):
    msg = native_message(exc)
    assert words in msg, msg
    assert not CSHARP.search(msg), "a C# name in a message that reached Python: %r" % msg


def test_the_check_finds_the_names_the_old_messages_had():
    for old in ("wait with TryAcquireCpu/AcquireCpuAsync", "Open it with BufferPool.Open", "take a new one with Get/GetMut",
                "use GetMut for write access", "detach some (Dispose)", "use CudaPointer, or CopyToCpu()",
                "Use CpuPointer/Span", "(Subscribe())", "guard, AddRef or SetRefCount"):
        assert CSHARP.search(old), old
    for fine in ("Open it by name instead", "get_mut", "subscribe to it", "XMEM_SHM_DIR", "CUDA device", "UTF-8"):
        assert not CSHARP.search(fine), fine


def test_no_table_rewrites_the_core_messages():
    assert not hasattr(_check, "_PYTHON_NAMES")


def test_full_pool_says_to_wait_for_a_free_slot(unique_name):
    with xmem.BufferPool(unique_name(), 1) as pool, pool.acquire_cpu(8):
        with pytest.raises(xmem.PoolFullError) as e:
            pool.acquire_cpu(8)
    assert_reads_right(e.value, "wait for a free slot with a timeout")


def test_missing_pool_says_to_create_it_first(unique_name):
    with pytest.raises(xmem.PoolNotFoundError) as e:
        xmem.BufferPool.open(unique_name())
    assert_reads_right(e.value, "Create the pool first")


def test_existing_pool_says_to_open_it_by_name(pool):
    with pytest.raises(xmem.PoolExistsError) as e:
        xmem.BufferPool(pool.name, 2)
    assert_reads_right(e.value, "Open it by name instead")


@pytest.mark.parametrize("call", ["get", "get_mut", "add_ref", "release"])
def test_slot_not_live_says_to_keep_a_reference(pool, call):
    with pytest.raises(xmem.SlotNotLiveError) as e:
        getattr(pool, call)(3)
    assert_reads_right(e.value, "hold a guard, or add a reference (or set the count)")


def test_set_ref_count_of_a_free_slot_says_to_keep_a_reference(pool):
    with pytest.raises(xmem.SlotNotLiveError) as e:
        pool.set_ref_count(3, 2)
    assert_reads_right(e.value, "add a reference")


def test_receive_from_a_fanout_channel_says_to_subscribe(pool):
    with pool.channel("fan", 4, mode="fanout") as ch:
        with pytest.raises(ValueError) as e:
            ch.try_recv()
    assert_reads_right(e.value, "subscribe to it and receive through the subscription")


def test_cuda_pointer_of_a_cpu_buffer_names_no_csharp_member(pool):
    with pool.acquire_cpu(8) as buf:
        with pytest.raises(xmem.XmemError) as e:
            buf.cuda_ptr
    # CUDA usable: the buffer has no device pointer; CUDA unusable: the message says why (and that CPU buffers work).
    assert not CSHARP.search(str(e.value)), str(e.value)
    assert "CUDA" in str(e.value)

