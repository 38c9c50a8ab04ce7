"""Loading libxmem.so and declaring its C ABI (include/xmem.h) for ctypes.

Every ``argtypes``/``restype`` is set once, here. The library is loaded with
``ctypes.CDLL``, which releases the GIL for the duration of every call, so a
blocking acquire does not stop other Python threads.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_size_t, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

__all__ = ["lib", "library_path", "BufferInfo", "DLPackRequest", "Description", "ChannelProperties", "ABI_VERSION"]

#: XMEM_ABI_VERSION of the include/xmem.h these declarations follow.
ABI_VERSION = 1

_BUILD_HINT = (
    "Build it with `scripts/build-native.sh` (or `dotnet publish src/Xmem.Native/Xmem.Native.csproj -c Release`) "
    "and install the wheel from dist/, or point XMEM_LIBRARY at a libxmem.so."
)


class BufferInfo(ctypes.Structure):
    """``xmem_buffer_info``."""

    _fields_ = [
        ("size", c_int64),
        ("cpu_ptr", c_void_p),
        ("cuda_ptr", c_uint64),
        ("meta_index", c_int32),
        ("device_id", c_int32),
        ("flags", c_uint32),
        ("reserved", c_uint32),
    ]


BUFFER_READ_ONLY = 0x1
BUFFER_CUDA = 0x2


class DLPackRequest(ctypes.Structure):
    """``xmem_dlpack_request``."""

    _fields_ = [
        ("dtype_code", c_uint8),
        ("dtype_bits", c_uint8),
        ("dtype_lanes", c_uint16),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
        ("flags", c_uint32),
        ("reserved", c_uint32),
    ]


class GuardOut(ctypes.Structure):
    """A guard handle followed by its ``xmem_buffer_info``: one allocation for both out-parameters of the acquire and
    get functions (``byref(out)`` and ``byref(out, 8)``), read back without a nested structure."""

    _fields_ = [("guard", c_uint64)] + BufferInfo._fields_


DLPACK_VERSIONED = 0x1
DLPACK_READ_ONLY = 0x2


class Description(ctypes.Structure):
    """``xmem_description``."""

    _fields_ = [
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("shape", c_int64 * 8),
        ("strides", c_int64 * 8),
        ("seq", c_uint64),
        ("timestamp_ns", c_int64),
        ("content_type", ctypes.c_char * 32),
        ("producer_tag", ctypes.c_char * 32),
    ]


DESC_CONTIGUOUS = 0x1
DESC_TIMESTAMP_NOW = 0x2
DESC_PRESENT = 0x4


class ChannelProperties(ctypes.Structure):
    """``xmem_channel_properties``."""

    _fields_ = [("depth", c_int32), ("mode", c_int32), ("count", c_int32), ("reserved", c_uint32)]


CHANNEL_QUEUE = 0
CHANNEL_FANOUT = 1
RECEIVE_WRITABLE = 0x1

assert ctypes.sizeof(BufferInfo) == 40 and ctypes.sizeof(DLPackRequest) == 40 and ctypes.sizeof(GuardOut) == 48
assert ctypes.sizeof(Description) == 224 and ctypes.sizeof(ChannelProperties) == 16

_P = c_uint64  # every handle kind is an opaque uint64
_S = c_int32  # xmem_status

_OUT = c_void_p  # an out-parameter filled through byref(GuardOut[, 8]) (see GuardOut)

#: name -> (restype, argtypes), in the order of include/xmem.h. tests/c/check_abi.py checks it against the header.
SIGNATURES = {
    "xmem_abi_version": (c_uint32, []),
    "xmem_version": (c_char_p, []),
    "xmem_last_error": (c_char_p, []),
    "xmem_last_status": (_S, []),
    "xmem_last_native_error": (c_int32, []),
    "xmem_status_name": (c_char_p, [_S]),
    "xmem_pool_create": (_S, [c_char_p, c_int32, c_uint32, c_int32, POINTER(_P)]),
    "xmem_pool_open": (_S, [c_char_p, POINTER(_P)]),
    "xmem_pool_close": (_S, [_P]),
    "xmem_pool_remove": (_S, [c_char_p, POINTER(c_int32)]),
    "xmem_pool_exists": (_S, [c_char_p, POINTER(c_int32)]),
    "xmem_pool_name": (_S, [_P, c_char_p, c_size_t, POINTER(c_size_t)]),
    "xmem_pool_capacity": (_S, [_P, POINTER(c_int32)]),
    "xmem_pool_acquire_cpu": (_S, [_P, c_int64, _OUT, _OUT]),
    "xmem_pool_acquire_cpu_wait": (_S, [_P, c_int64, c_int64, _OUT, _OUT]),
    "xmem_pool_acquire_cuda": (_S, [_P, c_int64, c_int32, _OUT, _OUT]),
    "xmem_pool_preallocate_cpu": (_S, [_P, c_int64, c_int32, POINTER(c_int32)]),
    "xmem_pool_preallocate_cuda": (_S, [_P, c_int64, c_int32, c_int32, POINTER(c_int32)]),
    "xmem_pool_set_cuda_get_waits": (_S, [_P, c_int32]),
    "xmem_pool_cuda_get_waits": (_S, [_P, POINTER(c_int32)]),
    "xmem_pool_get": (_S, [_P, c_int32, _OUT, _OUT]),
    "xmem_pool_get_mut": (_S, [_P, c_int32, _OUT, _OUT]),
    "xmem_pool_set_ref_count": (_S, [_P, c_int32, c_int32]),
    "xmem_pool_add_ref": (_S, [_P, c_int32, POINTER(c_int32)]),
    "xmem_pool_release": (_S, [_P, c_int32, POINTER(c_int32)]),
    "xmem_pool_ref_count": (_S, [_P, c_int32, POINTER(c_int32)]),
    "xmem_pool_trim": (_S, [_P, POINTER(c_int64)]),
    "xmem_guard_info": (_S, [_P, POINTER(BufferInfo)]),
    "xmem_guard_cpu_ptr": (_S, [_P, POINTER(c_void_p)]),
    "xmem_guard_cpu_ptr_mut": (_S, [_P, POINTER(c_void_p)]),
    "xmem_guard_release": (_S, [_P]),
    "xmem_guard_forget": (_S, [_P]),
    "xmem_guard_lease_view": (_S, [_P, POINTER(_P), POINTER(c_void_p), POINTER(c_int64)]),
    "xmem_lease_release": (_S, [_P]),
    "xmem_guard_export_dlpack": (_S, [_P, POINTER(DLPackRequest), POINTER(c_void_p)]),
    "xmem_dlpack_init_python": (_S, [c_void_p, c_void_p]),
    "xmem_dlpack_capsule_destructor": (None, [c_void_p]),
    "xmem_dlpack_capsule_name": (c_void_p, [c_int32]),
    "xmem_guard_cuda_ptr": (_S, [_P, POINTER(c_uint64)]),
    "xmem_guard_cuda_ptr_mut": (_S, [_P, POINTER(c_uint64)]),
    "xmem_guard_record_writes_done": (_S, [_P, c_uint64]),
    "xmem_guard_wait_writes_done": (_S, [_P, c_uint64]),
    "xmem_guard_synchronize_writes": (_S, [_P]),
    "xmem_guard_copy_to_cuda": (_S, [_P, c_int32, _OUT, _OUT]),
    "xmem_guard_copy_to_cpu": (_S, [_P, _OUT, _OUT]),
    "xmem_guard_copy_to_device": (_S, [_P, c_int32, _OUT, _OUT]),
    "xmem_guard_set_description": (_S, [_P, POINTER(Description)]),
    "xmem_guard_description": (_S, [_P, POINTER(Description)]),
    "xmem_pool_channel": (_S, [_P, c_char_p, c_int32, c_int32, POINTER(_P)]),
    "xmem_channel_close": (_S, [_P]),
    "xmem_channel_info": (_S, [_P, POINTER(ChannelProperties)]),
    "xmem_channel_send": (_S, [_P, _P, c_int64]),
    "xmem_channel_receive": (_S, [_P, c_int64, c_uint32, _OUT, _OUT]),
    "xmem_channel_set_spin": (_S, [_P, c_int64]),
    "xmem_channel_subscribe": (_S, [_P, POINTER(_P)]),
    "xmem_subscription_receive": (_S, [_P, c_int64, c_uint32, _OUT, _OUT]),
    "xmem_subscription_close": (_S, [_P]),
}


def _candidates():
    env = os.environ.get("XMEM_LIBRARY")
    if env:
        return [("XMEM_LIBRARY", env)]
    return [("the packaged library", os.path.join(os.path.dirname(os.path.abspath(__file__)), "libxmem.so"))]


def _load():
    (source, path), = _candidates()
    if source == "XMEM_LIBRARY" and not os.path.isfile(path):
        raise ImportError("XMEM_LIBRARY=%r does not name a file. Unset it to use the packaged library, or %s" % (path, _BUILD_HINT))
    if source != "XMEM_LIBRARY" and not os.path.isfile(path):
        raise ImportError("xmem's native library is missing (looked for %s). %s" % (path, _BUILD_HINT))
    try:
        handle = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError("could not load %s (%s): %s. %s" % (source, path, e, _BUILD_HINT)) from e
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            fn = getattr(handle, name)
        except AttributeError:
            raise ImportError("%s (%s) lacks the export %s: it is from another version of xmem. %s" % (source, path, name, _BUILD_HINT)) from None
        fn.restype = restype
        fn.argtypes = argtypes
    abi = handle.xmem_abi_version()
    if abi != ABI_VERSION:
        raise ImportError("%s (%s) has C ABI version %d, this xmem package needs %d. %s" % (source, path, abi, ABI_VERSION, _BUILD_HINT))
    return handle, path


lib, library_path = _load()
