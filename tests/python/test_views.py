"""Zero-copy views (memoryview, NumPy, DLPack) and their lifetimes: a view keeps the memory mapped whatever happens
to its guard or pool, objects die in any order without a crash, and the mapping goes with the last of them."""

import ctypes
import gc
import itertools
import os
import subprocess
import sys
import textwrap

import pytest

import xmem

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed")
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def mapped(pool_name):
    """How many mappings of this pool's data segments this process has (from /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "xmem.v1.%s." % pool_name in line and ".s" in line.rsplit("/", 1)[-1])


# ---------------------------------------------------------------------- memoryview


def test_memoryview_is_zero_copy_and_writable(pool):
    with pool.acquire_cpu(16) as buf:
        mv = buf.memoryview()
        assert mv.format == "B" and mv.nbytes == 16 and not mv.readonly and mv.c_contiguous
        mv[:4] = b"abcd"
        assert ctypes.string_at(buf.cpu_ptr, 4) == b"abcd"
        with pool.get(buf.meta_index) as r:
            assert bytes(r.memoryview()[:4]) == b"abcd"


def test_memoryview_of_a_get_guard_is_read_only(pool):
    with pool.acquire_cpu(8) as w, pool.get(w.meta_index) as r:
        mv = r.memoryview()
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1


def test_memoryview_after_release_still_reads(pool):
    buf = pool.acquire_cpu(32)
    mv = buf.memoryview()
    mv[:] = bytes(range(32))
    buf.release()
    del buf
    gc.collect()
    assert bytes(mv) == bytes(range(32))


def test_views_of_a_forgotten_guard_cannot_be_made(pool):
    buf = pool.acquire_cpu(8)
    i = buf.meta_index
    buf.forget()
    with pytest.raises(xmem.GuardInvalidError):
        buf.memoryview()
    if np is not None:
        with pytest.raises(xmem.GuardInvalidError):
            buf.numpy()
        with pytest.raises(xmem.GuardInvalidError):
            np.from_dlpack(buf)
    pool.release(i)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the __buffer__ protocol needs Python >= 3.12")
def test_memoryview_of_the_guard_itself(pool):  # pragma: no cover - 3.12+
    with pool.acquire_cpu(8) as buf:
        assert memoryview(buf).nbytes == 8


# ---------------------------------------------------------------------- NumPy


@needs_numpy
def test_numpy_view_shares_memory(pool):
    with pool.acquire_cpu(4096) as buf:
        a = buf.numpy()
        assert a.dtype == np.uint8 and a.shape == (4096,) and a.flags.writeable
        a[:] = 3
        f = buf.numpy("float32", (32, 32))
        assert f.shape == (32, 32) and f.dtype == np.float32
        f[0, 0] = 1.5
        assert buf.numpy(np.float32)[0] == 1.5
        assert a.ctypes.data == buf.cpu_ptr
        with pool.get(buf.meta_index) as r:
            ro = r.numpy("float32")
            assert not ro.flags.writeable and ro[0] == 1.5
            with pytest.raises(ValueError):
                ro[0] = 2


@needs_numpy
def test_numpy_shape_and_dtype_must_fit(pool):
    with pool.acquire_cpu(10) as buf:
        with pytest.raises(xmem.InvalidArgumentError, match="shape="):
            buf.numpy("float32")
        with pytest.raises(xmem.InvalidArgumentError, match="needs 12 bytes"):
            buf.numpy("float32", 3)
        assert buf.numpy("float32", (2,)).shape == (2,)
        assert buf.numpy("uint8", (2, 5)).shape == (2, 5)


# ---------------------------------------------------------------------- DLPack


@needs_numpy
def test_numpy_from_dlpack_shares_memory(pool):
    with pool.acquire_cpu(64) as buf:
        buf.numpy()[:] = 42
        a = np.from_dlpack(buf)
        assert a.shape == (64,) and a.dtype == np.uint8 and (a == 42).all()
        assert a.ctypes.data == buf.cpu_ptr
        assert buf.__dlpack_device__() == (1, 0)


@needs_torch
def test_torch_from_dlpack_shares_memory(pool):
    with pool.acquire_cpu(64) as buf:
        t = torch.from_dlpack(buf)
        assert t.dtype == torch.uint8 and t.shape == (64,) and t.device.type == "cpu"
        t.fill_(7)
        assert ctypes.string_at(buf.cpu_ptr, 3) == b"\x07\x07\x07"
        assert t.data_ptr() == buf.cpu_ptr
        f = t.view(torch.float32)
        assert f.shape == (16,)


@needs_torch
def test_torch_from_a_read_only_guard(pool):
    with pool.acquire_cpu(8) as w:
        w.memoryview()[:] = b"12345678"
        with pool.get(w.meta_index) as r:
            t = torch.from_dlpack(r)
            assert bytes(t.numpy().tobytes()) == b"12345678"


def _capsule_name(cap):
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    return get_name(cap)


def _capsule_pointer(cap, name):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get(cap, name)


def test_unversioned_capsule_for_older_consumers(pool):
    with pool.acquire_cpu(32) as buf:
        cap = buf.__dlpack__()
        assert _capsule_name(cap) == b"dltensor"
        p = _capsule_pointer(cap, b"dltensor")
        data = ctypes.c_void_p.from_address(p).value
        ndim = ctypes.c_int32.from_address(p + 16).value
        shape0 = ctypes.c_int64.from_address(ctypes.c_void_p.from_address(p + 24).value).value
        assert (data, ndim, shape0) == (buf.cpu_ptr, 1, 32)
        del cap  # never consumed: the capsule's destructor frees the tensor and its lease


@pytest.mark.parametrize("read_only", [False, True])
def test_versioned_capsule_carries_the_read_only_flag(pool, read_only):
    with pool.acquire_cpu(32) as w:
        guard = pool.get(w.meta_index) if read_only else pool.get_mut(w.meta_index)
        cap = guard.__dlpack__(max_version=(1, 0))
        assert _capsule_name(cap) == b"dltensor_versioned"
        p = _capsule_pointer(cap, b"dltensor_versioned")
        major, minor = ctypes.c_uint32.from_address(p).value, ctypes.c_uint32.from_address(p + 4).value
        flags = ctypes.c_uint64.from_address(p + 24).value
        data = ctypes.c_void_p.from_address(p + 32).value
        assert (major, minor) == (1, 0)
        assert bool(flags & 1) == read_only
        assert data == w.cpu_ptr
        del cap
        guard.release()
        assert pool.ref_count(w.meta_index) == 1


def test_dlpack_refuses_what_it_cannot_do(pool):
    with pool.acquire_cpu(8) as buf:
        with pytest.raises(BufferError):
            buf.__dlpack__(copy=True)
        with pytest.raises(BufferError):
            buf.__dlpack__(stream=5)
        with pytest.raises(BufferError):
            buf.__dlpack__(dl_device=(2, 0))
        buf.__dlpack__(copy=False, dl_device=(1, 0), max_version=(1, 1))


# ---------------------------------------------------------------------- lifetimes


@needs_numpy
def test_views_survive_release_and_pool_close(unique_name):
    pool = xmem.BufferPool(unique_name(), 4)
    buf = pool.acquire_cpu(256)
    buf.numpy()[:] = 5
    views = [buf.memoryview(), buf.numpy(), np.from_dlpack(buf)]
    if torch is not None:
        views.append(torch.from_dlpack(buf))
    buf.release()
    pool.close()
    del buf, pool
    gc.collect()
    for v in views:
        assert bytes(memoryview(v.numpy() if torch is not None and isinstance(v, torch.Tensor) else v)[:3]) == b"\x05\x05\x05"
    if torch is not None:
        views[-1].add_(1)  # still writable memory, still mapped
        assert views[1][0] == 6


def test_the_mapping_goes_with_the_last_view(unique_name):
    name = unique_name()
    pool = xmem.BufferPool(name, 2)
    buf = pool.acquire_cpu(4096)
    assert mapped(name) == 1
    views = [buf.memoryview(), buf.memoryview()]
    if np is not None:
        views += [buf.numpy(), np.from_dlpack(buf)]
    if torch is not None:
        views.append(torch.from_dlpack(buf))
    unconsumed = buf.__dlpack__(max_version=(1, 0))
    buf.release()
    pool.close()
    assert mapped(name) == 1, "views keep the memory mapped"
    del unconsumed
    while views:
        assert mapped(name) == 1
        views.pop(0)
        gc.collect()
    del buf, pool
    gc.collect()
    assert mapped(name) == 0, "the last view unmapped the memory"


@pytest.mark.parametrize("order", list(itertools.permutations(["pool", "guard", "mv", "arr", "dl", "tensor"]))[::37])
def test_deleting_in_any_order_never_crashes(unique_name, order):
    name = unique_name()
    objs = {"pool": xmem.BufferPool(name, 2)}
    objs["guard"] = objs["pool"].acquire_cpu(1024)
    objs["mv"] = objs["guard"].memoryview()
    objs["arr"] = objs["guard"].numpy() if np is not None else objs["guard"].memoryview()
    objs["dl"] = np.from_dlpack(objs["guard"]) if np is not None else objs["guard"].__dlpack__()
    objs["tensor"] = torch.from_dlpack(objs["guard"]) if torch is not None else objs["guard"].__dlpack__()
    for k in order:
        if k == "pool":
            objs["pool"].close()
        for mv in [v for v in objs.values() if isinstance(v, memoryview)]:  # what is alive stays usable
            mv[0] = mv[0]
        mv = None
        del objs[k]
        gc.collect()
    assert mapped(name) == 0


def test_objects_alive_at_interpreter_exit_do_not_crash(unique_name):
    name = unique_name()
    code = textwrap.dedent("""
        import xmem, sys
        pool = xmem.BufferPool(%r, 4)
        keep = [pool.acquire_cpu(64) for _ in range(2)]
        views = [g.memoryview() for g in keep]
        capsule = keep[0].__dlpack__()
        versioned = keep[1].__dlpack__(max_version=(1, 0))
        try:
            import numpy, torch
            arrays = [numpy.from_dlpack(keep[0]), torch.from_dlpack(keep[1]), keep[0].numpy()]
        except ImportError:
            pass
        keep[0].forget()
        cycle = [keep, views]
        cycle.append(cycle)
        print("exiting")
    """) % name
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "exiting" and "Exception ignored" not in res.stderr, res.stderr
    assert not xmem.BufferPool.exists(name)
