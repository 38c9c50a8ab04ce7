"""Which implementation runs the hot paths: the compiled module (xmem._xmem, Cython over the C ABI) or ctypes.

``XMEM_IMPLEMENTATION`` chooses: ``compiled`` (fail at import when the module is missing), ``ctypes`` (the pure
Python fallback), or unset (the compiled module when it is there, else ctypes). Both run behind the same classes,
:class:`xmem.BufferPool` and :class:`xmem.BufferGuard`: they derive from :data:`PoolBase` / :data:`GuardBase`, the
compiled extension types or the plain bases below, and :func:`install` moves the hot methods onto the compiled ones.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from . import _native

__all__ = ["implementation", "compiled", "PoolBase", "GuardBase", "install"]

_choice = os.environ.get("XMEM_IMPLEMENTATION", "").strip().lower()
if _choice not in ("", "compiled", "ctypes"):
    raise ImportError("XMEM_IMPLEMENTATION=%r: use 'compiled', 'ctypes', or leave it unset (compiled when built)."
                      % os.environ["XMEM_IMPLEMENTATION"])

compiled: Optional[Any] = None
if _choice != "ctypes":
    try:
        from . import _xmem as compiled  # type: ignore[no-redef]
    except ImportError as e:
        if _choice == "compiled":
            raise ImportError("XMEM_IMPLEMENTATION=compiled, but xmem's compiled module does not load (%s). Install "
                              "the wheel built by scripts/build-native.sh for this Python, or unset it to use the "
                              "ctypes implementation." % e) from e
        compiled = None

#: "compiled" or "ctypes".
implementation = "compiled" if compiled is not None else "ctypes"


class _CtypesPoolBase:
    """The pool's native handle and fork generation, for the ctypes implementation (see BufferPool)."""

    __slots__ = ("_h", "_gen", "__weakref__")


class _CtypesGuardBase:
    """The guard's native state, for the ctypes implementation (see BufferGuard)."""

    __slots__ = ("_h", "_pool", "_out", "_ro", "_lease", "__weakref__")


PoolBase: Any = compiled.PoolBase if compiled is not None else _CtypesPoolBase
GuardBase: Any = compiled.GuardBase if compiled is not None else _CtypesGuardBase


def install(pool_cls: type, guard_cls: type, names: Dict[str, Any]) -> None:
    """With the compiled module: binds it to the loaded library and makes the classes use its hot methods."""
    if compiled is not None:
        compiled.install(_native.lib, pool_cls, guard_cls, names)
