"""The one error path of the package: a C ABI status (with this thread's last native message) -> an exception, and
the argument checks every module shares.

Every native call's status goes through :func:`check` (or :func:`error` where the caller adds context first, as a
closed pool does); the exception class comes from the one table in :mod:`xmem._errors`.
"""

from __future__ import annotations

from typing import Any

from . import _native
from ._errors import InvalidArgumentError, InvalidNameError, error_for

__all__ = ["check", "error", "as_int", "encode_name", "I32_MAX", "I64_MAX"]

I32_MAX = 0x7FFFFFFF
I64_MAX = 0x7FFFFFFFFFFFFFFF

_last_error = _native.lib.xmem_last_error
_last_native_error = _native.lib.xmem_last_native_error

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


def error(rc: int) -> Exception:
    """The exception for status ``rc`` with this thread's last native message (read right after the failed call)."""
    raw = _last_error()
    msg = raw.decode("utf-8", "replace") if raw else "xmem call failed (status %d)" % rc
    for cs, py in _PYTHON_NAMES:
        if cs in msg:
            msg = msg.replace(cs, py)
    return error_for(rc, msg, _last_native_error())


def check(rc: int) -> None:
    """Raises the exception for a nonzero status."""
    if rc:
        raise error(rc)


def as_int(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an int within lo..hi: a TypeError for a non-integer, an InvalidArgumentError when out of range."""
    try:
        v = value.__index__()
    except AttributeError:
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__)) from None
    if not lo <= v <= hi:
        raise InvalidArgumentError("%s is %d; it must be within %d..%d." % (what, v, lo, hi))
    return v


def encode_name(name: Any) -> bytes:
    """A pool name for the C ABI (UTF-8, NUL-terminated by ctypes)."""
    if not isinstance(name, str):
        raise TypeError("pool name must be a str, not %s" % type(name).__name__)
    if "\0" in name:
        raise InvalidNameError("pool name %r contains NUL; use only [A-Za-z0-9._-] after an optional leading '/'." % name)
    return name.encode("utf-8")
