"""Buffer descriptions: element types, and the conversion between Python values and ``xmem_description``.

A description is what a buffer says about itself, stored in its slot for every process that holds it: an optional
tensor (element type, shape, strides in bytes), a sequence number, a CLOCK_MONOTONIC timestamp, and two short tags
(content type, producer). The native core validates it against the buffer's size when it is written and when it is
read, so a description read here never reaches past the buffer.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple

from ._errors import InvalidArgumentError
from ._native import DESC_CONTIGUOUS, DESC_PRESENT, DESC_TIMESTAMP_NOW, Description as _NativeDescription

__all__ = ["Description", "DTYPES"]

#: xmem's element types: name -> (XMEM_DTYPE_* number, item size). The numbers are stored in shared memory.
DTYPES = {
    "uint8": (1, 1),
    "int8": (2, 1),
    "uint16": (3, 2),
    "int16": (4, 2),
    "int32": (5, 4),
    "int64": (6, 8),
    "float16": (7, 2),
    "bfloat16": (8, 2),
    "float32": (9, 4),
    "float64": (10, 8),
    "bool": (11, 1),
}
_NAMES = {code: name for name, (code, _) in DTYPES.items()}
MAX_DIMS = 8
MAX_TAG_BYTES = 31

#: ``__cuda_array_interface__`` / NumPy array-interface type strings (little-endian; bfloat16 has none).
TYPESTR = {
    "uint8": "|u1", "int8": "|i1", "uint16": "<u2", "int16": "<i2", "int32": "<i4", "int64": "<i8",
    "float16": "<f2", "float32": "<f4", "float64": "<f8", "bool": "|b1",
}

#: DLPack (type code, bits) per element type: kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6.
DLPACK_TYPE = {
    "uint8": (1, 8), "int8": (0, 8), "uint16": (1, 16), "int16": (0, 16), "int32": (0, 32), "int64": (0, 64),
    "float16": (2, 16), "bfloat16": (4, 16), "float32": (2, 32), "float64": (2, 64), "bool": (6, 8),
}


class Description(NamedTuple):
    """What a buffer says about itself (``BufferGuard.description``).

    Attributes:
        dtype: the element type's name (``"float32"``, ``"uint8"``, ``"bfloat16"``...), or None when the buffer is
            not described as a tensor.
        shape: elements per dimension (None without a tensor).
        strides: bytes between consecutive elements of each dimension, as NumPy counts them (None without a tensor).
        seq: the producer's sequence number.
        timestamp_ns: CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns()`` of any process on this machine).
        content_type: e.g. ``"image/rgb8"``; ``""`` when unset.
        producer: the producer's tag, e.g. ``"cam0"``; ``""`` when unset.
    """

    dtype: Optional[str]
    shape: Optional[Tuple[int, ...]]
    strides: Optional[Tuple[int, ...]]
    seq: int
    timestamp_ns: int
    content_type: str
    producer: str


def dtype_name(dtype: Any) -> str:
    """The xmem name of ``dtype``: a name (``"float32"``, ``"f4"``, ``"<f4"``), a NumPy dtype or scalar type, or a
    PyTorch dtype. Raises :class:`InvalidArgumentError` (a ``ValueError``) for anything xmem cannot describe."""
    if isinstance(dtype, str):
        name = dtype[6:] if dtype.startswith("torch.") else dtype
        if name in DTYPES:
            return name
    else:
        text = str(dtype)
        if text.startswith("torch."):  # a torch.dtype, without importing torch
            name = {"torch.half": "float16", "torch.float": "float32", "torch.double": "float64"}.get(text, text[6:])
            if name in DTYPES:
                return name
            raise InvalidArgumentError("xmem cannot describe %s; use one of %s." % (text, ", ".join(DTYPES)))
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - exercised only without numpy
        raise InvalidArgumentError("dtype %r is not one of %s (NumPy is not installed to interpret other spellings)."
                                   % (dtype, ", ".join(DTYPES))) from None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InvalidArgumentError("%r is not a dtype; use one of %s." % (dtype, ", ".join(DTYPES))) from None
    if dt.byteorder == ">" or (dt.byteorder == "=" and np.little_endian is False):
        raise InvalidArgumentError("dtype %s is big-endian; xmem describes little-endian data only." % dt)
    if dt.name not in DTYPES or dt.fields is not None or dt.subdtype is not None:
        raise InvalidArgumentError("xmem cannot describe dtype %s; use one of %s." % (dt, ", ".join(DTYPES)))
    return dt.name


def itemsize(name: str) -> int:
    return DTYPES[name][1]


def _encode_tag(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    if "\0" in value:
        raise InvalidArgumentError("%s must not contain NUL characters." % what)
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError("%s is not valid Unicode (a lone surrogate)." % what) from None
    if len(raw) > MAX_TAG_BYTES:
        raise InvalidArgumentError("%s is %d UTF-8 bytes; at most %d fit." % (what, len(raw), MAX_TAG_BYTES))
    return raw


def _dims(values: Any, what: str) -> Tuple[int, ...]:
    dims = (values,) if isinstance(values, int) else tuple(values)
    if len(dims) > MAX_DIMS:
        raise InvalidArgumentError("%s has %d dimensions; a description holds at most %d." % (what, len(dims), MAX_DIMS))
    out = []
    for d in dims:
        try:
            v = d.__index__()
        except AttributeError:
            raise TypeError("%s entries must be ints, not %s" % (what, type(d).__name__)) from None
        if not -(1 << 63) <= v < (1 << 63):
            raise InvalidArgumentError("%s entry %d does not fit in 64 bits." % (what, v))
        out.append(v)
    return tuple(out)


def encode(size: int, shape: Any, dtype: Any, strides: Any, seq: int, timestamp_ns: Optional[int],
           content_type: Optional[str], producer: Optional[str]) -> _NativeDescription:
    """An ``xmem_description`` for the given fields (validated here as far as Python can; the core checks the
    rest against the buffer's ``size``)."""
    d = _NativeDescription()
    if shape is not None or dtype is not None:
        name = dtype_name("uint8" if dtype is None else dtype)
        if shape is None:
            if size % itemsize(name):
                raise InvalidArgumentError("the buffer's %d bytes are not a whole number of %s items; pass shape=."
                                           % (size, name))
            shape = (size // itemsize(name),)
        dims = _dims(shape, "shape")
        d.dtype = DTYPES[name][0]
        d.ndim = len(dims)
        for i, v in enumerate(dims):
            d.shape[i] = v
        if strides is None:
            d.flags |= DESC_CONTIGUOUS
        else:
            st = _dims(strides, "strides")
            if len(st) != len(dims):
                raise InvalidArgumentError("%d strides for %d dimensions; give one stride (in bytes) per dimension."
                                           % (len(st), len(dims)))
            for i, v in enumerate(st):
                d.strides[i] = v
    elif strides is not None:
        raise InvalidArgumentError("strides need a shape (and a dtype).")
    if not 0 <= seq < (1 << 64):
        raise InvalidArgumentError("seq is %d; it must be within 0..2**64-1." % seq)
    d.seq = seq
    if timestamp_ns is None:
        d.flags |= DESC_TIMESTAMP_NOW
    else:
        if not -(1 << 63) <= timestamp_ns < (1 << 63):
            raise InvalidArgumentError("timestamp_ns %d does not fit in 64 bits." % timestamp_ns)
        d.timestamp_ns = timestamp_ns
    d.content_type = _encode_tag(content_type, "content_type")
    d.producer_tag = _encode_tag(producer, "producer")
    return d


def decode(d: _NativeDescription) -> Optional[Description]:
    """The :class:`Description` in ``d``, or None when the buffer has none."""
    if not d.flags & DESC_PRESENT:
        return None
    if d.dtype:
        n = d.ndim
        name: Optional[str] = _NAMES.get(d.dtype)
        shape: Optional[Tuple[int, ...]] = tuple(d.shape[:n])
        strides: Optional[Tuple[int, ...]] = tuple(d.strides[:n])
    else:
        name = shape = strides = None
    return Description(name, shape, strides, d.seq, d.timestamp_ns,
                       d.content_type.decode("utf-8", "replace"), d.producer_tag.decode("utf-8", "replace"))


def contiguous_strides(shape: Sequence[int], item: int) -> Tuple[int, ...]:
    out = []
    step = item
    for d in reversed(shape):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))
