"""xmem's exception classes and the one status -> exception table.

Every class derives from :class:`XmemError` (a :class:`RuntimeError`), and
those with a fitting builtin derive from it too, so ordinary ``except``
clauses work: ``except FileNotFoundError`` catches a missing pool,
``except ValueError`` a bad argument, ``except TimeoutError`` a wait that ran
out, ``except MemoryError`` an exhausted /dev/shm.
"""

from __future__ import annotations

import enum
from typing import Dict, Optional, Type

__all__ = [
    "Status",
    "XmemError",
    "InvalidArgumentError",
    "InvalidNameError",
    "IndexOutOfRangeError",
    "PoolNotFoundError",
    "PoolExistsError",
    "PermissionDeniedError",
    "PoolFullError",
    "OutOfMemoryError",
    "XmemTimeoutError",
    "ReadOnlyError",
    "GuardInvalidError",
    "SlotNotLiveError",
    "CorruptSegmentError",
    "IncompatibleVersionError",
    "CudaUnavailableError",
    "CudaError",
    "CanceledError",
    "TooManyProcessesError",
    "PoolClosedError",
    "XmemOSError",
    "InvalidHandleError",
    "WouldBlockError",
    "InternalError",
]


class Status(enum.IntEnum):
    """The cause of a failure: the same numbers as ``XmemStatus`` in C# and ``XMEM_E_*`` in xmem.h."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_NAME = 2
    NOT_FOUND = 3
    ALREADY_EXISTS = 4
    PERMISSION_DENIED = 5
    POOL_FULL = 6
    OUT_OF_MEMORY = 7
    TIMEOUT = 8
    READ_ONLY = 9
    GUARD_INVALID = 10
    INDEX_OUT_OF_RANGE = 11
    SLOT_NOT_LIVE = 12
    CORRUPT_SEGMENT = 13
    INCOMPATIBLE_VERSION = 14
    CUDA_UNAVAILABLE = 15
    CUDA_ERROR = 16
    CANCELED = 17
    TOO_MANY_PROCESSES = 18
    DISPOSED = 19
    OS_ERROR = 20
    INVALID_HANDLE = 21
    WOULD_BLOCK = 22
    INTERNAL = 99


class XmemError(RuntimeError):
    """Base class of every xmem error.

    Attributes:
        status: the cause (:class:`Status`).
        native_error: the errno (or CUDA ``CUresult``) behind it; 0 when none.
    """

    status: Status = Status.INTERNAL
    native_error: int = 0

    def __init__(self, message: str, status: Optional[int] = None, native_error: int = 0) -> None:
        super().__init__(message)
        if status is not None:
            self.status = Status(status) if status in _STATUS_VALUES else status  # type: ignore[assignment]
        self.native_error = native_error
        if native_error and isinstance(self, OSError):
            self.errno = native_error

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(XmemError, ValueError):
    """An argument is out of its range or malformed (sizes, counts, capacities, modes, dtypes, shapes)."""

    status = Status.INVALID_ARGUMENT


class InvalidNameError(InvalidArgumentError):
    """A pool name is not an optional '/' followed by 1-200 of [A-Za-z0-9._-]."""

    status = Status.INVALID_NAME


class IndexOutOfRangeError(InvalidArgumentError, IndexError):
    """A meta index is outside the pool's slots 0..capacity-1."""

    status = Status.INDEX_OUT_OF_RANGE


class PoolNotFoundError(XmemError, FileNotFoundError):
    """No pool of that name exists."""

    status = Status.NOT_FOUND


class PoolExistsError(XmemError, FileExistsError):
    """A live pool of that name exists already."""

    status = Status.ALREADY_EXISTS


class PermissionDeniedError(XmemError, PermissionError):
    """The pool's permissions do not admit this process."""

    status = Status.PERMISSION_DENIED


class PoolFullError(XmemError):
    """Every slot of the pool is live; release buffers, wait (``timeout=``), or use a larger capacity."""

    status = Status.POOL_FULL


class OutOfMemoryError(XmemError, MemoryError):
    """The machine or the shared-memory file system cannot give the memory asked for."""

    status = Status.OUT_OF_MEMORY


class XmemTimeoutError(XmemError, TimeoutError):
    """A wait ran out of time."""

    status = Status.TIMEOUT


class ReadOnlyError(XmemError):
    """Write access was asked of a read-only guard (from ``get``); use ``get_mut``."""

    status = Status.READ_ONLY


class GuardInvalidError(XmemError):
    """The guard no longer owns a reference: it was forgotten, released, or left its ``with`` block."""

    status = Status.GUARD_INVALID


class SlotNotLiveError(XmemError, LookupError):
    """The slot holds no live buffer: its last reference was released."""

    status = Status.SLOT_NOT_LIVE


class CorruptSegmentError(XmemError):
    """A shared segment breaks xmem's layout; remove the pool (``xmem rm``) and create it again."""

    status = Status.CORRUPT_SEGMENT


class IncompatibleVersionError(XmemError):
    """The pool was made by an incompatible version of xmem."""

    status = Status.INCOMPATIBLE_VERSION


class CudaUnavailableError(XmemError):
    """CUDA cannot be used here (no driver, no device, or no CUDA support in this build)."""

    status = Status.CUDA_UNAVAILABLE


class CudaError(XmemError):
    """A CUDA driver call failed; ``native_error`` is the ``CUresult``."""

    status = Status.CUDA_ERROR


class CanceledError(XmemError):
    """The wait was cancelled."""

    status = Status.CANCELED


class TooManyProcessesError(XmemError):
    """The pool's table of attached processes is full."""

    status = Status.TOO_MANY_PROCESSES


class PoolClosedError(XmemError, ValueError):
    """The pool was closed (like I/O on a closed file, a ``ValueError``)."""

    status = Status.DISPOSED


class XmemOSError(XmemError, OSError):
    """Another operating-system error; ``errno`` / ``native_error`` is the raw errno."""

    status = Status.OS_ERROR


class InvalidHandleError(XmemError):
    """A native handle was stale, already destroyed, or of the wrong kind."""

    status = Status.INVALID_HANDLE


class WouldBlockError(XmemError, BlockingIOError):
    """A channel is full or empty and the caller asked not to wait."""

    status = Status.WOULD_BLOCK


class InternalError(XmemError):
    """An unexpected internal failure; please report it with its message."""

    status = Status.INTERNAL


_STATUS_VALUES = frozenset(int(s) for s in Status)

#: status -> class; every nonzero Status has exactly one.
ERROR_CLASSES: Dict[int, Type[XmemError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError, InvalidNameError, PoolNotFoundError, PoolExistsError, PermissionDeniedError,
        PoolFullError, OutOfMemoryError, XmemTimeoutError, ReadOnlyError, GuardInvalidError, IndexOutOfRangeError,
        SlotNotLiveError, CorruptSegmentError, IncompatibleVersionError, CudaUnavailableError, CudaError,
        CanceledError, TooManyProcessesError, PoolClosedError, XmemOSError, InvalidHandleError, WouldBlockError,
        InternalError,
    )
}


def error_for(status: int, message: str, native_error: int = 0) -> XmemError:
    """The exception for a nonzero status (unknown numbers give :class:`XmemError` carrying the number)."""
    cls = ERROR_CLASSES.get(status)
    if cls is None:
        return XmemError("%s (xmem status %d)" % (message, status), status, native_error)
    return cls(message, status, native_error)
