"""BufferPool and BufferGuard over the C ABI of libxmem.so."""

from __future__ import annotations

import atexit
import ctypes
import os
import time
import weakref
from ctypes import byref, c_int32, c_int64, c_size_t, c_ubyte, c_uint64, c_void_p
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

from . import _native
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
from ._native import DLPackRequest, GuardOut

if TYPE_CHECKING:  # pragma: no cover
    import numpy

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
_last_error = _lib.xmem_last_error
_last_native_error = _lib.xmem_last_native_error

# A child made by fork() inherits the parent's handles, but not the .NET runtime's threads, nor the parent's entry
# in the pools' process tables: nothing in it may call into the library on the parent's behalf. Finalizers read this
# flag (bound as a default argument, so it outlives module teardown at exit).
_fork_state = [False]
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


class BufferPool:
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

    __slots__ = ("_h", "_name", "_capacity", "__weakref__")

    _h: int
    _name: str
    _capacity: int

    def __init__(self, name: str, capacity: int = 1024, *, mode: int = 0o600, persistent: bool = False) -> None:
        self._h = 0
        bname = _encode_name(name)
        capacity = _as_int(capacity, "capacity", 1, _I32_MAX)
        mode = _as_int(mode, "mode", 0, 0o777)
        h = c_uint64()
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
        h = c_uint64()
        _check(_pool_open(bname, byref(h)))
        pool = BufferPool.__new__(BufferPool)
        pool._h = 0
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
        _open_pools.add(self)

    @staticmethod
    def remove(name: str) -> bool:
        """Removes the pool and all its segments; False when there was none. Processes still attached keep their
        mappings until they close, as with an unlinked file."""
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
        """The pool's name, without the optional leading ``/``."""
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
        h = self._h
        if h:
            self._h = 0
            _open_pools.discard(self)
            _pool_close(h)

    def __enter__(self) -> "BufferPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _close: Any = _pool_close, _fork_state: List[bool] = _fork_state) -> None:
        h = getattr(self, "_h", 0)
        if h and not _fork_state[0]:
            self._h = 0
            _close(h)

    def __repr__(self) -> str:
        if not getattr(self, "_h", 0):
            return "<xmem.BufferPool %r closed>" % getattr(self, "_name", "?")
        return "<xmem.BufferPool %r capacity=%d>" % (self._name, self._capacity)

    def _fail(self, rc: int) -> Exception:
        if not self._h:
            if _fork_state[0]:
                return PoolClosedError(
                    "pool %r was opened before this process forked; a forked child cannot use it. Open it again in "
                    "the child with BufferPool.open(name), or start children with multiprocessing's 'spawn' "
                    "context." % self._name, Status.DISPOSED)
            return PoolClosedError("pool %r is closed; open it again with BufferPool.open(%r)." % (self._name, self._name), Status.DISPOSED)
        return _last_error_for(rc)

    # ------------------------------------------------------------------ acquire

    def acquire_cpu(self, size: int, timeout: Optional[float] = None) -> "BufferGuard":
        """Acquires a read-write buffer of ``size`` bytes; its count is 1, held by the returned guard.

        Args:
            size: bytes, at least 1.
            timeout: ``None`` (the default) fails at once with :class:`PoolFullError` when every slot is live. A
                number of seconds waits that long for any process to release a slot (``math.inf``: no limit),
                without holding the GIL, then raises :class:`XmemTimeoutError` (a ``TimeoutError``).
        """
        if size.__class__ is not int or not 0 < size <= _I64_MAX:
            size = _as_int(size, "size", 1, _I64_MAX)
        out = GuardOut()
        if timeout is None:
            rc = _pool_acquire_cpu(self._h, size, byref(out), byref(out, 8))
        else:
            rc = self._acquire_wait(size, timeout, out)
        if rc:
            raise self._fail(rc)
        g = _new_object(BufferGuard)
        g._h = out.guard
        g._pool = self
        g._out = out
        g._ro = False
        g._lease = None
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
        """Acquires a buffer in CUDA device memory. Raises :class:`CudaUnavailableError` in this CPU-only build."""
        size = _as_int(size, "size", 1, _I64_MAX)
        device_id = _as_int(device_id, "device_id", 0, _I32_MAX)
        out = GuardOut()
        rc = _pool_acquire_cuda(self._h, size, device_id, byref(out), byref(out, 8))
        if rc:
            raise self._fail(rc)
        return _new_guard(self, out, False)

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
        """Like :meth:`preallocate_cpu` in CUDA device memory. Raises :class:`CudaUnavailableError` in this build."""
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
        out = GuardOut()
        rc = _pool_get(self._h, meta_index, byref(out), byref(out, 8))
        if rc:
            raise self._fail(rc)
        g = _new_object(BufferGuard)
        g._h = out.guard
        g._pool = self
        g._out = out
        g._ro = True
        g._lease = None
        return g

    def get_mut(self, meta_index: int) -> "BufferGuard":
        """A read-write guard on a live slot; the slot's count goes up by one."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= _I32_MAX:
            meta_index = _as_int(meta_index, "meta_index", -_I32_MAX - 1, _I32_MAX)
        out = GuardOut()
        rc = _pool_get_mut(self._h, meta_index, byref(out), byref(out, 8))
        if rc:
            raise self._fail(rc)
        g = _new_object(BufferGuard)
        g._h = out.guard
        g._pool = self
        g._out = out
        g._ro = False
        g._lease = None
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


class _ViewLease:
    """A native lease that keeps one buffer's memory mapped while any view made from it lives (views hold it)."""

    __slots__ = ("_h", "ptr", "size", "__weakref__")

    def __init__(self, guard_handle: int) -> None:
        self._h = 0
        h = c_uint64()
        ptr = c_void_p()
        size = c_int64()
        _check(_guard_lease_view(guard_handle, byref(h), byref(ptr), byref(size)))
        self._h = h.value
        self.ptr: int = ptr.value or 0
        self.size: int = size.value

    def __del__(self, _release: Any = _lease_release, _fork_state: List[bool] = _fork_state) -> None:
        h = self._h
        if h and not _fork_state[0]:
            self._h = 0
            _release(h)


_GUARD_INVALID_MESSAGE = (
    "this buffer guard no longer owns a reference (it was forgotten, released, or left its `with` block); take a new "
    "one with pool.get(meta_index) or pool.get_mut(meta_index)."
)


class BufferGuard:
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
    __slots__ = ("_h", "_pool", "_out", "_ro", "_lease", "__weakref__")

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
    def cpu_ptr(self) -> int:
        """Address of the first byte in this process."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        return self._out.cpu_ptr or 0

    @property
    def cpu_ptr_mut(self) -> int:
        """Address of the first byte, for writing. Raises :class:`ReadOnlyError` on a guard from ``get``."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        if self._ro:
            raise ReadOnlyError(
                "the guard on slot %d is read-only (from get); take it with get_mut for write access." % self._out.meta_index)
        return self._out.cpu_ptr or 0

    @property
    def cuda_ptr(self) -> int:
        """The device pointer of a CUDA buffer. Raises :class:`CudaUnavailableError` in this CPU-only build."""
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

    # ------------------------------------------------------------------ lifetime

    def forget(self) -> None:
        """Stops owning the reference without releasing it: the count stays, now owned by no process, for another
        process to take over (``get`` then release). The guard becomes invalid."""
        h = self._h
        if not h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        self._h = 0
        self._lease = None
        if _fork_state[0]:
            raise PoolClosedError("this guard was inherited through fork(); a forked child cannot use it.")
        _check(_guard_forget(h))

    def release(self) -> None:
        """Releases the reference now (as leaving a ``with`` block does). Raises :class:`GuardInvalidError` when it
        was already released or forgotten."""
        h = self._h
        if not h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        self._h = 0
        self._lease = None
        if not _fork_state[0]:
            rc = _guard_release(h)
            if rc:
                raise _last_error_for(rc)

    def __enter__(self) -> "BufferGuard":
        return self

    def __exit__(self, *exc: object) -> None:
        h = self._h
        if h:
            self._h = 0
            self._lease = None
            if not _fork_state[0]:
                _guard_release(h)

    def __del__(self, _release: Any = _guard_release, _fork_state: List[bool] = _fork_state) -> None:
        try:
            h = self._h
        except AttributeError:  # construction failed before the handle was set
            return
        if h and not _fork_state[0]:
            self._h = 0
            _release(h)

    def __repr__(self) -> str:
        if not self._h:
            return "<xmem.BufferGuard released>"
        return "<xmem.BufferGuard slot=%d size=%d %s>" % (self._out.meta_index, self._out.size, "read-only" if self._ro else "read-write")

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

    def numpy(self, dtype: Any = "uint8", shape: Union[int, Sequence[int], None] = None) -> "numpy.ndarray":
        """A zero-copy NumPy array over the buffer, read-only for a guard from ``get``.

        Args:
            dtype: any NumPy dtype; the buffer's size must be a multiple of its item size when ``shape`` is None.
            shape: the array's shape (C order); its bytes must fit in the buffer. None: 1-D over the whole buffer.
        """
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - exercised only without numpy
            raise ImportError("BufferGuard.numpy() needs NumPy; install it (pip install numpy) or use memoryview().") from None
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
        if count * itemsize > self._out.size:
            raise InvalidArgumentError(
                "shape %r of %s needs %d bytes; the buffer has %d." % (dims, dt, count * itemsize, self._out.size))
        return np.frombuffer(mv, dtype=dt, count=count).reshape(dims)

    # ------------------------------------------------------------------ DLPack

    def __dlpack__(self, *, stream: Any = None, max_version: Optional[Tuple[int, int]] = None,
                   dl_device: Optional[Tuple[int, int]] = None, copy: Optional[bool] = None) -> Any:
        """Exports the buffer as a DLPack capsule: a 1-D ``uint8`` tensor on the CPU over the same memory, holding its
        own lease on the mapping. A versioned capsule (``dltensor_versioned``, read-only flag set for ``get``
        guards) when ``max_version`` allows DLPack 1.x, else the unversioned ``dltensor`` older consumers take."""
        if not self._h:
            raise GuardInvalidError(_GUARD_INVALID_MESSAGE)
        if stream is not None and stream != -1:
            raise BufferError("stream must be None for CPU buffers (got %r)." % (stream,))
        if dl_device is not None and tuple(dl_device) != (_KDL_CPU, 0):
            raise BufferError("xmem CPU buffers live on device (1, 0) (kDLCPU); cannot export to %r." % (dl_device,))
        if copy:
            raise BufferError("xmem exports zero-copy views only; copy the array after importing it.")
        versioned = max_version is not None and int(max_version[0]) >= 1
        return _export_dlpack(self._h, self._out.size, self._ro, versioned)

    def __dlpack_device__(self) -> Tuple[int, int]:
        """``(kDLCPU, 0)``."""
        return (_KDL_CPU, 0)


_new_object = object.__new__


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
_KDL_UINT = 1
_py_capsule_new = ctypes.pythonapi.PyCapsule_New
_py_capsule_new.restype = ctypes.py_object
_py_capsule_new.argtypes = [c_void_p, c_void_p, c_void_p]
_check(_lib.xmem_dlpack_init_python(
    ctypes.cast(ctypes.pythonapi.PyCapsule_IsValid, c_void_p), ctypes.cast(ctypes.pythonapi.PyCapsule_GetPointer, c_void_p)))
_capsule_destructor = ctypes.cast(_lib.xmem_dlpack_capsule_destructor, c_void_p).value
_capsule_names = (_lib.xmem_dlpack_capsule_name(0), _lib.xmem_dlpack_capsule_name(1))
_deleter_type = ctypes.CFUNCTYPE(None, c_void_p)


def _export_dlpack(guard_handle: int, size: int, read_only: bool, versioned: bool) -> Any:
    shape = c_int64(size)
    req = DLPackRequest(_KDL_UINT, 8, 1, 1, ctypes.pointer(shape), None, 0,
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


def _after_fork_in_child() -> None:
    _fork_state[0] = True
    for pool in list(_open_pools):
        pool._h = 0
    _open_pools.clear()


def _close_all_at_exit() -> None:
    # Detach before the interpreter tears down, while everything still works (guards left alive are released by
    # the close; their finalizers then do nothing harmful).
    if _fork_state[0]:
        return
    for pool in list(_open_pools):
        pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)

