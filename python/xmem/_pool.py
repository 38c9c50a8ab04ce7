"""BufferPool and BufferGuard over the C ABI of libxmem.so."""

from __future__ import annotations

import atexit
import ctypes
import os
import time
import weakref
from ctypes import byref, c_int32, c_int64, c_size_t, c_ubyte, c_uint64, c_void_p
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _accel, _description, _native
from ._description import Description
from ._errors import (
    GuardInvalidError,
    InvalidArgumentError,
    InvalidNameError,
    PoolClosedError,
    ReadOnlyError,
    Status,
    XmemTimeoutError,
    error_for,
)
from ._native import BUFFER_CUDA, DLPackRequest, GuardOut

if TYPE_CHECKING:  # pragma: no cover
    import numpy

    from ._channel import Channel

__all__ = ["BufferPool", "BufferGuard"]

_lib = _native.lib
_I32_MAX = 0x7FFFFFFF
_I64_MAX = 0x7FFFFFFFFFFFFFFF

# Bound once: attribute lookups on the CDLL cost more than the calls they name.
_pool_create = _lib.xmem_pool_create
_pool_open = _lib.xmem_pool_open
_pool_close = _lib.xmem_pool_close
_pool_acquire_cpu = _lib.xmem_pool_acquire_cpu
_pool_acquire_cpu_wait = _lib.xmem_pool_acquire_cpu_wait
_pool_acquire_cuda = _lib.xmem_pool_acquire_cuda
_pool_preallocate_cpu = _lib.xmem_pool_preallocate_cpu
_pool_preallocate_cuda = _lib.xmem_pool_preallocate_cuda
_pool_get = _lib.xmem_pool_get
_pool_get_mut = _lib.xmem_pool_get_mut
_pool_set_ref_count = _lib.xmem_pool_set_ref_count
_pool_add_ref = _lib.xmem_pool_add_ref
_pool_release = _lib.xmem_pool_release
_pool_ref_count = _lib.xmem_pool_ref_count
_guard_release = _lib.xmem_guard_release
_guard_forget = _lib.xmem_guard_forget
_guard_lease_view = _lib.xmem_guard_lease_view
_lease_release = _lib.xmem_lease_release
_guard_description = _lib.xmem_guard_description
_guard_set_description = _lib.xmem_guard_set_description
_guard_wait_writes_done = _lib.xmem_guard_wait_writes_done
_last_error = _lib.xmem_last_error
_last_native_error = _lib.xmem_last_native_error

# A child made by fork() inherits the parent's objects, whose references and process-table entries stay the
# parent's: the child must neither use nor release them (the library makes them inert there too). Objects the child
# makes itself work and release normally. _fork_gen[0] counts the forks between this process and the one that
# imported xmem; every pool (and the guards, views, channels from it) remembers the generation it was opened in, so
# an older one was inherited. Finalizers bind the list as a default argument, so it outlives module teardown at exit.
_fork_gen = [0]
_open_pools: "weakref.WeakSet[BufferPool]" = weakref.WeakSet()


# The core's messages name its C# API; say the same in this package's words.
_PYTHON_NAMES = (
    ("TryAcquireCpu/AcquireCpuAsync", "acquire_cpu(size, timeout=seconds)"),
    ("BufferPool.Create", "BufferPool(name, capacity)"),
    ("BufferPool.Open", "BufferPool.open(name)"),
    ("Get/GetMut", "get/get_mut"),
    ("GetMut", "get_mut"),
    ("AddRef", "add_ref"),
    ("SetRefCount", "set_ref_count"),
    ("(Dispose)", "(close)"),
    ("use CudaPointer, or CopyToCpu() for a CPU copy", "use cuda_ptr, __cuda_array_interface__ or DLPack, or copy_to_cpu() for a CPU copy"),
    ("Use CpuPointer/Span, or CopyToCuda(device) for a device copy", "use cpu_ptr, memoryview() or numpy(), or copy_to_cuda(device) for a device copy"),
    ("(Subscribe())", "(subscribe())"),
    ("Subscribe()", "subscribe()"),
)


def _last_error_for(rc: int) -> Exception:
    """The exception for status ``rc`` with this thread's last native message."""
    raw = _last_error()
    msg = raw.decode("utf-8", "replace") if raw else "xmem call failed (status %d)" % rc
    for cs, py in _PYTHON_NAMES:
        if cs in msg:
            msg = msg.replace(cs, py)
    return error_for(rc, msg, _last_native_error())


def _check(rc: int) -> None:
    """Raises the exception for a nonzero status."""
    if rc:
        raise _last_error_for(rc)


def _as_int(value: Any, what: str, lo: int, hi: int) -> int:
    try:
        v = value.__index__()
    except AttributeError:
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__)) from None
    if not lo <= v <= hi:
        raise InvalidArgumentError("%s is %d; it must be within %d..%d." % (what, v, lo, hi))
    return v


def _encode_name(name: Any) -> bytes:
    if not isinstance(name, str):
        raise TypeError("pool name must be a str, not %s" % type(name).__name__)
    if "\0" in name:
        raise InvalidNameError("pool name %r contains NUL; use only [A-Za-z0-9._-] after an optional leading '/'." % name)
    return name.encode("utf-8")


class BufferPool(_accel.PoolBase):
    """A named pool of buffer slots in shared memory, shared by every process that opens it.

    ``BufferPool(name, capacity)`` creates the pool; :meth:`open` attaches to an existing one. A producer acquires a
    buffer, fills it and hands its ``meta_index`` to other processes, which :meth:`get` the same memory without a
    copy. Each slot's reference count lives in shared memory; at zero the slot is recycled.

    The pool is a context manager: leaving the ``with`` block (or :meth:`close`) detaches this process, which
    releases the references its guards still hold. Methods may be called from any thread.

    Args:
        name: an optional ``/`` and 1-200 of ``[A-Za-z0-9._-]``; ``"/cam0"`` and ``"cam0"`` are the same pool.
        capacity: number of slots, 1..1,048,576.
        mode: permission bits of the pool's segments: ``0o600`` (owner only) or ``0o660`` to share with the group.
        persistent: keep the pool after its last process detaches, until :meth:`remove`.

    Raises:
        PoolExistsError: a live pool has that name (a ``FileExistsError``).
        InvalidNameError, InvalidArgumentError: a bad name, capacity or mode (``ValueError``).
    """

    # _box: the native handle, written by the create/open call straight into this object, so that an interrupt
    # (KeyboardInterrupt) landing anywhere after the call returned leaves the handle owned by an object whose
    # close/__del__/exit hook closes it. _h is the same handle for the calls (0 once closing began). _gen: the
    # fork generation the pool was opened in (a pool inherited through fork is dead in the child).
    # _h, _gen and __weakref__ are the base's (C fields in the compiled implementation, which reads them).
    __slots__ = ("_box", "_name", "_capacity")

    _h: int
    _box: c_uint64
    _name: str
    _capacity: int
    _gen: int

    def __init__(self, name: str, capacity: int = 1024, *, mode: int = 0o600, persistent: bool = False) -> None:
        self._h = 0
        self._name = name
        self._gen = _fork_gen[0]
        bname = _encode_name(name)
        capacity = _as_int(capacity, "capacity", 1, _I32_MAX)
        mode = _as_int(mode, "mode", 0, 0o777)
        h = self._box = c_uint64()
        _open_pools.add(self)  # before the call: the exit hook closes whatever the box holds
        _check(_pool_create(bname, capacity, mode, 1 if persistent else 0, byref(h)))
        self._attach(h.value)

    @staticmethod
    def open(name: str) -> "BufferPool":
        """Attaches to an existing pool.

        Raises:
            PoolNotFoundError: there is no pool of that name (a ``FileNotFoundError``).
            PermissionDeniedError: its mode does not admit this user (a ``PermissionError``).
        """
        bname = _encode_name(name)
        pool = BufferPool.__new__(BufferPool)
        pool._h = 0
        pool._name = name
        pool._gen = _fork_gen[0]
        h = pool._box = c_uint64()
        _open_pools.add(pool)
        _check(_pool_open(bname, byref(h)))
        pool._attach(h.value)
        return pool

    def _attach(self, handle: int) -> None:
        self._h = handle
        cap = c_int32()
        n = c_size_t()
        buf = ctypes.create_string_buffer(256)
        _check(_lib.xmem_pool_capacity(handle, byref(cap)))
        _check(_lib.xmem_pool_name(handle, buf, 256, byref(n)))
        self._capacity = cap.value
        self._name = buf.value.decode("utf-8")

    @staticmethod
    def remove(name: str) -> bool:
        """Removes the pool and all its segments; False when there was none. Processes still attached keep their
        mappings until they close, as with an unlinked file. Raises PermissionError (PermissionDeniedError) when
        segments made by other users could not be unlinked (a sticky /dev/shm lets only their owner or root); the
        pool is removed all the same."""
        out = c_int32()
        _check(_lib.xmem_pool_remove(_encode_name(name), byref(out)))
        return bool(out.value)

    @staticmethod
    def exists(name: str) -> bool:
        """True when a pool of this name exists."""
        out = c_int32()
        _check(_lib.xmem_pool_exists(_encode_name(name), byref(out)))
        return bool(out.value)

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        """The pool's name as given to the constructor or :meth:`open`: ``"/cam0"`` stays ``"/cam0"`` (both spellings
        name the same pool)."""
        return self._name

    @property
    def capacity(self) -> int:
        """The number of slots."""
        return self._capacity

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return not self._h

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Detaches this process from the pool: the references its guards still hold are released (as if the
        process had died). Views (memoryviews, arrays, DLPack tensors) stay readable. Closing twice does nothing."""
        box = getattr(self, "_box", None)
        if box is None or self._gen != _fork_gen[0]:  # inherited through fork: the parent's handle, never closed here
            return
        h = box.value
        if h:
            self._h = 0  # other threads' calls fail as "closed" from here on
            # Interrupted before the next line, the box still holds the handle (closed by __del__ or at exit); after
            # it, the close is done and a repeat of it is refused harmlessly (handles are never reused).
            _pool_close(h)
            box.value = 0
            _open_pools.discard(self)

    def __enter__(self) -> "BufferPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _close: Any = _pool_close, _fork_gen: List[int] = _fork_gen) -> None:
        box = getattr(self, "_box", None)
        if box is not None and box.value and getattr(self, "_gen", -1) == _fork_gen[0]:
            self._h = 0
            _close(box.value)
            box.value = 0

    def __repr__(self) -> str:
        if not getattr(self, "_h", 0):
            return "<xmem.BufferPool %r closed>" % getattr(self, "_name", "?")
        return "<xmem.BufferPool %r capacity=%d>" % (self._name, self._capacity)

    def _fail(self, rc: int) -> Exception:
        if not self._h:
            if self._gen != _fork_gen[0]:
                return PoolClosedError(_inherited_message(self._name), Status.DISPOSED)
            return PoolClosedError("pool %r is closed; open it again with BufferPool.open(%r)." % (self._name, self._name), Status.DISPOSED)
        return _last_error_for(rc)

    # ------------------------------------------------------------------ acquire

    def acquire_cpu(self, size: Optional[int] = None, timeout: Optional[float] = None, *, shape: Any = None,
                    dtype: Any = None, strides: Optional[Sequence[int]] = None, seq: int = 0,
                    content_type: str = "", producer: str = "") -> "BufferGuard":
        """Acquires a read-write buffer; its count is 1, held by the returned guard.

        Args:
            size: bytes, at least 1. May be left out when ``shape`` is given: the buffer is then sized for the tensor.
            timeout: ``None`` (the default) fails at once with :class:`PoolFullError` when every slot is live. A
                number of seconds waits that long for any process to release a slot (``math.inf``: no limit),
                without holding the GIL, then raises :class:`XmemTimeoutError` (a ``TimeoutError``).
            shape, dtype, strides: describe the buffer as a tensor (see :meth:`BufferGuard.set_description`), so
                that every consumer's ``numpy()``, DLPack and ``__cuda_array_interface__`` show it with this shape
                and dtype (``dtype`` defaults to ``"uint8"``; ``strides`` in bytes, default C-contiguous).
            seq, content_type, producer: the rest of the description (given only with, or instead of, ``shape``).

        Raises:
            InvalidArgumentError: a bad size, or a description that does not fit the buffer (``ValueError``).
        """
        if shape is None and dtype is None and seq == 0 and not content_type and not producer and strides is None:
            if size is None:
                raise TypeError("acquire_cpu() needs a size in bytes, or shape= (and dtype=) to size the buffer for a tensor.")
            if size.__class__ is not int or not 0 < size <= _I64_MAX:
                size = _as_int(size, "size", 1, _I64_MAX)
            return self._acquire_cpu(size, timeout)
        if size is None:
            if shape is None:
                raise TypeError("acquire_cpu() needs a size in bytes, or shape= (and dtype=) to size the buffer for a tensor.")
            name = _description.dtype_name("uint8" if dtype is None else dtype)
            dims = _description._dims(shape, "shape")
            if strides is None:
                need = _description.itemsize(name)
                for d in dims:
                    need *= max(d, 0)
            else:
                st = _description._dims(strides, "strides")
                need = 0 if len(st) != len(dims) or 0 in dims else \
                    sum((d - 1) * x for d, x in zip(dims, st)) + _description.itemsize(name)
            size = max(need, 1)
        size = _as_int(size, "size", 1, _I64_MAX)
        desc = _description.encode(size, shape, dtype, strides, _as_int(seq, "seq", 0, (1 << 64) - 1), None,
                                   content_type, producer)
        g = self._acquire_cpu(size, timeout)
        rc = _guard_set_description(g._h, byref(desc))
        if rc:
            err = _last_error_for(rc)
            g.release()
            raise err
        return g

    def _acquire_cpu(self, size: int, timeout: Optional[float]) -> "BufferGuard":
        g = _new_object(BufferGuard)  # _pending_guard(self, False), inline: this is the hot path
        g._h = _PENDING
        g._pool = self
        g._out = out = GuardOut()
        g._ro = False
        g._lease = None
        if timeout is None:
            rc = _pool_acquire_cpu(self._h, size, byref(out), byref(out, 8))
        else:
            rc = self._acquire_wait(size, timeout, out)
        if rc:
            g._h = 0
            raise self._fail(rc)
        g._h = out.guard
        return g

    def _acquire_wait(self, size: int, timeout: float, out: GuardOut) -> int:
        timeout = float(timeout)
        if not timeout >= 0:
            raise InvalidArgumentError("timeout is %r; it must be None, a number of seconds >= 0, or math.inf." % timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            # Wait in slices of at most 100 ms: between them Python runs its signal handlers (Ctrl-C works).
            slice_s = min(max(left, 0.0), 0.1)
            rc = _pool_acquire_cpu_wait(self._h, size, int(slice_s * 1e9), byref(out), byref(out, 8))
            if rc != Status.TIMEOUT:
                return rc
            if left <= slice_s:
                raise XmemTimeoutError(
                    "pool %r: no slot was released within %g s (all %d are live). Release buffers sooner, wait "
                    "longer, or create the pool with a larger capacity." % (self._name, timeout, self._capacity))

    def acquire_cuda(self, size: int, device_id: int = 0) -> "BufferGuard":
        """Acquires a read-write buffer of ``size`` bytes in the memory of CUDA device ``device_id`` (count 1, held by
        the returned guard). Other processes ``get`` the same device memory through CUDA IPC. Allocations are rounded
        up to 2 MiB and kept per slot for reuse (docs/cuda.md).

        Raises:
            CudaUnavailableError: CUDA cannot be used in this process (the message says why: no driver, no device,
                ``device_id`` out of range).
            OutOfMemoryError: the device is full.
        """
        size = _as_int(size, "size", 1, _I64_MAX)
        device_id = _as_int(device_id, "device_id", 0, _I32_MAX)
        out = GuardOut()
        rc = _pool_acquire_cuda(self._h, size, device_id, byref(out), byref(out, 8))
        if rc:
            raise self._fail(rc)
        return _new_guard(self, out, False)

    @property
    def cuda_get_waits_for_writes(self) -> bool:
        """True (the default): :meth:`get`/:meth:`get_mut` of a CUDA buffer make the legacy default stream (the one
        PyTorch and CuPy use unless told otherwise) wait, on the device, for the writes last recorded on the buffer.
        Set it to False to order work yourself with :meth:`BufferGuard.wait_writes_done` /
        :meth:`BufferGuard.synchronize_writes`. For this pool object only."""
        out = c_int32()
        rc = _lib.xmem_pool_cuda_get_waits(self._h, byref(out))
        if rc:
            raise self._fail(rc)
        return bool(out.value)

    @cuda_get_waits_for_writes.setter
    def cuda_get_waits_for_writes(self, on: bool) -> None:
        rc = _lib.xmem_pool_set_cuda_get_waits(self._h, 1 if on else 0)
        if rc:
            raise self._fail(rc)

    def preallocate_cpu(self, size: int, count: int) -> List[int]:
        """Acquires ``count`` buffers of ``size`` bytes and leaves each live with count 1 owned by no process (for
        other processes to take over). Returns their meta indexes. All or nothing."""
        size = _as_int(size, "size", 1, _I64_MAX)
        count = _as_int(count, "count", 0, self._capacity)
        out = (c_int32 * max(count, 1))()
        rc = _pool_preallocate_cpu(self._h, size, count, out)
        if rc:
            raise self._fail(rc)
        return list(out[:count])

    def preallocate_cuda(self, size: int, count: int, device_id: int = 0) -> List[int]:
        """Like :meth:`preallocate_cpu` in the memory of CUDA device ``device_id``. Raises
        :class:`CudaUnavailableError` (with the reason) when CUDA cannot be used here."""
        size = _as_int(size, "size", 1, _I64_MAX)
        count = _as_int(count, "count", 0, self._capacity)
        device_id = _as_int(device_id, "device_id", 0, _I32_MAX)
        out = (c_int32 * max(count, 1))()
        rc = _pool_preallocate_cuda(self._h, size, count, device_id, out)
        if rc:
            raise self._fail(rc)
        return list(out[:count])

    # ------------------------------------------------------------------ get / counts

    def get(self, meta_index: int) -> "BufferGuard":
        """A read-only guard on a live slot; the slot's count goes up by one (down again when the guard is
        released). Raises :class:`SlotNotLiveError` for a slot with no live buffer."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        g = _new_object(BufferGuard)  # _pending_guard(self, True), inline: this is the hot path
        g._h = _PENDING
        g._pool = self
        g._out = out = GuardOut()
        g._ro = True
        g._lease = None
        rc = _pool_get(self._h, meta_index, byref(out), byref(out, 8))
        if rc:
            g._h = 0
            raise self._fail(rc)
        g._h = out.guard
        return g

    def get_mut(self, meta_index: int) -> "BufferGuard":
        """A read-write guard on a live slot; the slot's count goes up by one."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        g = _new_object(BufferGuard)  # _pending_guard(self, False), inline: this is the hot path
        g._h = _PENDING
        g._pool = self
        g._out = out = GuardOut()
        g._ro = False
        g._lease = None
        rc = _pool_get_mut(self._h, meta_index, byref(out), byref(out, 8))
        if rc:
            g._h = 0
            raise self._fail(rc)
        g._h = out.guard
        return g

    def set_ref_count(self, meta_index: int, count: int) -> None:
        """Sets a live slot's count (0..16,777,215), owned by no process; 0 recycles the slot."""
        meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        count = _as_int(count, "count", -_I32_MAX - 1, _I32_MAX)
        rc = _pool_set_ref_count(self._h, meta_index, count)
        if rc:
            raise self._fail(rc)

    def add_ref(self, meta_index: int) -> int:
        """Adds one reference owned by no process; returns the new count."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        out = c_int32()
        rc = _pool_add_ref(self._h, meta_index, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    def release(self, meta_index: int) -> int:
        """Drops one reference owned by no process; returns the new count. At 0 the slot is recycled."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        out = c_int32()
        rc = _pool_release(self._h, meta_index, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    def ref_count(self, meta_index: int) -> int:
        """The slot's current count; 0 for a slot with no live buffer."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        out = c_int32()
        rc = _pool_ref_count(self._h, meta_index, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    def trim(self) -> int:
        """Gives back the memory of free slots; returns the bytes given back."""
        out = c_int64()
        rc = _lib.xmem_pool_trim(self._h, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    # ------------------------------------------------------------------ channels

    def channel(self, name: str, depth: int = 64, mode: str = "queue") -> "Channel":
        """Opens the channel ``name`` of this pool, creating it when it does not exist: a bounded queue of buffers
        in shared memory, for any number of senders and receivers in any processes (see :class:`Channel`).

        Args:
            name: 1-48 of ``[A-Za-z0-9._-]``, not starting with ``.``.
            depth: how many buffers it holds (per subscriber in fan-out mode): a power of two, 1..65536.
            mode: ``"queue"`` (each buffer is received once) or ``"fanout"`` (every subscriber receives every
                buffer; receive through :meth:`Channel.subscribe`). An existing channel must be opened with its depth
                and mode.
        """
        from ._channel import Channel
        return Channel._open(self, name, depth, mode)


class _ViewLease:
    """A native lease that keeps one buffer's memory mapped while any view made from it lives (views hold it)."""

    __slots__ = ("_h", "ptr", "size", "_gen", "__weakref__")

    def __init__(self, guard_handle: int) -> None:
        self._h = 0
        self._gen = _fork_gen[0]
        h = c_uint64()
        ptr = c_void_p()
        size = c_int64()
        _check(_guard_lease_view(guard_handle, byref(h), byref(ptr), byref(size)))
        self._h = h.value
        self.ptr: int = ptr.value or 0
        self.size: int = size.value

    def __del__(self, _release: Any = _lease_release, _fork_gen: List[int] = _fork_gen) -> None:
        h = self._h
        if h and self._gen == _fork_gen[0]:
            self._h = 0
            _release(h)


_GUARD_INVALID_MESSAGE = (
    "this buffer guard no longer owns a reference (it was forgotten, released, or left its `with` block); take a new "
    "one with pool.get(meta_index) or pool.get_mut(meta_index)."
)


class BufferGuard(_accel.GuardBase):
    """One reference to a buffer, owned by this process.

    Leaving a ``with`` block, :meth:`release`, or garbage collection releases the reference exactly once;
    :meth:`forget` hands it off to no process (for another process to release). Afterwards :attr:`is_valid` is
    False and the other properties raise :class:`GuardInvalidError`.

    Zero-copy views (:meth:`memoryview`, :meth:`numpy`, ``numpy.from_dlpack(guard)``, ``torch.from_dlpack(guard)``)
    keep the memory mapped for as long as they live, whatever happens to the guard or the pool: using one never
    crashes. They do not keep the *reference*: once the guard is released, the slot may be reused by other
    processes and the bytes a view shows may change. Keep the guard while you use the data.
    """

    # _out is the native GuardOut the guard came with (handle, size, pointer, meta index): read lazily, so that
    # acquiring costs one structure and no field copies.
    # _cuda_ref: for CUDA buffers, a second guard on the slot taken by the first __cuda_array_interface__, so that
    # consumers holding this object (torch.as_tensor, cupy.asarray) keep the device memory referenced even after
    # release(); it goes when this object is collected.
    # _h, _pool, _out, _ro, _lease and __weakref__ are the base's (C fields in the compiled implementation).
    __slots__ = ("_cuda_ref",)

    _h: int
    _pool: BufferPool
    _out: GuardOut
    _ro: bool
    _lease: Optional[_ViewLease]

    def __init__(self) -> None:
        self._h = 0
        raise TypeError("BufferGuard objects come from BufferPool.acquire_cpu, get and get_mut.")

    # ------------------------------------------------------------------ properties

    @property
    def is_valid(self) -> bool:
        """True while the guard owns its reference (False after :meth:`forget`, :meth:`release` or ``with``)."""
        return self._h != 0

    @property
    def meta_index(self) -> int:
        """The slot's index, to hand to other processes."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        return self._out.meta_index

    @property
    def size(self) -> int:
        """Size of the buffer in bytes."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        return self._out.size

    @property
    def is_read_only(self) -> bool:
        """True for guards from :meth:`BufferPool.get`."""
        return self._ro

    @property
    def is_cuda(self) -> bool:
        """True for a buffer in CUDA device memory."""
        return bool(self._out.flags & BUFFER_CUDA)

    @property
    def device_id(self) -> int:
        """The CUDA device of the buffer; -1 for CPU memory."""
        return self._out.device_id

    @property
    def cpu_ptr(self) -> int:
        """Address of the first byte in this process. Raises :class:`InvalidArgumentError` for a CUDA buffer."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        return self._out.cpu_ptr or self._no_cpu_ptr()

    @property
    def cpu_ptr_mut(self) -> int:
        """Address of the first byte, for writing. Raises :class:`ReadOnlyError` on a guard from ``get``."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        if self._ro:
            raise ReadOnlyError(
                "the guard on slot %d is read-only (from get); take it with get_mut for write access." % self._out.meta_index)
        return self._out.cpu_ptr or self._no_cpu_ptr()

    def _no_cpu_ptr(self) -> int:
        if self._out.flags & BUFFER_CUDA:
            raise InvalidArgumentError(
                "the buffer in slot %d is CUDA device memory (device %d): it has no CPU address. Use cuda_ptr, "
                "__cuda_array_interface__ or DLPack, or copy_to_cpu()." % (self._out.meta_index, self._out.device_id))
        return 0

    @property
    def cuda_ptr(self) -> int:
        """The device pointer of a CUDA buffer, valid in this process while the guard is.

        Raises:
            CudaUnavailableError: CUDA cannot be used in this process (the message says why).
            InvalidArgumentError: the buffer is in CPU memory (with CUDA usable).
        """
        return self._cuda_ptr(_lib.xmem_guard_cuda_ptr)

    @property
    def cuda_ptr_mut(self) -> int:
        """The device pointer of a CUDA buffer, for writing."""
        if self._h and self._ro:
            raise ReadOnlyError(
                "the guard on slot %d is read-only (from get); take it with get_mut for write access." % self._out.meta_index)
        return self._cuda_ptr(_lib.xmem_guard_cuda_ptr_mut)

    def _cuda_ptr(self, fn: Any) -> int:
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        out = c_uint64()
        _check(fn(self._h, byref(out)))
        return out.value

    # ------------------------------------------------------------------ CUDA ordering and copies

    def record_writes_done(self, stream: int = 0) -> None:
        """Records the buffer's interprocess event on CUDA ``stream`` (a ``CUstream`` as an int, e.g.
        ``torch.cuda.current_stream().cuda_stream``; 0 the default stream) after the writes queued there so far:
        readers' ``get`` (or :meth:`wait_writes_done`) wait for it. Releasing a read-write guard records it on the
        legacy default stream by itself; call this when you write on another stream. Read-write guards only."""
        self._cuda_call(_lib.xmem_guard_record_writes_done, _stream_arg(stream))

    def wait_writes_done(self, stream: int = 0) -> None:
        """Makes later work on CUDA ``stream`` wait, on the device, for the writes last recorded on the buffer."""
        self._cuda_call(_guard_wait_writes_done, _stream_arg(stream))

    def synchronize_writes(self) -> None:
        """Blocks until the writes last recorded on the buffer are complete (the GIL is released meanwhile)."""
        self._cuda_call(_lib.xmem_guard_synchronize_writes)

    def _cuda_call(self, fn: Any, *args: Any) -> None:
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        _check(fn(self._h, *args))

    def copy_to_cuda(self, device_id: int = 0) -> "BufferGuard":
        """Copies the buffer into a new buffer of the same pool on CUDA device ``device_id``; returns its read-write
        guard. The description is not copied."""
        return self._copy(_lib.xmem_guard_copy_to_cuda, _as_int(device_id, "device_id", 0, _I32_MAX))

    def copy_to_cpu(self) -> "BufferGuard":
        """Copies the buffer into a new CPU buffer of the same pool; returns its read-write guard (the bytes are in
        place on return). Needs CUDA only for a CUDA source."""
        return self._copy(_lib.xmem_guard_copy_to_cpu)

    def copy_to_device(self, device_id: int) -> "BufferGuard":
        """:meth:`copy_to_cpu` for ``device_id`` -1, else :meth:`copy_to_cuda`."""
        return self._copy(_lib.xmem_guard_copy_to_device, _as_int(device_id, "device_id", -1, _I32_MAX))

    def _copy(self, fn: Any, *args: Any) -> "BufferGuard":
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        out = GuardOut()
        rc = fn(self._h, *args, byref(out), byref(out, 8))
        if rc:
            raise self._pool._fail(rc)
        return _new_guard(self._pool, out, False)

    # ------------------------------------------------------------------ description

    def _read_description(self) -> Optional[Description]:
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        d = _native.Description()
        _check(_guard_description(self._h, byref(d)))
        return _description.decode(d)

    @property
    def description(self) -> Optional[Description]:
        """What the buffer says about itself (:class:`xmem.Description`: dtype, shape, strides, seq,
        timestamp_ns, content_type, producer), or None when it was never described. Read from the slot at each
        access: another process's ``get_mut`` guard may describe it anew."""
        return self._read_description()

    def set_description(self, *, shape: Any = None, dtype: Any = None, strides: Optional[Sequence[int]] = None,
                        seq: int = 0, timestamp_ns: Optional[int] = None, content_type: str = "",
                        producer: str = "") -> None:
        """Describes the buffer for every process that holds it, replacing any earlier description.

        Args:
            shape: elements per dimension (0-8 dimensions). With ``dtype`` alone: 1-D over the whole buffer.
            dtype: ``"uint8"``, ``"int8"``, ``"uint16"``, ``"int16"``, ``"int32"``, ``"int64"``, ``"float16"``,
                ``"bfloat16"``, ``"float32"``, ``"float64"`` or ``"bool"`` (or the NumPy / PyTorch dtype); default
                ``"uint8"`` when a shape is given. Without shape and dtype the buffer is not described as a tensor.
            strides: bytes between elements of each dimension (non-negative multiples of the item size); default
                C-contiguous.
            seq: a sequence number (0..2**64-1).
            timestamp_ns: CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns()``); None: now.
            content_type, producer: tags of at most 31 UTF-8 bytes, e.g. ``"image/rgb8"``, ``"cam0"``.

        Raises:
            InvalidArgumentError: the tensor reaches past the buffer, an unknown dtype, a bad stride or tag (a
                ``ValueError``); nothing is written.
            ReadOnlyError: a guard from ``get``.
        """
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        d = _description.encode(self._out.size, shape, dtype, strides, _as_int(seq, "seq", 0, (1 << 64) - 1),
                                None if timestamp_ns is None else _as_int(timestamp_ns, "timestamp_ns", -(1 << 63), (1 << 63) - 1),
                                content_type, producer)
        _check(_guard_set_description(self._h, byref(d)))

    def _tensor(self) -> Tuple[str, Tuple[int, ...], Tuple[int, ...]]:
        """(dtype, shape, strides in bytes) the views show by default: the description's tensor, else uint8 bytes."""
        d = self._read_description()
        if d is None or d.dtype is None:
            return "uint8", (self._out.size,), (1,)
        return d.dtype, d.shape, d.strides  # type: ignore[return-value]

    @property
    def shape(self) -> Tuple[int, ...]:
        """The shape views show by default: the description's, else ``(size,)``."""
        return self._tensor()[1]

    @property
    def dtype(self) -> str:
        """The element type views show by default, by name (``np.dtype(buf.dtype)`` for NumPy; ``"bfloat16"`` has
        none): the description's, else ``"uint8"``."""
        return self._tensor()[0]

    @property
    def strides(self) -> Tuple[int, ...]:
        """Strides in bytes of the default view: the description's, else ``(1,)``."""
        return self._tensor()[2]

    @property
    def seq(self) -> int:
        """The description's sequence number (0 when the buffer has no description)."""
        d = self._read_description()
        return d.seq if d else 0

    @property
    def timestamp_ns(self) -> int:
        """The description's CLOCK_MONOTONIC timestamp in ns (0 when none), comparable with ``time.monotonic_ns()``."""
        d = self._read_description()
        return d.timestamp_ns if d else 0

    @property
    def timestamp(self) -> float:
        """:attr:`timestamp_ns` in seconds, comparable with ``time.monotonic()``."""
        return self.timestamp_ns / 1e9

    @property
    def content_type(self) -> str:
        """The description's content type (``""`` when unset)."""
        d = self._read_description()
        return d.content_type if d else ""

    @property
    def producer(self) -> str:
        """The description's producer tag (``""`` when unset)."""
        d = self._read_description()
        return d.producer if d else ""

    # ------------------------------------------------------------------ lifetime

    def forget(self) -> None:
        """Stops owning the reference without releasing it: the count stays, now owned by no process, for another
        process to take over (``get`` then release). The guard becomes invalid."""
        h = self._h
        if not h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        if self._pool._gen != _fork_gen[0]:
            self._h = 0
            self._lease = None
            raise PoolClosedError(_inherited_message(self._pool._name), Status.DISPOSED)
        # The native call first, then the handle is dropped: an interrupt between them leaves a spent handle,
        # whose release by __del__ is refused harmlessly, never a reference owned by nothing.
        rc = _guard_forget(h)
        self._h = 0
        self._lease = None
        _check(rc)

    def release(self) -> None:
        """Releases the reference now (as leaving a ``with`` block does). Raises :class:`GuardInvalidError` when it
        was already released or forgotten."""
        h = self._h
        if not h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        # First, as in forget(); an inherited guard's reference is the parent's: nothing to do.
        rc = _guard_release(h) if self._pool._gen == _fork_gen[0] else 0
        self._h = 0
        self._lease = None
        if rc:
            raise _last_error_for(rc)

    def __enter__(self) -> "BufferGuard":
        return self

    def __exit__(self, *exc: object) -> None:
        h = self._h
        if h:
            if self._pool._gen == _fork_gen[0]:  # an inherited guard's reference is the parent's
                _guard_release(h)  # first, as in forget()
            self._h = 0
            self._lease = None

    def __del__(self, _release: Any = _guard_release, _fork_gen: List[int] = _fork_gen) -> None:
        try:
            h = self._h
            if h == _PENDING:  # interrupted between the native call and taking its handle: it is in _out
                h = self._out.guard
        except AttributeError:  # construction failed before the handle was set
            return
        if h and self._pool._gen == _fork_gen[0]:
            _release(h)
            self._h = 0

    def __repr__(self) -> str:
        if not self._h:
            return "<xmem.BufferGuard released>"
        where = " cuda:%d" % self._out.device_id if self._out.flags & BUFFER_CUDA else ""
        return "<xmem.BufferGuard slot=%d size=%d%s %s>" % (self._out.meta_index, self._out.size, where,
                                                           "read-only" if self._ro else "read-write")

    # ------------------------------------------------------------------ views

    def _view_lease(self) -> _ViewLease:
        lease = self._lease
        if lease is None:
            if not self._h:
                raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
            lease = self._lease = _ViewLease(self._h)
        return lease

    def memoryview(self) -> memoryview:
        """A zero-copy ``memoryview`` of the bytes (format ``'B'``), read-only for a guard from ``get``. It keeps the
        memory mapped while it lives (see the class notes)."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        lease = self._lease or self._view_lease()
        arr = (c_ubyte * lease.size).from_address(lease.ptr)
        arr._xmem_lease = lease  # the array owns the lease; the memoryview owns the array
        mv = memoryview(arr).cast("B")
        return mv.toreadonly() if self._ro else mv

    def __buffer__(self, flags: int) -> memoryview:  # Python >= 3.12: memoryview(guard)
        return self.memoryview()

    def __array__(self, dtype: Any = None) -> "numpy.ndarray":
        """``numpy.asarray(guard)`` where the buffer protocol is missing (the ctypes implementation before Python
        3.12) or refused the export (NumPy then tries this): the :meth:`numpy` view, or the error that says why
        there is none (a released guard, a CUDA buffer)."""
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def numpy(self, dtype: Any = None, shape: Union[int, Sequence[int], None] = None) -> "numpy.ndarray":
        """A zero-copy NumPy array over the buffer, read-only for a guard from ``get``.

        With no arguments the array has the buffer's description (shape, dtype and strides, see
        :meth:`set_description`), or is 1-D ``uint8`` over every byte when the buffer has none.

        Args:
            dtype: any NumPy dtype (default: the description's, else ``uint8``). Given without ``shape``: 1-D over
                the whole buffer, whose size must then be a multiple of the item size.
            shape: the array's shape (C order); its bytes must fit in the buffer.
        """
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - exercised only without numpy
            raise ImportError("BufferGuard.numpy() needs NumPy; install it (pip install numpy) or use memoryview().") from None
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        strides = None
        if dtype is None:
            name, dshape, dstrides = self._tensor()
            if name == "bfloat16":
                raise InvalidArgumentError(
                    "the buffer is described as bfloat16, which NumPy has no type for; use torch.from_dlpack(buf), "
                    "or pass dtype= (e.g. 'uint16') to see the raw bits.")
            dtype = name
            if shape is None:
                shape, strides = dshape, dstrides
        dt = np.dtype(dtype)
        mv = self.memoryview()
        itemsize = dt.itemsize
        if shape is None:
            if itemsize == 0 or self._out.size % itemsize:
                raise InvalidArgumentError(
                    "the buffer's %d bytes are not a whole number of %s items (%d bytes each); pass shape=."
                    % (self._out.size, dt, itemsize))
            return np.frombuffer(mv, dtype=dt)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        count = 1
        for d in dims:
            d = _as_int(d, "shape entry", 0, _I64_MAX)
            count *= d
        if strides is not None and tuple(strides) != _description.contiguous_strides(dims, itemsize):
            # The core checked the described extent against the buffer's size.
            return np.ndarray(dims, dtype=dt, buffer=mv, strides=strides)
        if count * itemsize > self._out.size:
            raise InvalidArgumentError(
                "shape %r of %s needs %d bytes; the buffer has %d." % (dims, dt, count * itemsize, self._out.size))
        return np.frombuffer(mv, dtype=dt, count=count).reshape(dims)

    # ------------------------------------------------------------------ CUDA array interface

    @property
    def __cuda_array_interface__(self) -> Dict[str, Any]:
        """The CUDA Array Interface (version 3) of a CUDA buffer, with its description's shape and type, so that
        ``torch.as_tensor(buf, device="cuda")``, ``cupy.asarray(buf)`` and Numba see the device memory without a
        copy (read-only flag set for ``get`` guards). The object that reads it holds this guard; the guard then keeps
        a reference to the buffer of its own until it is collected, so the memory stays valid while such a view
        lives, even after :meth:`release`. ``stream`` is 1 (the legacy default stream): the buffer's recorded writes
        are ordered before work on it. CPU buffers have no such attribute (``hasattr`` is False)."""
        if not self._out.flags & BUFFER_CUDA:
            raise AttributeError("__cuda_array_interface__: the buffer in slot %d is in CPU memory" % self._out.meta_index)
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        name, shape, strides = self._tensor()
        typestr = _description.TYPESTR.get(name)
        if typestr is None:
            raise TypeError("the buffer is described as %s, which the CUDA Array Interface cannot express; use "
                            "torch.from_dlpack(buf)." % name)
        self._hold_cuda_reference()
        contiguous = tuple(strides) == _description.contiguous_strides(shape, _description.itemsize(name))
        return {
            "shape": tuple(shape),
            "typestr": typestr,
            "descr": [("", typestr)],
            "data": (self._out.cuda_ptr, self._ro),
            "strides": None if contiguous else tuple(strides),
            "version": 3,
            "stream": _CU_STREAM_LEGACY,
        }

    def _hold_cuda_reference(self) -> None:
        try:
            ref = self._cuda_ref
        except AttributeError:
            ref = None
        if ref is None or not ref._h:
            pool = self._pool
            ref = pool.get(self._out.meta_index) if self._ro else pool.get_mut(self._out.meta_index)
            # Make the legacy default stream wait for the recorded writes even when the pool leaves ordering to us.
            _check(_guard_wait_writes_done(ref._h, _CU_STREAM_LEGACY))
            self._cuda_ref = ref

    # ------------------------------------------------------------------ DLPack

    def __dlpack__(self, *, stream: Any = None, max_version: Optional[Tuple[int, int]] = None,
                   dl_device: Optional[Tuple[int, int]] = None, copy: Optional[bool] = None) -> Any:
        """Exports the buffer as a DLPack capsule over the same memory, with the buffer's description (shape, dtype,
        strides), else as 1-D ``uint8``. A versioned capsule (``dltensor_versioned``, read-only flag set for ``get``
        guards) when ``max_version`` allows DLPack 1.x, else the unversioned ``dltensor`` older consumers take.

        CPU buffers are on ``(kDLCPU, 0)``; the tensor holds a lease on the mapping. CUDA buffers are on
        ``(kDLCUDA, device_id)``; the tensor holds a reference to the buffer of its own, and ``stream`` (the
        consumer's stream: None or 1 the legacy default stream, 2 the per-thread one, another int a ``CUstream``,
        -1 none) is made to wait for the buffer's recorded writes before the capsule is returned."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        if copy:
            raise BufferError("xmem exports zero-copy views only; copy the array after importing it.")
        device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError("this xmem buffer lives on DLPack device %r; cannot export to %r." % (device, tuple(dl_device)))
        if device[0] == _KDL_CUDA:
            if stream is None:
                stream = _CU_STREAM_LEGACY
            elif stream == 0 or not isinstance(stream, int):
                raise BufferError("stream %r is not a CUDA stream for DLPack (None, 1, 2, a CUstream, or -1)." % (stream,))
            if stream != -1:
                _check(_guard_wait_writes_done(self._h, stream))
        elif stream is not None and stream != -1:
            raise BufferError("stream must be None for CPU buffers (got %r)." % (stream,))
        versioned = max_version is not None and int(max_version[0]) >= 1
        name, shape, strides = self._tensor()
        return _export_dlpack(self._h, name, shape, strides, self._ro, versioned)

    def __dlpack_device__(self) -> Tuple[int, int]:
        """``(kDLCPU, 0)`` for CPU buffers, ``(kDLCUDA, device_id)`` for CUDA buffers."""
        out = self._out
        if out.flags & BUFFER_CUDA:
            return (_KDL_CUDA, out.device_id)
        return (_KDL_CPU, 0)


def _stream_arg(stream: Any) -> int:
    try:
        v = stream.__index__()
    except AttributeError:
        raise TypeError("stream must be an int (a CUstream handle; 0 the default stream), not %s" % type(stream).__name__) from None
    if not 0 <= v < (1 << 64):
        raise InvalidArgumentError("stream %d is not a CUstream handle." % v)
    return v


_new_object = _accel.GuardBase.__new__

# The _h of a guard whose native call is under way: the call writes the handle into the guard's own _out, so that a
# KeyboardInterrupt landing after the call returned (CPython checks for signals right after a C call) leaves the
# reference owned by the guard, whose __del__ releases it, instead of by nothing until the pool closes.
_PENDING = -1


def _pending_guard(pool: BufferPool, ro: bool) -> BufferGuard:
    g = _new_object(BufferGuard)
    g._h = _PENDING
    g._pool = pool
    g._out = GuardOut()
    g._ro = ro
    g._lease = None
    return g


def _new_guard(pool: BufferPool, out: GuardOut, ro: bool) -> BufferGuard:
    g = _new_object(BufferGuard)
    g._h = out.guard
    g._pool = pool
    g._out = out
    g._ro = ro
    g._lease = None
    return g


# ---------------------------------------------------------------------- DLPack capsules

_KDL_CPU = 1
_KDL_CUDA = 2
_CU_STREAM_LEGACY = 1
_py_capsule_new = ctypes.pythonapi.PyCapsule_New
_py_capsule_new.restype = ctypes.py_object
_py_capsule_new.argtypes = [c_void_p, c_void_p, c_void_p]
_check(_lib.xmem_dlpack_init_python(
    ctypes.cast(ctypes.pythonapi.PyCapsule_IsValid, c_void_p), ctypes.cast(ctypes.pythonapi.PyCapsule_GetPointer, c_void_p)))
_capsule_destructor = ctypes.cast(_lib.xmem_dlpack_capsule_destructor, c_void_p).value
_capsule_names = (_lib.xmem_dlpack_capsule_name(0), _lib.xmem_dlpack_capsule_name(1))
_deleter_type = ctypes.CFUNCTYPE(None, c_void_p)


def _export_dlpack(guard_handle: int, dtype: str, shape: Sequence[int], strides: Sequence[int], read_only: bool,
                   versioned: bool) -> Any:
    code, bits = _description.DLPACK_TYPE[dtype]
    item = bits // 8
    n = len(shape)
    shape_arr = (c_int64 * max(n, 1))(*shape)
    strides_arr = (c_int64 * max(n, 1))(*(s // item for s in strides))  # DLPack counts strides in elements
    req = DLPackRequest(code, bits, 1, n, shape_arr, strides_arr, 0,
                        (_native.DLPACK_VERSIONED if versioned else 0) | (_native.DLPACK_READ_ONLY if read_only else 0), 0)
    out = c_void_p()
    _check(_lib.xmem_guard_export_dlpack(guard_handle, byref(req), byref(out)))
    try:
        return _py_capsule_new(out.value, _capsule_names[versioned], _capsule_destructor)
    except BaseException:
        # No capsule owns the tensor: free it through its own deleter (offset 16 versioned, 56 unversioned).
        deleter = c_void_p.from_address(out.value + (16 if versioned else 56)).value
        _deleter_type(deleter)(out.value)
        raise


# ---------------------------------------------------------------------- process events


def _inherited_message(name: str) -> str:
    return ("pool %r was opened before this process was forked: in a child made by fork() it and its guards, views "
            "and channels are inert (their references belong to the parent). Open the pool again in the child with "
            "BufferPool.open(%r), or start children with multiprocessing's 'spawn' or 'forkserver' start method."
            % (name, name))


def _after_fork_in_child() -> None:
    # Pools opened before the fork become closed-looking here (so closing them is a no-op and using them says why);
    # the library has made their native state inert already, in its own atfork handler.
    _fork_gen[0] += 1
    for pool in list(_open_pools):
        pool._h = 0
        box = getattr(pool, "_box", None)
        if box is not None:
            box.value = 0  # the parent's handle: this process must never close it
    _open_pools.clear()


def _close_all_at_exit() -> None:
    # Detach before the interpreter tears down, while everything still works (guards left alive are released by
    # the close; their finalizers then do nothing harmful). Only this process's own pools are in the set.
    for pool in list(_open_pools):
        pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)



# The compiled implementation (xmem._accel) takes over the hot methods; the docstrings above stay the documentation.
_accel.install(BufferPool, BufferGuard, {
    "Status": Status,
    "GuardOut": GuardOut,
    "last_error_for": _last_error_for,
    "as_int": _as_int,
    "guard_invalid": lambda: GuardInvalidError(_GUARD_INVALID_MESSAGE),
    "read_only_error": lambda i: ReadOnlyError(
        "the guard on slot %d is read-only (from get); take it with get_mut for write access." % i),
    "invalid_argument": InvalidArgumentError,
    "timeout_error": XmemTimeoutError,
    "pool_closed": lambda msg: PoolClosedError(msg, Status.DISPOSED),
    "inherited_message": _inherited_message,
    "fork_gen": _fork_gen,
})
