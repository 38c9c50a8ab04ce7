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


def error(rc: int) -> Exception:
    """The exception for status ``rc`` with this thread's last native message (read right after the failed call).

    The message is the core's as it is: it names operations ("open the pool by name"), not the members of any one
    language's API, so it reads the same from C#, C and Python."""
    raw = _last_error()
    msg = raw.decode("utf-8", "replace") if raw else "xmem call failed (status %d)" % rc
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
