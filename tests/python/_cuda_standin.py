"""The strict stand-in CUDA driver (tests/cuda-standin: a contract checker, not a GPU) for the Python tests.

:func:`environment` builds it (tests/cuda-standin/build.sh) and gives the environment that makes a child process's
xmem load it; :class:`Device` writes and reads its device memory through the driver's own copies (so the stand-in
checks those accesses too). The tests run every CUDA process as a child: the library reads XMEM_LIBCUDA once per
process, and the pytest process itself must keep seeing no CUDA (test_cuda.py).
"""

import ctypes
import os
import subprocess
import tempfile

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LIBRARY = os.path.join(REPO_ROOT, "artifacts", "cuda-standin", "libcuda.so.1")


def build():
    subprocess.run([os.path.join(REPO_ROOT, "tests", "cuda-standin", "build.sh")], check=True)
    return LIBRARY


def environment(directory, devices=2, vmm=False):
    """The environment of a child that uses the stand-in with its registry in `directory`; with `vmm`, its devices
    report VMM with POSIX file descriptor handles, so xmem allocates with cuMemCreate and shares by descriptor."""
    env = dict(os.environ)
    env.update({
        "XMEM_LIBCUDA": build(),
        "XMEM_CUDA_STANDIN_DIR": directory,
        "XMEM_CUDA_STANDIN_LOG": os.path.join(directory, "violations.log"),
        "XMEM_CUDA_STANDIN_DEVICES": str(devices),
        "XMEM_CUDA_STANDIN_VMM": "1" if vmm else "0",
    })
    return env


def violations(directory):
    path = os.path.join(directory, "violations.log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def new_directory():
    return tempfile.mkdtemp(prefix="xmem-cuda-standin.")


class Device:
    """Host ↔ device copies through the stand-in loaded in this process (the same library xmem loaded)."""

    def __init__(self):
        self.lib = ctypes.CDLL(os.environ["XMEM_LIBCUDA"])
        self.lib.cuInit(0)

    def _scope(self, device):
        ctx = ctypes.c_void_p()
        assert self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), device) == 0
        assert self.lib.cuCtxPushCurrent_v2(ctx) == 0

    def _end(self, device):
        out = ctypes.c_void_p()
        assert self.lib.cuCtxPopCurrent_v2(ctypes.byref(out)) == 0
        assert self.lib.cuDevicePrimaryCtxRelease_v2(device) == 0

    def write(self, ptr, data, device=0):
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        self._scope(device)
        try:
            rc = self.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(ptr), buf, ctypes.c_size_t(len(data)))
        finally:
            self._end(device)
        if rc != 0:
            raise RuntimeError("cuMemcpyHtoD_v2 failed: %d" % rc)

    def read(self, ptr, n, device=0):
        buf = ctypes.create_string_buffer(n)
        self._scope(device)
        try:
            rc = self.lib.cuMemcpyDtoH_v2(buf, ctypes.c_uint64(ptr), ctypes.c_size_t(n))
        finally:
            self._end(device)
        if rc != 0:
            raise RuntimeError("cuMemcpyDtoH_v2 failed: %d" % rc)
        return buf.raw


def pattern(seed, n):
    return bytes(((seed * 131 + i * 7 + (i >> 9) + 1) & 0xFF) for i in range(n))


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capsule_tensor(capsule, versioned):
    """(data pointer, device type, device id, read-only flag) of a DLPack capsule, without consuming it."""
    p = _get_pointer(capsule, b"dltensor_versioned" if versioned else b"dltensor")
    tensor = p + (32 if versioned else 0)  # DLManagedTensorVersioned: version, manager_ctx, deleter, flags, dl_tensor
    data = ctypes.c_void_p.from_address(tensor).value
    dev_type = ctypes.c_int32.from_address(tensor + 8).value
    dev_id = ctypes.c_int32.from_address(tensor + 12).value
    flags = ctypes.c_uint64.from_address(p + 24).value if versioned else 0
    return data, dev_type, dev_id, bool(flags & 1)
