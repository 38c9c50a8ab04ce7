"""The buffer protocol of BufferGuard (the compiled implementation's ``bf_getbuffer``): what ``memoryview(buf)``,
``numpy.asarray(buf)``, ``bytes(buf)``, ``f.write(buf)``, ``sock.sendall(buf)`` and ``hashlib.sha256(buf)`` see, that
read-only guards export read-only memory, that every export keeps the mapping whatever is deleted first, and that it
never touches the reference count.

Python 3.11's ctypes implementation cannot give a class the buffer protocol (``__buffer__`` is 3.12+), so these tests
run with the compiled implementation (or on 3.12+); ``XMEM_TEST_BUFFER_PROTOCOL=1`` runs them anyway, to watch them
fail without it.
"""

import gc
import hashlib
import itertools
import os
import socket
import subprocess
import sys

import pytest

import xmem

np = pytest.importorskip("numpy")

HAS_BUFFER_PROTOCOL = xmem.implementation == "compiled" or sys.version_info >= (3, 12)
pytestmark = pytest.mark.skipif(
    not HAS_BUFFER_PROTOCOL and os.environ.get("XMEM_TEST_BUFFER_PROTOCOL") != "1",
    reason="the ctypes implementation has no buffer protocol before Python 3.12")


def fill(buf, seed=3):
    data = bytes((seed + 7 * i) & 0xFF for i in range(buf.size))
    buf.memoryview()[:] = data
    return data


# ---------------------------------------------------------------------------------------------------- consumers


def test_memoryview_of_an_acquired_guard_is_zero_copy_and_writable(pool):
    with pool.acquire_cpu(64) as buf:
        mv = memoryview(buf)
        assert (mv.format, mv.itemsize, mv.shape, mv.readonly, mv.nbytes) == ("B", 1, (64,), False, 64)
        mv[:5] = b"hello"
        assert bytes(buf.memoryview()[:5]) == b"hello"  # the same memory
        buf.memoryview()[5:8] = b"xyz"
        assert mv[5:8].tobytes() == b"xyz"
        mv.release()


def test_memoryview_of_a_get_mut_guard_is_writable_and_of_a_get_guard_read_only(pool):
    with pool.acquire_cpu(16) as buf:
        fill(buf)
        with pool.get_mut(buf.meta_index) as w:
            mv = memoryview(w)
            assert not mv.readonly
            mv[0] = 42
            mv.release()
        with pool.get(buf.meta_index) as r:
            mv = memoryview(r)
            assert mv.readonly
            assert mv[0] == 42
            with pytest.raises(TypeError):
                mv[0] = 1
            mv.release()


def test_numpy_asarray_follows_the_description(pool):
    with pool.acquire_cpu(shape=(4, 6), dtype="float32") as buf:
        arr = np.asarray(buf)
        assert arr.dtype == np.float32 and arr.shape == (4, 6) and arr.strides == (24, 4)
        arr[:] = np.arange(24, dtype=np.float32).reshape(4, 6)
        assert (buf.numpy() == arr).all()  # zero-copy: the same bytes
        assert np.shares_memory(arr, buf.numpy()) or arr.__array_interface__["data"][0] == buf.cpu_ptr
        with pool.get(buf.meta_index) as r:
            ro = np.asarray(r)
            assert not ro.flags.writeable
            with pytest.raises(ValueError):
                ro.flags.writeable = True
            assert (ro == arr).all()
            del ro


def test_numpy_asarray_of_a_strided_description(pool):
    # Every other column of a (3, 8) int16 image: strides (16, 4) bytes.
    with pool.acquire_cpu(48) as buf:
        buf.numpy(np.int16, (3, 8))[:] = np.arange(24, dtype=np.int16).reshape(3, 8)
        buf.set_description(shape=(3, 4), dtype="int16", strides=(16, 4))
        arr = np.asarray(buf)
        assert arr.shape == (3, 4) and arr.strides == (16, 4) and arr.dtype == np.int16
        assert (arr == np.arange(24, dtype=np.int16).reshape(3, 8)[:, ::2]).all()
        mv = memoryview(buf)
        assert (mv.shape, mv.strides, mv.format, mv.c_contiguous) == ((3, 4), (16, 4), "h", False)
        assert bytes(buf) == arr.tobytes()  # bytes() of a strided export copies the elements in C order
        with pytest.raises(BufferError):
            hashlib.sha256(buf)  # needs contiguous memory
        mv.release()
        del arr


def test_numpy_asarray_of_every_element_type(pool):
    for dtype in ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool"):
        with pool.acquire_cpu(shape=(2, 3), dtype=dtype) as buf:
            arr = np.asarray(buf)
            assert arr.dtype == np.dtype(dtype) and arr.shape == (2, 3), dtype
            del arr
    with pool.acquire_cpu(shape=(5,), dtype="bfloat16") as buf:
        arr = np.asarray(buf)  # no bfloat16 in the buffer protocol: its bits, as uint16
        assert arr.dtype == np.uint16 and arr.shape == (5,)
        del arr


def test_bytes_file_write_socket_and_hashlib_see_the_buffer(pool, tmp_path):
    with pool.acquire_cpu(100000) as buf:
        data = fill(buf)
        assert bytes(buf) == data
        assert hashlib.sha256(buf).hexdigest() == hashlib.sha256(data).hexdigest()
        path = tmp_path / "frame.bin"
        with open(path, "wb") as f:
            assert f.write(buf) == len(data)
        assert path.read_bytes() == data
        a, b = socket.socketpair()
        try:
            a.settimeout(30)
            b.settimeout(30)
            got = bytearray()
            import threading
            t = threading.Thread(target=lambda: a.sendall(buf))
            t.start()
            while len(got) < len(data):
                chunk = b.recv(65536)
                assert chunk
                got += chunk
            t.join(30)
            assert not t.is_alive()
        finally:
            a.close()
            b.close()
        assert bytes(got) == data


def test_a_read_only_guard_refuses_a_writable_export(pool):
    with pool.acquire_cpu(16) as buf:
        with pool.get(buf.meta_index) as r:
            a, b = socket.socketpair()
            try:
                a.sendall(b"x" * 16)
                with pytest.raises(TypeError, match="read-write"):
                    b.recv_into(r)  # asks for writable memory; the socket module reports the refusal as TypeError
            finally:
                a.close()
                b.close()
            assert bytes(r) == bytes(16)  # nothing was written


# ---------------------------------------------------------------------------------------------------- refusals


def test_a_writable_export_of_a_read_only_guard_is_a_read_only_error(pool):
    import ctypes
    get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    get_buffer.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
    view = ctypes.create_string_buffer(128)  # a Py_buffer (80 bytes on x86_64) never filled: the export fails
    with pool.acquire_cpu(16) as buf, pool.get(buf.meta_index) as r:
        with pytest.raises(xmem.ReadOnlyError, match="get_mut"):
            get_buffer(r, ctypes.addressof(view), 0x1)  # PyBUF_WRITABLE


def test_a_released_forgotten_or_sent_guard_refuses_new_exports(pool):
    buf = pool.acquire_cpu(16)
    buf.release()
    with pytest.raises(xmem.GuardInvalidError):
        memoryview(buf)
    buf = pool.acquire_cpu(16)
    i = buf.meta_index
    buf.forget()
    with pytest.raises(xmem.GuardInvalidError):
        np.asarray(buf)
    pool.release(i)
    with pool.channel("bp") as ch:
        buf = pool.acquire_cpu(16)
        ch.send(buf)
        with pytest.raises(xmem.GuardInvalidError):
            bytes(buf)
        ch.recv(timeout=10).release()


def test_an_export_never_changes_the_reference_count(pool):
    with pool.acquire_cpu(4096) as buf:
        i = buf.meta_index
        assert pool.ref_count(i) == 1
        views = [memoryview(buf) for _ in range(20)] + [np.asarray(buf) for _ in range(20)]
        assert pool.ref_count(i) == 1
        with pool.get(i) as r:
            more = [memoryview(r) for _ in range(5)]
            assert pool.ref_count(i) == 2
            del more
        assert pool.ref_count(i) == 1
        del views
        gc.collect()
        assert pool.ref_count(i) == 1
    assert pool.ref_count(i) == 0


# ---------------------------------------------------------------------------------------------------- lifetime


@pytest.mark.parametrize("order", list(itertools.permutations(["view", "array", "guard", "pool"])))
def test_views_stay_readable_whatever_is_deleted_first(unique_name, order):
    pool = xmem.BufferPool(unique_name(), 4)
    buf = pool.acquire_cpu(1 << 16)
    data = fill(buf, seed=len(order[0]))
    objs = {"view": memoryview(buf), "array": np.asarray(buf)}
    for what in order:
        if what == "guard":
            buf.release()
            del buf
        elif what == "pool":
            pool.close()
        else:
            del objs[what]
        gc.collect()
        # Whatever is left still reads the bytes it showed (the slot is not reused: nothing else acquires).
        for name, v in objs.items():
            assert bytes(v) == data, (order, name)
    assert not objs


def test_the_view_keeps_the_mapping_after_the_pool_is_closed_and_removed(unique_name):
    name = unique_name()
    pool = xmem.BufferPool(name, 2)
    buf = pool.acquire_cpu(4096)
    data = fill(buf)
    mv = memoryview(buf)
    del buf  # the view holds the guard object; the guard is released when the view goes
    pool.close()
    xmem.BufferPool.remove(name)
    assert mv.tobytes() == data
    mv.release()


# An export made before the guard has a Lease borrows the guard's own mapping (no C ABI call); before the guard gives
# its reference up, or its pool is closed, the borrowed exports move onto a lease. A view that missed that move reads
# unmapped memory once both are gone, which kills the process (SIGSEGV): so each case runs in a child process, with
# every order of giving up the view, the array, the guard (four ways) and the pool.
BORROWED = r"""
import gc, itertools, sys
import numpy as np
import xmem
base = sys.argv[1]
cases = 0
for way in ("release", "exit", "forget", "send"):
    for order in itertools.permutations(["view", "array", "guard", "pool"]):
        name = "%s-%d" % (base, cases)
        pool = xmem.BufferPool(name, 4)
        ch = pool.channel("c", depth=4)
        buf = pool.acquire_cpu(1 << 16)
        objs = {"view": memoryview(buf), "array": np.asarray(buf)}  # both borrow: buf.memoryview() was never called
        data = bytes((cases + 7 * i) & 0xFF for i in range(buf.size))
        objs["view"][:] = data
        assert pool.ref_count(buf.meta_index) == 1
        for what in order:
            if what == "guard":
                if way in ("forget", "send") and pool.closed:  # refused after the close: released instead
                    try:
                        buf.forget() if way == "forget" else ch.send(buf)
                        raise AssertionError("%s after the pool's close was not refused" % way)
                    except xmem.XmemError:
                        pass
                    if buf.is_valid:
                        buf.release()
                elif way == "release":
                    buf.release()
                elif way == "exit":
                    buf.__exit__(None, None, None)
                elif way == "forget":
                    buf.forget()
                else:
                    ch.send(buf)
                    got = ch.recv(timeout=10)
                    assert bytes(memoryview(got)) == data
                    got.release()
                del buf
            elif what == "pool":
                ch.close()
                pool.close()
            else:
                del objs[what]
            gc.collect()
            for n, v in objs.items():
                assert bytes(v) == data, (way, order, n)
        if "buf" in dir():
            del buf
        xmem.BufferPool.remove(name)
        cases += 1
print("ok", cases)
"""


def test_borrowed_exports_outlive_the_guard_and_the_pool_in_every_order(unique_name):
    name = unique_name()
    res = subprocess.run([sys.executable, "-c", BORROWED, name], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    for i in range(4 * 24):  # the child removes each pool; this is for a child that died half-way
        xmem.BufferPool.remove("%s-%d" % (name, i))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-3000:])
    assert res.stdout.split() == ["ok", str(4 * 24)]


def test_a_borrowed_export_takes_a_lease_only_when_the_guard_goes_first(pool):
    # memoryview(buf) and numpy.asarray(buf) make no C ABI call while the guard lives; the view is still good after.
    with pool.acquire_cpu(4096) as buf:
        i = buf.meta_index
        mv = memoryview(buf)
        arr = np.asarray(buf)
        mv[:3] = b"abc"
        assert bytes(arr[:3]) == b"abc"
        assert pool.ref_count(i) == 1
    assert pool.ref_count(i) == 0  # the views do not keep the reference
    assert bytes(mv[:3]) == b"abc" and bytes(arr[:3]) == b"abc"
    mv.release()
    del arr
    with pool.acquire_cpu(4096) as buf:  # a guard whose views are all gone before it: nothing to move
        i = buf.meta_index
        with memoryview(buf) as mv:
            mv[0] = 1
    assert pool.ref_count(i) == 0


# ---------------------------------------------------------------------------------------------------- processes


CHILD = r"""
import hashlib, sys
import xmem
name, index = sys.argv[1], int(sys.argv[2])
with xmem.BufferPool.open(name) as pool, pool.get(index) as buf:
    mv = memoryview(buf)
    print(xmem.implementation, mv.readonly, mv.nbytes, hashlib.sha256(mv).hexdigest(), pool.ref_count(index))
    mv.release()
"""


def test_a_child_process_reads_the_buffer_through_memoryview(pool):
    with pool.acquire_cpu(1 << 20) as buf:
        data = fill(buf, seed=11)
        env = dict(os.environ)
        res = subprocess.run([sys.executable, "-c", CHILD, pool.name, str(buf.meta_index)], capture_output=True,
                             text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr
        impl, readonly, nbytes, digest, count = res.stdout.split()
        assert impl == xmem.implementation
        assert (readonly, int(nbytes), digest, int(count)) == ("True", len(data), hashlib.sha256(data).hexdigest(), 2)
        assert pool.ref_count(buf.meta_index) == 1  # the child's guard went with it
