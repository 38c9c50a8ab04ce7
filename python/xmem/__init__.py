"""xmem: a cross-process shared-memory buffer pool.

A producer acquires a buffer from a named pool, fills it, and hands its
``meta_index`` to other processes, which map the same memory without a copy::

    import xmem

    with xmem.BufferPool("cam0", capacity=64) as pool:
        with pool.acquire_cpu(1 << 20) as buf:
            buf.numpy()[:] = 7            # zero-copy view
            pool.add_ref(buf.meta_index)  # one reference for the consumer
            send(buf.meta_index)          # any IPC

    # in another process
    pool = xmem.BufferPool.open("cam0")
    with pool.get(meta_index) as buf:     # read-only guard, count + 1
        frame = numpy.from_dlpack(buf)
    pool.release(meta_index)              # the consumer's reference

Channels move buffers between processes without any other IPC, and a buffer can describe itself (shape, dtype,
sequence number, timestamp, tags) so that consumers get arrays of the right shape with no arguments::

    with pool.channel("frames") as ch:                       # producer
        buf = pool.acquire_cpu(shape=(480, 640, 3), dtype="uint8", seq=n)
        buf.numpy()[:] = frame
        ch.send(buf)                                         # the reference moves into the channel

    for buf in pool.channel("frames"):                       # consumer, another process
        with buf:
            image = buf.numpy()                              # (480, 640, 3) uint8, zero-copy

The native library is ``libxmem.so`` (xmem's C# core compiled with NativeAOT), loaded from ``$XMEM_LIBRARY`` when
set, else from this package. The hot paths (acquire, get, counts, guards, the buffer protocol, channels) run in a
compiled extension module, ``xmem._xmem``; without it (or with ``XMEM_IMPLEMENTATION=ctypes``) the same classes run
on ctypes alone. :data:`implementation` says which: ``"compiled"`` or ``"ctypes"``.
"""

from __future__ import annotations

from ._errors import (
    CanceledError,
    CorruptSegmentError,
    CudaError,
    CudaUnavailableError,
    GuardInvalidError,
    IncompatibleVersionError,
    IndexOutOfRangeError,
    InternalError,
    InvalidArgumentError,
    InvalidHandleError,
    InvalidNameError,
    OutOfMemoryError,
    PermissionDeniedError,
    PoolClosedError,
    PoolExistsError,
    PoolFullError,
    PoolNotFoundError,
    ReadOnlyError,
    SlotNotLiveError,
    Status,
    TooManyProcessesError,
    WouldBlockError,
    XmemError,
    XmemOSError,
    XmemTimeoutError,
)
from ._native import library_path
from ._accel import implementation
from ._guard import BufferGuard
from ._pool import BufferPool
from ._description import Description
from ._channel import Channel, Subscription

__version__ = "0.1.0"

from . import _errors

# The error classes are listed once, in _errors.__all__.
__all__ = [
    "BufferPool",
    "BufferGuard",
    "Channel",
    "Subscription",
    "Description",
    *_errors.__all__,
    "library_path",
    "implementation",
    "__version__",
]
