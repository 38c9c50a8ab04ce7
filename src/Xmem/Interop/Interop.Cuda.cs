using System.Runtime.InteropServices;

namespace Xmem.Interop;

/// <summary>
/// The CUDA driver API (<c>libcuda.so.1</c>), bound lazily: the library is opened with
/// <see cref="NativeLibrary.TryLoad(string, out nint)"/> on first CUDA use and every entry point is an unmanaged
/// function pointer, so a machine without an NVIDIA driver loads xmem, runs every CPU feature, and gets a
/// <see cref="CudaUnavailableException"/> (never a <see cref="DllNotFoundException"/>) from CUDA calls. Function
/// pointers are AOT and trim safe. Every entry point returns a <c>CUresult</c>: 0 is success, anything else is an
/// error code (see <see cref="Cuda.CudaResult"/>); out-parameters are written only on success.
/// </summary>
internal static unsafe class LibCuda
{
    /// <summary>The driver's soname. The unversioned <c>libcuda.so</c> ships only with the toolkit (often as a stub).</summary>
    internal const string LibraryName = "libcuda.so.1";

    /// <summary>Environment variable that names another driver library to load (a full path).</summary>
    internal const string LibraryOverrideVariable = "XMEM_LIBCUDA";

    internal const int CUDA_SUCCESS = 0;
    internal const uint CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 0x1;
    internal const uint CU_EVENT_DISABLE_TIMING = 0x2;
    internal const uint CU_EVENT_INTERPROCESS = 0x4;

    // Virtual memory management (cuda.h, CUDA 10.2+): CUdevice_attribute, CUmemAllocationType,
    // CUmemAllocationHandleType, CUmemLocationType, CUmemAccess_flags, CUmemAllocationGranularity_flags.
    internal const int CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102;
    internal const int CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED = 103;
    internal const int CU_MEM_ALLOCATION_TYPE_PINNED = 0x1;
    internal const int CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 0x1;
    internal const int CU_MEM_LOCATION_TYPE_DEVICE = 0x1;
    internal const int CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 0x3;
    internal const int CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 0x1;

    /// <summary>The legacy default stream (the NULL stream): what PyTorch and CuPy use unless told otherwise, and
    /// what the synchronous <c>cuMemcpy*</c> calls run on.</summary>
    internal const nint NullStream = 0;

    /// <summary>The resolved entry points. Each field is non-null once <see cref="TryLoad"/> returned it.</summary>
    internal sealed class Api
    {
        internal delegate* unmanaged<uint, int> cuInit;
        internal delegate* unmanaged<int*, int> cuDriverGetVersion;
        internal delegate* unmanaged<int*, int> cuDeviceGetCount;
        internal delegate* unmanaged<int*, int, int> cuDeviceGet;
        internal delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
        internal delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease;
        internal delegate* unmanaged<nint, int> cuCtxPushCurrent;
        internal delegate* unmanaged<nint*, int> cuCtxPopCurrent;
        internal delegate* unmanaged<int> cuCtxSynchronize;
        internal delegate* unmanaged<ulong*, nuint, int> cuMemAlloc;
        internal delegate* unmanaged<ulong, int> cuMemFree;
        internal delegate* unmanaged<ulong*, nuint*, ulong, int> cuMemGetAddressRange;
        internal delegate* unmanaged<CuIpcHandle*, ulong, int> cuIpcGetMemHandle;
        internal delegate* unmanaged<ulong*, CuIpcHandle, uint, int> cuIpcOpenMemHandle;
        internal delegate* unmanaged<ulong, int> cuIpcCloseMemHandle;
        internal delegate* unmanaged<nint*, uint, int> cuEventCreate;
        internal delegate* unmanaged<nint, int> cuEventDestroy;
        internal delegate* unmanaged<CuIpcHandle*, nint, int> cuIpcGetEventHandle;
        internal delegate* unmanaged<nint*, CuIpcHandle, int> cuIpcOpenEventHandle;
        internal delegate* unmanaged<nint, nint, int> cuEventRecord;
        internal delegate* unmanaged<nint, int> cuEventSynchronize;
        internal delegate* unmanaged<nint, nint, uint, int> cuStreamWaitEvent;
        internal delegate* unmanaged<ulong, ulong, nuint, int> cuMemcpyDtoD;
        internal delegate* unmanaged<ulong, void*, nuint, int> cuMemcpyHtoD;
        internal delegate* unmanaged<void*, ulong, nuint, int> cuMemcpyDtoH;
        internal delegate* unmanaged<ulong, nint, ulong, nint, nuint, int> cuMemcpyPeer;
        internal delegate* unmanaged<int, byte**, int> cuGetErrorName;
        internal delegate* unmanaged<int, byte**, int> cuGetErrorString;

        // Optional (null when the driver lacks them, and then xmem uses cuMemAlloc + IPC): virtual memory
        // management, for allocations exported as POSIX file descriptors (docs/cuda.md, "Buffers that outlive
        // their producer"). None has a _v2 variant in cuda.h.
        internal delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
        internal delegate* unmanaged<nuint*, CuMemAllocationProp*, int, int> cuMemGetAllocationGranularity;
        internal delegate* unmanaged<ulong*, nuint, CuMemAllocationProp*, ulong, int> cuMemCreate;
        internal delegate* unmanaged<ulong, int> cuMemRelease;
        internal delegate* unmanaged<void*, ulong, int, ulong, int> cuMemExportToShareableHandle;
        internal delegate* unmanaged<ulong*, nint, int, int> cuMemImportFromShareableHandle;
        internal delegate* unmanaged<ulong*, nuint, nuint, ulong, ulong, int> cuMemAddressReserve;
        internal delegate* unmanaged<ulong, nuint, int> cuMemAddressFree;
        internal delegate* unmanaged<ulong, nuint, nuint, ulong, ulong, int> cuMemMap;
        internal delegate* unmanaged<ulong, nuint, int> cuMemUnmap;
        internal delegate* unmanaged<ulong, nuint, CuMemAccessDesc*, nuint, int> cuMemSetAccess;

        /// <summary>True when every VMM entry point resolved.</summary>
        internal bool HasVmm =>
            cuDeviceGetAttribute is not null && cuMemGetAllocationGranularity is not null && cuMemCreate is not null &&
            cuMemRelease is not null && cuMemExportToShareableHandle is not null && cuMemImportFromShareableHandle is not null &&
            cuMemAddressReserve is not null && cuMemAddressFree is not null && cuMemMap is not null && cuMemUnmap is not null &&
            cuMemSetAccess is not null;
    }

    /// <summary>Opens the driver library and resolves every entry point xmem uses. False with a reason that says what
    /// to do when the library is missing or too old; the library stays loaded for the life of the process.</summary>
    internal static bool TryLoad([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Api? api, out string reason)
    {
        api = null;
        string? overridePath = Environment.GetEnvironmentVariable(LibraryOverrideVariable);
        string name = string.IsNullOrEmpty(overridePath) ? LibraryName : overridePath;
        if (!NativeLibrary.TryLoad(name, out nint lib))
        {
            reason = string.IsNullOrEmpty(overridePath)
                ? $"the CUDA driver library {LibraryName} could not be loaded: no NVIDIA driver is installed here, or it is not on the loader path (in a container, start it with the NVIDIA container toolkit, e.g. `--gpus all`)"
                : $"the CUDA driver library '{overridePath}' named by {LibraryOverrideVariable} could not be loaded";
            return false;
        }

        var a = new Api();
        string? missing = null;
        // The _v2 names are what cuda.h maps the plain names to since CUDA 3.2 / 11.0; binding the plain name would
        // get the old ABI (32-bit sizes, or a different primary-context release).
        a.cuInit = (delegate* unmanaged<uint, int>)Sym(lib, "cuInit", ref missing);
        a.cuDriverGetVersion = (delegate* unmanaged<int*, int>)Sym(lib, "cuDriverGetVersion", ref missing);
        a.cuDeviceGetCount = (delegate* unmanaged<int*, int>)Sym(lib, "cuDeviceGetCount", ref missing);
        a.cuDeviceGet = (delegate* unmanaged<int*, int, int>)Sym(lib, "cuDeviceGet", ref missing);
        a.cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)Sym(lib, "cuDevicePrimaryCtxRetain", ref missing);
        a.cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)Sym(lib, "cuDevicePrimaryCtxRelease_v2", ref missing);
        a.cuCtxPushCurrent = (delegate* unmanaged<nint, int>)Sym(lib, "cuCtxPushCurrent_v2", ref missing);
        a.cuCtxPopCurrent = (delegate* unmanaged<nint*, int>)Sym(lib, "cuCtxPopCurrent_v2", ref missing);
        a.cuCtxSynchronize = (delegate* unmanaged<int>)Sym(lib, "cuCtxSynchronize", ref missing);
        a.cuMemAlloc = (delegate* unmanaged<ulong*, nuint, int>)Sym(lib, "cuMemAlloc_v2", ref missing);
        a.cuMemFree = (delegate* unmanaged<ulong, int>)Sym(lib, "cuMemFree_v2", ref missing);
        a.cuMemGetAddressRange = (delegate* unmanaged<ulong*, nuint*, ulong, int>)Sym(lib, "cuMemGetAddressRange_v2", ref missing);
        a.cuIpcGetMemHandle = (delegate* unmanaged<CuIpcHandle*, ulong, int>)Sym(lib, "cuIpcGetMemHandle", ref missing);
        a.cuIpcOpenMemHandle = (delegate* unmanaged<ulong*, CuIpcHandle, uint, int>)Sym(lib, "cuIpcOpenMemHandle_v2", ref missing);
        a.cuIpcCloseMemHandle = (delegate* unmanaged<ulong, int>)Sym(lib, "cuIpcCloseMemHandle", ref missing);
        a.cuEventCreate = (delegate* unmanaged<nint*, uint, int>)Sym(lib, "cuEventCreate", ref missing);
        a.cuEventDestroy = (delegate* unmanaged<nint, int>)Sym(lib, "cuEventDestroy_v2", ref missing);
        a.cuIpcGetEventHandle = (delegate* unmanaged<CuIpcHandle*, nint, int>)Sym(lib, "cuIpcGetEventHandle", ref missing);
        a.cuIpcOpenEventHandle = (delegate* unmanaged<nint*, CuIpcHandle, int>)Sym(lib, "cuIpcOpenEventHandle", ref missing);
        a.cuEventRecord = (delegate* unmanaged<nint, nint, int>)Sym(lib, "cuEventRecord", ref missing);
        a.cuEventSynchronize = (delegate* unmanaged<nint, int>)Sym(lib, "cuEventSynchronize", ref missing);
        a.cuStreamWaitEvent = (delegate* unmanaged<nint, nint, uint, int>)Sym(lib, "cuStreamWaitEvent", ref missing);
        a.cuMemcpyDtoD = (delegate* unmanaged<ulong, ulong, nuint, int>)Sym(lib, "cuMemcpyDtoD_v2", ref missing);
        a.cuMemcpyHtoD = (delegate* unmanaged<ulong, void*, nuint, int>)Sym(lib, "cuMemcpyHtoD_v2", ref missing);
        a.cuMemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, int>)Sym(lib, "cuMemcpyDtoH_v2", ref missing);
        a.cuMemcpyPeer = (delegate* unmanaged<ulong, nint, ulong, nint, nuint, int>)Sym(lib, "cuMemcpyPeer", ref missing);
        a.cuGetErrorName = (delegate* unmanaged<int, byte**, int>)Sym(lib, "cuGetErrorName", ref missing);
        a.cuGetErrorString = (delegate* unmanaged<int, byte**, int>)Sym(lib, "cuGetErrorString", ref missing);
        a.cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)OptionalSym(lib, "cuDeviceGetAttribute");
        a.cuMemGetAllocationGranularity = (delegate* unmanaged<nuint*, CuMemAllocationProp*, int, int>)OptionalSym(lib, "cuMemGetAllocationGranularity");
        a.cuMemCreate = (delegate* unmanaged<ulong*, nuint, CuMemAllocationProp*, ulong, int>)OptionalSym(lib, "cuMemCreate");
        a.cuMemRelease = (delegate* unmanaged<ulong, int>)OptionalSym(lib, "cuMemRelease");
        a.cuMemExportToShareableHandle = (delegate* unmanaged<void*, ulong, int, ulong, int>)OptionalSym(lib, "cuMemExportToShareableHandle");
        a.cuMemImportFromShareableHandle = (delegate* unmanaged<ulong*, nint, int, int>)OptionalSym(lib, "cuMemImportFromShareableHandle");
        a.cuMemAddressReserve = (delegate* unmanaged<ulong*, nuint, nuint, ulong, ulong, int>)OptionalSym(lib, "cuMemAddressReserve");
        a.cuMemAddressFree = (delegate* unmanaged<ulong, nuint, int>)OptionalSym(lib, "cuMemAddressFree");
        a.cuMemMap = (delegate* unmanaged<ulong, nuint, nuint, ulong, ulong, int>)OptionalSym(lib, "cuMemMap");
        a.cuMemUnmap = (delegate* unmanaged<ulong, nuint, int>)OptionalSym(lib, "cuMemUnmap");
        a.cuMemSetAccess = (delegate* unmanaged<ulong, nuint, CuMemAccessDesc*, nuint, int>)OptionalSym(lib, "cuMemSetAccess");
        if (missing is not null)
        {
            reason = $"the CUDA driver library {name} has no entry point {missing}: the NVIDIA driver is too old (xmem needs a driver for CUDA 11.0 or newer, R450+)";
            return false;
        }

        api = a;
        reason = "";
        return true;
    }

    private static nint OptionalSym(nint lib, string name) => NativeLibrary.TryGetExport(lib, name, out nint p) ? p : 0;

    private static nint Sym(nint lib, string name, ref string? missing)
    {
        if (NativeLibrary.TryGetExport(lib, name, out nint p))
        {
            return p;
        }

        missing ??= name;
        return 0;
    }
}

/// <summary><c>CUipcMemHandle</c> and <c>CUipcEventHandle</c>: both are <c>struct { char reserved[64]; }</c>, passed
/// by value to the open calls (a 64-byte aggregate goes on the stack in the SysV x86-64 and AAPCS64 ABIs, which the
/// runtime's unmanaged calling convention follows for blittable structs).</summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
internal unsafe struct CuIpcHandle
{
    internal const int Size = 64;
    internal fixed byte Reserved[Size];

    /// <summary>The 64 bytes, as a span over this value (valid while the value is).</summary>
    [System.Diagnostics.CodeAnalysis.UnscopedRef]
    internal Span<byte> Bytes => MemoryMarshal.CreateSpan(ref Reserved[0], Size);
}

/// <summary><c>CUmemLocation</c>: <c>{ CUmemLocationType type; int id; }</c>, 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemLocation
{
    internal int Type;
    internal int Id;
}

/// <summary><c>CUmemAllocationProp</c> (cuda.h): type, requestedHandleTypes, location at 8, win32HandleMetaData at
/// 16, then <c>allocFlags { unsigned char compressionType, gpuDirectRDMACapable; unsigned short usage; unsigned char
/// reserved[4]; }</c> at 24: 32 bytes. Unused members must be zero.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct CuMemAllocationProp
{
    [FieldOffset(0)] internal int Type;
    [FieldOffset(4)] internal int RequestedHandleTypes;
    [FieldOffset(8)] internal CuMemLocation Location;
    [FieldOffset(16)] internal nint Win32HandleMetaData;
    [FieldOffset(24)] internal byte CompressionType;
    [FieldOffset(25)] internal byte GpuDirectRdmaCapable;
    [FieldOffset(26)] internal ushort Usage;
    [FieldOffset(28)] internal uint Reserved;
}

/// <summary><c>CUmemAccessDesc</c>: <c>{ CUmemLocation location; CUmemAccess_flags flags; }</c>, 12 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemAccessDesc
{
    internal CuMemLocation Location;
    internal int Flags;
}
