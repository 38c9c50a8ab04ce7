"""Zero-copy views of a guard's buffer: ``memoryview()``, ``numpy()``, ``__array__``, DLPack (``__dlpack__``) and the
CUDA Array Interface, for the ctypes implementation (the compiled module has its own ``memoryview``, ``numpy``,
``__dlpack__`` and ``__cuda_array_interface__``, CPU and CUDA, over the same C ABI calls and the same DLPack layout
declared here).

Invariants
  * Every view holds a native lease on the buffer's mapping (xmem_guard_lease_view), dropped when the last object
    made from it goes: a view never outlives the mapping, whatever happens to the guard or the pool. A lease taken
    before a fork is the parent's: a child never drops it (its generation is older, see :mod:`xmem._lifecycle`).
  * A view keeps the mapping, not the reference: once the guard is released the slot may be reused.
  * The DLPack structures are declared once, below; the deleter offsets both implementations use (a capsule that
    could not be made frees its tensor through its own deleter) come from them.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_int32, c_int64, c_uint8, c_uint16, c_uint64, c_ubyte, c_void_p
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _description, _native
from ._check import I64_MAX, as_int, check
from ._errors import GuardInvalidError, InvalidArgumentError, PoolClosedError, Status
from ._lifecycle import fork_gen, inherited_message
from ._native import BUFFER_CUDA, DLPackRequest

if TYPE_CHECKING:  # pragma: no cover
    import numpy

__all__ = ["GuardViews", "ViewLease", "DLPACK_DELETER_OFFSET", "GUARD_INVALID_MESSAGE"]

_lib = _native.lib
_guard_lease_view = _lib.xmem_guard_lease_view
_lease_release = _lib.xmem_lease_release
_guard_wait_writes_done = _lib.xmem_guard_wait_writes_done

GUARD_INVALID_MESSAGE = (
    "this buffer guard no longer owns a reference (it was forgotten, released, or left its `with` block); take a new "
    "one with pool.get(meta_index) or pool.get_mut(meta_index)."
)


# ---------------------------------------------------------------------- DLPack (dlpack.h, v1.0)

class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p), ("deleter", c_void_p), ("flags", c_uint64),
                ("dl_tensor", DLTensor)]


#: Offset of ``deleter`` in DLManagedTensor (unversioned, [0]) and DLManagedTensorVersioned ([1]).
DLPACK_DELETER_OFFSET = (DLManagedTensor.deleter.offset, DLManagedTensorVersioned.deleter.offset)
assert DLPACK_DELETER_OFFSET == (56, 16) and ctypes.sizeof(DLTensor) == 48

_KDL_CPU = 1
_KDL_CUDA = 2
_CU_STREAM_LEGACY = 1
_py_capsule_new = ctypes.pythonapi.PyCapsule_New
_py_capsule_new.restype = ctypes.py_object
_py_capsule_new.argtypes = [c_void_p, c_void_p, c_void_p]
check(_lib.xmem_dlpack_init_python(
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
    check(_lib.xmem_guard_export_dlpack(guard_handle, byref(req), byref(out)))
    try:
        return _py_capsule_new(out.value, _capsule_names[versioned], _capsule_destructor)
    except BaseException:
        # No capsule owns the tensor: free it through its own deleter.
        deleter = c_void_p.from_address(out.value + DLPACK_DELETER_OFFSET[versioned]).value
        _deleter_type(deleter)(out.value)
        raise


# ---------------------------------------------------------------------- leases

class ViewLease:
    """A native lease that keeps one buffer's memory mapped while any view made from it lives (views hold it)."""

    __slots__ = ("_h", "ptr", "size", "_gen", "__weakref__")

    def __init__(self, guard_handle: int) -> None:
        self._h = 0
        self._gen = fork_gen[0]
        h = c_uint64()
        ptr = c_void_p()
        size = c_int64()
        check(_guard_lease_view(guard_handle, byref(h), byref(ptr), byref(size)))
        self._h = h.value
        self.ptr: int = ptr.value or 0
        self.size: int = size.value

    def __del__(self, _release: Any = _lease_release, fork_gen: List[int] = fork_gen) -> None:
        h = self._h
        if h and self._gen == fork_gen[0]:
            self._h = 0
            _release(h)


class GuardViews:
    """The views of :class:`xmem.BufferGuard` (a base of it, with no state of its own: it uses the guard's ``_h``,
    ``_out``, ``_ro``, ``_lease``, ``_pool`` and ``_tensor()``)."""

    __slots__ = ()

    _h: int
    _out: Any
    _ro: bool
    _lease: Optional[ViewLease]
    _pool: Any

    def _tensor(self) -> Tuple[str, Tuple[int, ...], Tuple[int, ...]]:  # pragma: no cover - BufferGuard's
        raise NotImplementedError

    def _live(self) -> None:
        """Raises unless the guard owns its reference in this process: GuardInvalidError once it let go of it,
        PoolClosedError naming fork when it was inherited (a view made now would hold a lease that is the parent's)."""
        if not self._h:
            raise GuardInvalidError(GUARD_INVALID_MESSAGE)
        pool = self._pool
        if pool._gen != fork_gen[0]:
            raise PoolClosedError(inherited_message(pool._name), Status.DISPOSED)


    def _view_lease(self) -> ViewLease:
        lease = self._lease
        if lease is None:
            if not self._h:
                raise GuardInvalidError(GUARD_INVALID_MESSAGE)
            lease = self._lease = ViewLease(self._h)
        return lease

    def memoryview(self) -> memoryview:
        """A zero-copy ``memoryview`` of the bytes (format ``'B'``), read-only for a guard from ``get``. It keeps the
        memory mapped while it lives (see the class notes)."""
        self._live()
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
        self._live()
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
            d = as_int(d, "shape entry", 0, I64_MAX)
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
        ``cupy.asarray(buf)``, Numba and (for writable guards) ``torch.as_tensor(buf, device="cuda")`` see the device
        memory without a copy.

        The read-only flag is True for ``get`` guards: Numba honours it, CuPy ignores it, and PyTorch refuses any
        read-only interface ("the read only flag is not supported") — for a ``get`` guard use
        ``torch.from_dlpack(buf)`` instead (DLPack carries the flag in versioned capsules), or ``get_mut``.

        The object that reads it holds this guard; the guard then keeps a reference to the buffer of its own until it
        is collected, so the memory stays valid (allocated, or mapped in this process) while such a view lives, even
        after :meth:`release` or the pool's ``close()``. ``stream`` is 1 (the legacy default stream): the buffer's
        recorded writes are ordered before work on it (writes are recorded when a writable guard is released, or by
        :meth:`record_writes_done`). CPU buffers have no such attribute (``hasattr`` is False)."""
        if not self._out.flags & BUFFER_CUDA:
            raise AttributeError("__cuda_array_interface__: the buffer in slot %d is in CPU memory" % self._out.meta_index)
        self._live()
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
            check(_guard_wait_writes_done(ref._h, _CU_STREAM_LEGACY))
            self._cuda_ref = ref

    # ------------------------------------------------------------------ DLPack

    def __dlpack__(self, *, stream: Any = None, max_version: Optional[Tuple[int, int]] = None,
                   dl_device: Optional[Tuple[int, int]] = None, copy: Optional[bool] = None) -> Any:
        """Exports the buffer as a DLPack capsule over the same memory, with the buffer's description (shape, dtype,
        strides), else as 1-D ``uint8``. A versioned capsule (``dltensor_versioned``, read-only flag set for ``get``
        guards) when ``max_version`` allows DLPack 1.x, else the unversioned ``dltensor`` older consumers take.

        CPU buffers are on ``(kDLCPU, 0)``; the tensor holds a lease on the mapping. CUDA buffers are on
        ``(kDLCUDA, device_id)``; the tensor holds a reference to the buffer of its own, which keeps the device
        memory valid until the consumer deletes the tensor, even after the pool's ``close()``. ``stream`` (the
        consumer's stream: None or 1 the legacy default stream, 2 the per-thread one, another int a ``CUstream``,
        -1 none) is made to wait for the buffer's *recorded* writes before the capsule is returned: writes recorded
        when a writable guard was released or by :meth:`record_writes_done`. Writes still queued on another stream
        without a record (a producer holding its guard) are not ordered: record them first."""
        self._live()
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
                check(_guard_wait_writes_done(self._h, stream))
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


