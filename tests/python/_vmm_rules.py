"""Breaks each VMM rule of the stand-in driver once, through ctypes (run as a child by test_cuda_standin.py, with the
stand-in's environment and VMM on): prints one line per step, "STEP rc", so the test can match each step with the
violation the stand-in must log for it. Not a test of xmem: a test that the contract checker checks."""

import ctypes
import os
import sys

u64 = ctypes.c_uint64


class Location(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class AllocFlags(ctypes.Structure):
    _fields_ = [("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte), ("usage", ctypes.c_ushort),
                ("reserved", ctypes.c_ubyte * 4)]


class Prop(ctypes.Structure):  # CUmemAllocationProp: 32 bytes
    _fields_ = [("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", Location),
                ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", AllocFlags)]


class Access(ctypes.Structure):  # CUmemAccessDesc: 12 bytes
    _fields_ = [("location", Location), ("flags", ctypes.c_int)]


def main() -> int:
    assert ctypes.sizeof(Prop) == 32 and ctypes.sizeof(Access) == 12
    cu = ctypes.CDLL(os.environ["XMEM_LIBCUDA"])
    assert cu.cuInit(0) == 0
    ctx = ctypes.c_void_p()
    assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0 and cu.cuCtxPushCurrent_v2(ctx) == 0  # for the copies
    g = 2 << 20
    prop = Prop(type=1, requestedHandleTypes=1, location=Location(1, 0))
    no_fd = Prop(type=1, requestedHandleTypes=0, location=Location(1, 0))
    h, h2, va = u64(), u64(), u64()

    def step(name: str, rc: int) -> None:
        print("%s %d" % (name, rc), flush=True)

    step("create-unaligned", cu.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(g + 1), ctypes.byref(prop), u64(0)))
    assert cu.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(g), ctypes.byref(prop), u64(0)) == 0
    step("map-unreserved", cu.cuMemMap(u64(1 << 40), ctypes.c_size_t(g), ctypes.c_size_t(0), h, u64(0)))
    assert cu.cuMemAddressReserve(ctypes.byref(va), ctypes.c_size_t(2 * g), ctypes.c_size_t(0), u64(0), u64(0)) == 0
    assert cu.cuMemMap(va, ctypes.c_size_t(g), ctypes.c_size_t(0), h, u64(0)) == 0
    data = ctypes.create_string_buffer(16)
    step("copy-before-access", cu.cuMemcpyDtoH_v2(data, va, ctypes.c_size_t(16)))
    acc = Access(location=Location(1, 0), flags=3)
    assert cu.cuMemSetAccess(va, ctypes.c_size_t(g), ctypes.byref(acc), ctypes.c_size_t(1)) == 0
    step("copy-after-access", cu.cuMemcpyDtoH_v2(data, va, ctypes.c_size_t(16)))
    step("copy-unmapped-half", cu.cuMemcpyDtoH_v2(data, u64(va.value + g), ctypes.c_size_t(16)))
    step("release-while-mapped", cu.cuMemRelease(h))  # allowed: the memory stays until unmapped
    step("copy-after-release", cu.cuMemcpyDtoH_v2(data, va, ctypes.c_size_t(16)))
    step("free-while-mapped", cu.cuMemAddressFree(va, ctypes.c_size_t(2 * g)))
    assert cu.cuMemUnmap(va, ctypes.c_size_t(g)) == 0
    step("copy-after-unmap", cu.cuMemcpyDtoH_v2(data, va, ctypes.c_size_t(16)))
    step("map-released", cu.cuMemMap(va, ctypes.c_size_t(g), ctypes.c_size_t(0), h, u64(0)))
    assert cu.cuMemAddressFree(va, ctypes.c_size_t(2 * g)) == 0
    assert cu.cuMemCreate(ctypes.byref(h2), ctypes.c_size_t(g), ctypes.byref(no_fd), u64(0)) == 0
    fd = ctypes.c_int(-1)
    step("export-not-requested", cu.cuMemExportToShareableHandle(ctypes.byref(fd), h2, 1, u64(0)))
    assert cu.cuMemRelease(h2) == 0
    step("double-release", cu.cuMemRelease(h2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
