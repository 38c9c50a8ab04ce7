"""BufferGuard: one reference to a buffer, owned by this process (its properties, description, CUDA pointers and
copies, and lifetime); its views are :class:`xmem._views.GuardViews`.

Invariants
  * ``_h`` is the guard handle while the guard owns its reference, else 0; it goes to 0 right after the native call
    that releases, forgets or sends it, so a handle is given back exactly once (an interrupt in between leaves a
    spent handle, whose second release the library refuses harmlessly).
  * A guard is made before the native call that hands out its reference (:func:`pending_guard`: ``_h`` is
    ``PENDING`` and the call writes the handle into its ``_out``), so that the reference is owned by an object whose
    finalizer releases it from the moment the call returns.
  * A guard whose pool was opened in an older fork generation was inherited through fork(): its reference is the
    parent's; releasing it does nothing here (:mod:`xmem._lifecycle`).
"""

from __future__ import annotations

from ctypes import byref, c_uint64
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from . import _accel, _description, _native
from ._check import I32_MAX, as_int, check, error
from ._description import Description
from ._errors import GuardInvalidError, InvalidArgumentError, PoolClosedError, ReadOnlyError, Status
from ._lifecycle import fork_gen, inherited_message
from ._native import BUFFER_CUDA, GuardOut
from ._views import GUARD_INVALID_MESSAGE, GuardViews, ViewLease

if TYPE_CHECKING:  # pragma: no cover
    from ._pool import BufferPool

__all__ = ["BufferGuard", "pending_guard", "new_guard", "PENDING", "GUARD_INVALID_MESSAGE"]

_lib = _native.lib
_guard_release = _lib.xmem_guard_release
_guard_forget = _lib.xmem_guard_forget
_guard_description = _lib.xmem_guard_description
_guard_set_description = _lib.xmem_guard_set_description
_guard_wait_writes_done = _lib.xmem_guard_wait_writes_done


class BufferGuard(_accel.GuardBase, GuardViews):
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
    _lease: Optional[ViewLease]

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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        return self._out.meta_index

    @property
    def size(self) -> int:
        """Size of the buffer in bytes."""
        if not self._h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        return self._out.cpu_ptr or self._no_cpu_ptr()

    @property
    def cpu_ptr_mut(self) -> int:
        """Address of the first byte, for writing. Raises :class:`ReadOnlyError` on a guard from ``get``."""
        if not self._h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        out = c_uint64()
        check(fn(self._h, byref(out)))
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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        check(fn(self._h, *args))

    def copy_to_cuda(self, device_id: int = 0) -> "BufferGuard":
        """Copies the buffer into a new buffer of the same pool on CUDA device ``device_id``; returns its read-write
        guard. The description is not copied."""
        return self._copy(_lib.xmem_guard_copy_to_cuda, as_int(device_id, "device_id", 0, I32_MAX))

    def copy_to_cpu(self) -> "BufferGuard":
        """Copies the buffer into a new CPU buffer of the same pool; returns its read-write guard (the bytes are in
        place on return). Needs CUDA only for a CUDA source."""
        return self._copy(_lib.xmem_guard_copy_to_cpu)

    def copy_to_device(self, device_id: int) -> "BufferGuard":
        """:meth:`copy_to_cpu` for ``device_id`` -1, else :meth:`copy_to_cuda`."""
        return self._copy(_lib.xmem_guard_copy_to_device, as_int(device_id, "device_id", -1, I32_MAX))

    def _copy(self, fn: Any, *args: Any) -> "BufferGuard":
        if not self._h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        out = GuardOut()
        rc = fn(self._h, *args, byref(out), byref(out, 8))
        if rc:
            raise self._pool._fail(rc)
        return new_guard(self._pool, out, False)

    # ------------------------------------------------------------------ description

    def _read_description(self) -> Optional[Description]:
        if not self._h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        d = _native.Description()
        check(_guard_description(self._h, byref(d)))
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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        d = _description.encode(self._out.size, shape, dtype, strides, as_int(seq, "seq", 0, (1 << 64) - 1),
                                None if timestamp_ns is None else as_int(timestamp_ns, "timestamp_ns", -(1 << 63), (1 << 63) - 1),
                                content_type, producer)
        check(_guard_set_description(self._h, byref(d)))

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
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        if self._pool._gen != fork_gen[0]:
            self._h = 0
            self._lease = None
            raise PoolClosedError(inherited_message(self._pool._name), Status.DISPOSED)
        # The native call first, then the handle is dropped: an interrupt between them leaves a spent handle,
        # whose release by __del__ is refused harmlessly, never a reference owned by nothing.
        rc = _guard_forget(h)
        self._h = 0
        self._lease = None
        check(rc)

    def release(self) -> None:
        """Releases the reference now (as leaving a ``with`` block does). Raises :class:`GuardInvalidError` when it
        was already released or forgotten."""
        h = self._h
        if not h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        # First, as in forget(); an inherited guard's reference is the parent's: nothing to do.
        rc = _guard_release(h) if self._pool._gen == fork_gen[0] else 0
        self._h = 0
        self._lease = None
        if rc:
            raise error(rc)

    def __enter__(self) -> "BufferGuard":
        return self

    def __exit__(self, *exc: object) -> None:
        h = self._h
        if h:
            if self._pool._gen == fork_gen[0]:  # an inherited guard's reference is the parent's
                _guard_release(h)  # first, as in forget()
            self._h = 0
            self._lease = None

    def __del__(self, _release: Any = _guard_release, fork_gen: List[int] = fork_gen) -> None:
        try:
            h = self._h
            if h == PENDING:  # interrupted between the native call and taking its handle: it is in _out
                h = self._out.guard
        except AttributeError:  # construction failed before the handle was set
            return
        if h and self._pool._gen == fork_gen[0]:
            _release(h)
            self._h = 0

    def __repr__(self) -> str:
        if not self._h:
            return "<xmem.BufferGuard released>"
        where = " cuda:%d" % self._out.device_id if self._out.flags & BUFFER_CUDA else ""
        return "<xmem.BufferGuard slot=%d size=%d%s %s>" % (self._out.meta_index, self._out.size, where,
                                                           "read-only" if self._ro else "read-write")


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
PENDING = -1


def pending_guard(pool: BufferPool, ro: bool) -> BufferGuard:
    g = _new_object(BufferGuard)
    g._h = PENDING
    g._pool = pool
    g._out = GuardOut()
    g._ro = ro
    g._lease = None
    return g


def new_guard(pool: BufferPool, out: GuardOut, ro: bool) -> BufferGuard:
    g = _new_object(BufferGuard)
    g._h = out.guard
    g._pool = pool
    g._out = out
    g._ro = ro
    g._lease = None
    return g

