"""BufferPool over the C ABI of libxmem.so: creation and attachment, acquire, get, reference counts, channels.

Invariants
  * ``_box`` holds the native handle, written by the create/open call straight into this object, so that an
    interrupt (KeyboardInterrupt) landing anywhere after the call returned leaves the handle owned by an object whose
    close/__del__/exit hook closes it. ``_h`` is the same handle for the calls (0 once closing began).
  * ``_gen`` is the fork generation the pool was opened in: a pool inherited through fork() is dead in the child, and
    its handle is never closed there (:mod:`xmem._lifecycle`).
  * Guards are made before the native call that hands out their reference (:func:`xmem._guard.pending_guard`).
"""

from __future__ import annotations

import ctypes
import time
import weakref
from ctypes import byref, c_int32, c_int64, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from . import _accel, _description, _native
from ._check import I32_MAX, I64_MAX, as_int, check, encode_name, error
from ._async import AsyncSource, release
from ._errors import (GuardInvalidError, InvalidArgumentError, PoolClosedError, PoolFullError, ReadOnlyError, Status,
                      XmemTimeoutError)
from ._guard import PENDING as _PENDING, BufferGuard
from ._lifecycle import fork_gen, inherited_message, open_pools
from ._native import GuardOut
from ._views import DLPACK_DELETER_OFFSET, GUARD_INVALID_MESSAGE, GuardViews

if TYPE_CHECKING:  # pragma: no cover
    from ._channel import Channel

__all__ = ["BufferPool", "BufferGuard"]

_lib = _native.lib

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
_guard_set_description = _lib.xmem_guard_set_description
_new_object = _accel.GuardBase.__new__


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
    __slots__ = ("_box", "_name", "_capacity", "_async")

    _h: int
    _box: c_uint64
    _name: str
    _capacity: int
    _gen: int

    def __init__(self, name: str, capacity: int = 1024, *, mode: int = 0o600, persistent: bool = False) -> None:
        self._h = 0
        self._name = name
        self._gen = fork_gen[0]
        bname = encode_name(name)
        capacity = as_int(capacity, "capacity", 1, I32_MAX)
        mode = as_int(mode, "mode", 0, 0o777)
        h = self._box = c_uint64()
        open_pools.add(self)  # before the call: the exit hook closes whatever the box holds
        check(_pool_create(bname, capacity, mode, 1 if persistent else 0, byref(h)))
        self._attach(h.value)

    @staticmethod
    def open(name: str) -> "BufferPool":
        """Attaches to an existing pool.

        Raises:
            PoolNotFoundError: there is no pool of that name (a ``FileNotFoundError``).
            PermissionDeniedError: its mode does not admit this user (a ``PermissionError``).
        """
        bname = encode_name(name)
        pool = BufferPool.__new__(BufferPool)
        pool._h = 0
        pool._name = name
        pool._gen = fork_gen[0]
        h = pool._box = c_uint64()
        open_pools.add(pool)
        check(_pool_open(bname, byref(h)))
        pool._attach(h.value)
        return pool

    def _attach(self, handle: int) -> None:
        self._h = handle
        cap = c_int32()
        n = c_size_t()
        buf = ctypes.create_string_buffer(256)
        check(_lib.xmem_pool_capacity(handle, byref(cap)))
        check(_lib.xmem_pool_name(handle, buf, 256, byref(n)))
        self._capacity = cap.value
        self._name = buf.value.decode("utf-8")

    @staticmethod
    def remove(name: str) -> bool:
        """Removes the pool and all its segments; False when there was none. Processes still attached keep their
        mappings until they close, as with an unlinked file. Raises PermissionError (PermissionDeniedError) when
        segments made by other users could not be unlinked (a sticky /dev/shm lets only their owner or root); the
        pool is removed all the same."""
        out = c_int32()
        check(_lib.xmem_pool_remove(encode_name(name), byref(out)))
        return bool(out.value)

    @staticmethod
    def exists(name: str) -> bool:
        """True when a pool of this name exists."""
        out = c_int32()
        check(_lib.xmem_pool_exists(encode_name(name), byref(out)))
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
        if box is None or self._gen != fork_gen[0]:  # inherited through fork: the parent's handle, never closed here
            return
        h = box.value
        if h:
            self._h = 0  # other threads' calls fail as "closed" from here on
            # The compiled module's: buffer exports that borrow a guard's mapping move onto a lease while there is
            # still a pool to give one.
            settle = getattr(self, "_settle_exports", None)
            if settle is not None:
                settle()
            # Interrupted before the next line, the box still holds the handle (closed by __del__ or at exit); after
            # it, the close is done and a repeat of it is refused harmlessly (handles are never reused).
            _pool_close(h)
            box.value = 0
            open_pools.discard(self)

    def __enter__(self) -> "BufferPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _close: Any = _pool_close, fork_gen: List[int] = fork_gen) -> None:
        box = getattr(self, "_box", None)
        if box is not None and box.value and getattr(self, "_gen", -1) == fork_gen[0]:
            self._h = 0
            _close(box.value)
            box.value = 0

    def __repr__(self) -> str:
        if not getattr(self, "_h", 0):
            return "<xmem.BufferPool %r closed>" % getattr(self, "_name", "?")
        return "<xmem.BufferPool %r capacity=%d>" % (self._name, self._capacity)

    def _fail(self, rc: int) -> Exception:
        if not self._h:
            if self._gen != fork_gen[0]:
                return PoolClosedError(inherited_message(self._name), Status.DISPOSED)
            return PoolClosedError("pool %r is closed; open it again with BufferPool.open(%r)." % (self._name, self._name), Status.DISPOSED)
        return error(rc)

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
            if size.__class__ is not int or not 0 < size <= I64_MAX:
                size = self._size_arg(size)
            return self._acquire_cpu(size, timeout)
        return self._acquire_described(size, timeout, shape, dtype, strides, seq, content_type, producer)

    async def aacquire_cpu(self, size: Optional[int] = None, timeout: Optional[float] = None, *, shape: Any = None,
                           dtype: Any = None, strides: Optional[Sequence[int]] = None, seq: int = 0,
                           content_type: str = "", producer: str = "") -> "BufferGuard":
        """:meth:`acquire_cpu` for asyncio, waiting for a free slot without blocking the event loop: a free slot is
        taken at once; otherwise one helper thread per pool (however many coroutines wait) waits in the native
        library and serves the waiting coroutines oldest first. ``timeout`` None waits as long as it takes, else
        that many seconds, then :class:`XmemTimeoutError`. Cancelling the coroutine (``asyncio.CancelledError``)
        takes no slot: a buffer acquired for it as it was cancelled is released. The other arguments are
        :meth:`acquire_cpu`'s."""
        kwargs = {"shape": shape, "dtype": dtype, "strides": strides, "seq": seq, "content_type": content_type,
                  "producer": producer}
        try:
            return self.acquire_cpu(size, None, **kwargs)  # at once, or PoolFullError
        except PoolFullError:
            pass
        if timeout == 0:
            raise XmemTimeoutError("every slot of pool %r is live; release buffers or wait (timeout=)." % self._name)
        if timeout is not None and not float(timeout) >= 0:
            raise InvalidArgumentError("timeout is %r; it must be None (wait as long as it takes), 0 (do not wait) or "
                                       "a number of seconds." % (timeout,))
        src = getattr(self, "_async", None)
        if src is None:
            src = self._async = AsyncSource(_take_slot(self), release, True, "xmem aacquire_cpu")
        return await src.wait((size, kwargs), timeout, lambda: XmemTimeoutError(
            "no slot of pool %r was freed within %g s; release buffers or wait longer." % (self._name, timeout)))

    def _size_arg(self, size: Any) -> int:
        if size is None:
            raise TypeError("acquire_cpu() needs a size in bytes, or shape= (and dtype=) to size the buffer for a tensor.")
        return as_int(size, "size", 1, I64_MAX)

    def _acquire_described(self, size: Optional[int], timeout: Optional[float], shape: Any, dtype: Any,
                           strides: Optional[Sequence[int]], seq: int, content_type: str,
                           producer: str) -> "BufferGuard":
        # acquire_cpu with a description (both implementations): size it for the tensor when no size is given, check
        # the description before acquiring, write it before returning (a failed write releases the buffer).
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
        size = as_int(size, "size", 1, I64_MAX)
        desc = _description.encode(size, shape, dtype, strides, as_int(seq, "seq", 0, (1 << 64) - 1), None,
                                   content_type, producer)
        g = self._acquire_cpu(size, timeout)
        rc = _guard_set_description(g._h, byref(desc))
        if rc:
            err = error(rc)
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
        size = as_int(size, "size", 1, I64_MAX)
        device_id = as_int(device_id, "device_id", 0, I32_MAX)
        g = _new_object(BufferGuard)  # a pending guard: it owns the reference from the moment the call returns
        g._h = _PENDING
        g._pool = self
        g._out = out = GuardOut()
        g._ro = False
        g._lease = None
        rc = _pool_acquire_cuda(self._h, size, device_id, byref(out), byref(out, 8))
        if rc:
            g._h = 0
            raise self._fail(rc)
        g._h = out.guard
        return g

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
        size = as_int(size, "size", 1, I64_MAX)
        count = as_int(count, "count", 0, self._capacity)
        out = (c_int32 * max(count, 1))()
        rc = _pool_preallocate_cpu(self._h, size, count, out)
        if rc:
            raise self._fail(rc)
        return list(out[:count])

    def preallocate_cuda(self, size: int, count: int, device_id: int = 0) -> List[int]:
        """Like :meth:`preallocate_cpu` in the memory of CUDA device ``device_id``. Raises
        :class:`CudaUnavailableError` (with the reason) when CUDA cannot be used here."""
        size = as_int(size, "size", 1, I64_MAX)
        count = as_int(count, "count", 0, self._capacity)
        device_id = as_int(device_id, "device_id", 0, I32_MAX)
        out = (c_int32 * max(count, 1))()
        rc = _pool_preallocate_cuda(self._h, size, count, device_id, out)
        if rc:
            raise self._fail(rc)
        return list(out[:count])

    # ------------------------------------------------------------------ get / counts

    def get(self, meta_index: int) -> "BufferGuard":
        """A read-only guard on a live slot; the slot's count goes up by one (down again when the guard is
        released). Raises :class:`SlotNotLiveError` for a slot with no live buffer."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= I32_MAX:
            meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
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
        if meta_index.__class__ is not int or not 0 <= meta_index <= I32_MAX:
            meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
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
        meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
        count = as_int(count, "count", -I32_MAX - 1, I32_MAX)
        rc = _pool_set_ref_count(self._h, meta_index, count)
        if rc:
            raise self._fail(rc)

    def add_ref(self, meta_index: int) -> int:
        """Adds one reference owned by no process; returns the new count."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= I32_MAX:
            meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
        out = c_int32()
        rc = _pool_add_ref(self._h, meta_index, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    def release(self, meta_index: int) -> int:
        """Drops one reference owned by no process; returns the new count. At 0 the slot is recycled."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= I32_MAX:
            meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
        out = c_int32()
        rc = _pool_release(self._h, meta_index, byref(out))
        if rc:
            raise self._fail(rc)
        return out.value

    def ref_count(self, meta_index: int) -> int:
        """The slot's current count; 0 for a slot with no live buffer."""
        if meta_index.__class__ is not int or not 0 <= meta_index <= I32_MAX:
            meta_index = as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)
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


def _take_slot(pool: BufferPool) -> Any:
    """The helper thread's wait for one slot, sized by the oldest waiter's arguments; None after ``seconds``. It
    holds the pool weakly (the pool holds it), so that an unreferenced pool is still closed by its __del__."""
    ref = weakref.ref(pool)

    def take(args: Any, seconds: float) -> Optional[BufferGuard]:
        size, kwargs = args
        p = ref()
        if p is None:
            raise PoolClosedError("the pool was collected while coroutines waited for a slot.", Status.DISPOSED)
        try:
            return p.acquire_cpu(size, seconds, **kwargs)
        except XmemTimeoutError:
            return None
    return take


# The compiled implementation (xmem._accel) takes over the hot methods; the docstrings above stay the documentation.
_accel.install(BufferPool, BufferGuard, {
    "Status": Status,
    "GuardOut": GuardOut,
    "last_error_for": error,
    "as_int": as_int,
    "guard_invalid": lambda: GuardInvalidError(GUARD_INVALID_MESSAGE),
    "read_only_error": lambda i: ReadOnlyError(
        "the guard on slot %d is read-only (from get); take it with get_mut for write access." % i),
    "invalid_argument": InvalidArgumentError,
    "timeout_error": XmemTimeoutError,
    "pool_closed": lambda msg: PoolClosedError(msg, Status.DISPOSED),
    "inherited_message": inherited_message,
    "fork_gen": fork_gen,
    "dlpack_deleter_offset": DLPACK_DELETER_OFFSET,
    "views_class": GuardViews,
})
