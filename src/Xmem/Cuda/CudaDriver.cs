using System.Runtime.InteropServices;
using Xmem.Interop;

namespace Xmem.Cuda;

/// <summary>
/// <see cref="ICudaDriver"/> over the real driver (<c>libcuda.so.1</c>). The library is loaded, <c>cuInit</c> called and
/// the devices counted once per process, on first use; the outcome (or the reason CUDA is unusable) is kept. Each
/// device's <em>primary</em> context is retained on first use and kept for the life of the process: it is the context
/// the CUDA runtime (PyTorch, CuPy) uses too, so pointers, events and IPC mappings are shared with them.
/// </summary>
internal sealed unsafe class CudaDriver : ICudaDriver
{
    private static readonly Lazy<CudaDriver> s_shared = new(() => new CudaDriver(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly LibCuda.Api? _api;
    private readonly string? _unavailable;
    private readonly int _deviceCount;
    private readonly nint[] _contexts;
    private readonly Lock _contextLock = new();
    private readonly int _pid;
    private readonly int[] _vmm; // per device: 0 not asked yet, 1 supported, -1 not

    private CudaDriver()
    {
        _contexts = [];
        _vmm = [];
        _pid = Libc.GetPid();
        if (!LibCuda.TryLoad(out _api, out string reason))
        {
            _unavailable = reason;
            return;
        }

        int rc = _api.cuInit(0);
        if (rc != LibCuda.CUDA_SUCCESS)
        {
            _unavailable = rc switch
            {
                CudaResult.NoDevice => $"cuInit found no CUDA device ({Text(rc)}): the driver is installed but sees no GPU (check CUDA_VISIBLE_DEVICES and that the container was given the GPU)",
                CudaResult.StubLibrary => $"{LibCuda.LibraryName} is the CUDA toolkit's stub library, not the driver ({Text(rc)}): install the NVIDIA driver, or remove the stubs directory from the loader path",
                CudaResult.InsufficientDriver or CudaResult.SystemDriverMismatch => $"the NVIDIA kernel driver and {LibCuda.LibraryName} do not match or are too old ({Text(rc)})",
                _ => $"cuInit failed: {Text(rc)}",
            };
            return;
        }

        int count = 0;
        rc = _api.cuDeviceGetCount(&count);
        if (rc != LibCuda.CUDA_SUCCESS || count <= 0)
        {
            _unavailable = rc != LibCuda.CUDA_SUCCESS ? $"cuDeviceGetCount failed: {Text(rc)}" : "the CUDA driver reports no device";
            return;
        }

        _deviceCount = count;
        _contexts = new nint[count];
        _vmm = new int[count];
    }

    /// <summary>Environment variable that turns the VMM path off (<c>0</c>): every allocation then uses
    /// <c>cuMemAlloc</c> and IPC handles, as on a driver without VMM.</summary>
    internal const string VmmVariable = "XMEM_CUDA_VMM";

    /// <summary>The process's one driver binding.</summary>
    internal static CudaDriver Shared => s_shared.Value;

    /// <inheritdoc />
    public string? UnavailableReason => _unavailable;

    /// <inheritdoc />
    public int DeviceCount
    {
        get
        {
            ThrowIfUnavailable();
            return _deviceCount;
        }
    }

    private LibCuda.Api Api
    {
        get
        {
            ThrowIfUnavailable();
            return _api!;
        }
    }

    /// <inheritdoc />
    public ulong Allocate(int device, long bytes)
    {
        using ContextScope scope = Enter(device);
        ulong p;
        Check(Api.cuMemAlloc(&p, (nuint)bytes), $"cuMemAlloc({bytes} bytes on device {device})");
        return p;
    }

    /// <inheritdoc />
    public void Free(int device, ulong pointer)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemFree(pointer), $"cuMemFree(0x{pointer:x} on device {device})");
    }

    /// <inheritdoc />
    public (ulong Base, long Size) GetAddressRange(int device, ulong pointer)
    {
        using ContextScope scope = Enter(device);
        ulong b;
        nuint size;
        Check(Api.cuMemGetAddressRange(&b, &size, pointer), $"cuMemGetAddressRange(0x{pointer:x} on device {device})");
        return (b, (long)size);
    }

    /// <inheritdoc />
    public CuIpcHandle GetMemHandle(int device, ulong basePointer)
    {
        using ContextScope scope = Enter(device);
        CuIpcHandle h;
        Check(Api.cuIpcGetMemHandle(&h, basePointer), $"cuIpcGetMemHandle(0x{basePointer:x} on device {device})");
        return h;
    }

    /// <inheritdoc />
    public ulong OpenMemHandle(int device, in CuIpcHandle handle)
    {
        using ContextScope scope = Enter(device);
        ulong p;
        // Lazy peer access: the mapping becomes usable from other devices only when they first touch it, so
        // opening costs nothing for devices that never do.
        Check(Api.cuIpcOpenMemHandle(&p, handle, LibCuda.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), $"cuIpcOpenMemHandle(device {device})");
        return p;
    }

    /// <inheritdoc />
    public void CloseMemHandle(int device, ulong basePointer)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuIpcCloseMemHandle(basePointer), $"cuIpcCloseMemHandle(0x{basePointer:x} on device {device})");
    }

    /// <inheritdoc />
    public nint CreateInterprocessEvent(int device, out CuIpcHandle handle)
    {
        using ContextScope scope = Enter(device);
        nint ev;
        // Interprocess events must be created without timing.
        Check(Api.cuEventCreate(&ev, LibCuda.CU_EVENT_DISABLE_TIMING | LibCuda.CU_EVENT_INTERPROCESS), $"cuEventCreate(interprocess, device {device})");
        CuIpcHandle h;
        int rc = Api.cuIpcGetEventHandle(&h, ev);
        if (rc != LibCuda.CUDA_SUCCESS)
        {
            _ = _api!.cuEventDestroy(ev);
            Check(rc, $"cuIpcGetEventHandle(device {device})");
        }

        handle = h;
        return ev;
    }

    /// <inheritdoc />
    public nint OpenEventHandle(int device, in CuIpcHandle handle)
    {
        using ContextScope scope = Enter(device);
        nint ev;
        Check(Api.cuIpcOpenEventHandle(&ev, handle), $"cuIpcOpenEventHandle(device {device})");
        return ev;
    }

    /// <inheritdoc />
    public void DestroyEvent(int device, nint ev)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuEventDestroy(ev), $"cuEventDestroy(device {device})");
    }

    /// <inheritdoc />
    public void RecordEvent(int device, nint ev, nint stream)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuEventRecord(ev, stream), $"cuEventRecord(device {device}, stream 0x{stream:x})");
    }

    /// <inheritdoc />
    public void StreamWaitEvent(int device, nint stream, nint ev)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuStreamWaitEvent(stream, ev, 0), $"cuStreamWaitEvent(device {device}, stream 0x{stream:x})");
    }

    /// <inheritdoc />
    public void SynchronizeEvent(int device, nint ev)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuEventSynchronize(ev), $"cuEventSynchronize(device {device})");
    }

    /// <inheritdoc />
    public void SynchronizeDevice(int device)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuCtxSynchronize(), $"cuCtxSynchronize(device {device})");
    }

    /// <inheritdoc />
    public void CopyDeviceToDevice(int device, ulong destination, ulong source, long bytes)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemcpyDtoD(destination, source, (nuint)bytes), $"cuMemcpyDtoD({bytes} bytes on device {device})");
    }

    /// <inheritdoc />
    public void CopyPeer(int destinationDevice, ulong destination, int sourceDevice, ulong source, long bytes)
    {
        nint dstCtx = Context(destinationDevice), srcCtx = Context(sourceDevice);
        using (Enter(destinationDevice))
        {
            Check(Api.cuMemcpyPeer(destination, dstCtx, source, srcCtx, (nuint)bytes), $"cuMemcpyPeer({bytes} bytes, device {sourceDevice} → {destinationDevice})");
            // A peer copy may return before it completes; its ordering against either context's streams is not
            // documented, so wait for it here (a slow path: cross-device copies are explicit and rare).
            Check(Api.cuCtxSynchronize(), $"cuCtxSynchronize(device {destinationDevice})");
        }
    }

    /// <inheritdoc />
    public void CopyHostToDevice(int device, ulong destination, nint source, long bytes)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemcpyHtoD(destination, (void*)source, (nuint)bytes), $"cuMemcpyHtoD({bytes} bytes to device {device})");
    }

    /// <inheritdoc />
    public void CopyDeviceToHost(int device, nint destination, ulong source, long bytes)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemcpyDtoH((void*)destination, source, (nuint)bytes), $"cuMemcpyDtoH({bytes} bytes from device {device})");
    }

    // ---------------------------------------------------------------- virtual memory management (POSIX fds)

    /// <inheritdoc />
    public bool SupportsVmm(int device)
    {
        _ = Context(device); // validates the ordinal, throws when CUDA is unavailable
        int known = Volatile.Read(ref _vmm[device]);
        if (known != 0)
        {
            return known > 0;
        }

        bool yes = _api!.HasVmm && Environment.GetEnvironmentVariable(VmmVariable) != "0" &&
                   Attribute(device, LibCuda.CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) == 1 &&
                   Attribute(device, LibCuda.CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED) == 1;
        Volatile.Write(ref _vmm[device], yes ? 1 : -1);
        return yes;
    }

    private int Attribute(int device, int attribute)
    {
        int dev, v = 0;
        Check(_api!.cuDeviceGet(&dev, device), $"cuDeviceGet({device})");
        // A driver that does not know the attribute answers an error: that is "not supported", not a failure.
        return _api.cuDeviceGetAttribute(&v, attribute, dev) == LibCuda.CUDA_SUCCESS ? v : 0;
    }

    private static CuMemAllocationProp Prop(int device) => new()
    {
        Type = LibCuda.CU_MEM_ALLOCATION_TYPE_PINNED,
        RequestedHandleTypes = LibCuda.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        Location = new CuMemLocation { Type = LibCuda.CU_MEM_LOCATION_TYPE_DEVICE, Id = device },
    };

    /// <inheritdoc />
    public long VmmGranularity(int device)
    {
        using ContextScope scope = Enter(device);
        CuMemAllocationProp prop = Prop(device);
        nuint g;
        Check(Api.cuMemGetAllocationGranularity(&g, &prop, LibCuda.CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), $"cuMemGetAllocationGranularity(device {device})");
        if (g == 0 || (g & (g - 1)) != 0)
        {
            throw new CudaException($"cuMemGetAllocationGranularity(device {device}) answered {g}, not a power of two", CudaResult.Unknown);
        }

        return (long)g;
    }

    /// <inheritdoc />
    public ulong VmmCreate(int device, long bytes)
    {
        using ContextScope scope = Enter(device);
        CuMemAllocationProp prop = Prop(device);
        ulong h;
        Check(Api.cuMemCreate(&h, (nuint)bytes, &prop, 0), $"cuMemCreate({bytes} bytes on device {device}, POSIX file descriptor handles)");
        return h;
    }

    /// <inheritdoc />
    public int VmmExportFd(int device, ulong handle)
    {
        using ContextScope scope = Enter(device);
        int fd = -1;
        Check(Api.cuMemExportToShareableHandle(&fd, handle, LibCuda.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0), $"cuMemExportToShareableHandle(device {device})");
        return fd;
    }

    /// <inheritdoc />
    public ulong VmmImportFd(int device, int fd)
    {
        using ContextScope scope = Enter(device);
        ulong h;
        // cuda.h: for CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR the descriptor is passed as the pointer's value.
        Check(Api.cuMemImportFromShareableHandle(&h, fd, LibCuda.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR), $"cuMemImportFromShareableHandle(device {device})");
        return h;
    }

    /// <inheritdoc />
    public ulong VmmMap(int device, ulong handle, long bytes)
    {
        using ContextScope scope = Enter(device);
        ulong va;
        Check(Api.cuMemAddressReserve(&va, (nuint)bytes, 0, 0, 0), $"cuMemAddressReserve({bytes} bytes, device {device})");
        int rc = Api.cuMemMap(va, (nuint)bytes, 0, handle, 0);
        if (rc != LibCuda.CUDA_SUCCESS)
        {
            _ = Api.cuMemAddressFree(va, (nuint)bytes);
            Check(rc, $"cuMemMap({bytes} bytes, device {device})");
        }

        CuMemAccessDesc access = new()
        {
            Location = new CuMemLocation { Type = LibCuda.CU_MEM_LOCATION_TYPE_DEVICE, Id = device },
            Flags = LibCuda.CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        };
        rc = Api.cuMemSetAccess(va, (nuint)bytes, &access, 1);
        if (rc != LibCuda.CUDA_SUCCESS)
        {
            _ = Api.cuMemUnmap(va, (nuint)bytes);
            _ = Api.cuMemAddressFree(va, (nuint)bytes);
            Check(rc, $"cuMemSetAccess({bytes} bytes, device {device})");
        }

        return va;
    }

    /// <inheritdoc />
    public void VmmUnmap(int device, ulong address, long bytes)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemUnmap(address, (nuint)bytes), $"cuMemUnmap(0x{address:x}, {bytes} bytes, device {device})");
        Check(Api.cuMemAddressFree(address, (nuint)bytes), $"cuMemAddressFree(0x{address:x}, {bytes} bytes, device {device})");
    }

    /// <inheritdoc />
    public void VmmRelease(int device, ulong handle)
    {
        using ContextScope scope = Enter(device);
        Check(Api.cuMemRelease(handle), $"cuMemRelease(device {device})");
    }

    // ---------------------------------------------------------------- contexts and errors

    private void ThrowIfUnavailable()
    {
        if (_unavailable is not null)
        {
            throw new CudaUnavailableException($"CUDA is unavailable: {_unavailable}. CPU buffers work as usual.");
        }
    }

    /// <summary>The device's primary context, retained on first use and kept for the life of the process.</summary>
    private nint Context(int device)
    {
        ThrowIfUnavailable();
        if ((uint)device >= (uint)_deviceCount)
        {
            throw new CudaUnavailableException($"CUDA device {device} does not exist: this process sees {_deviceCount} device(s), 0..{_deviceCount - 1} (CUDA_VISIBLE_DEVICES renumbers them).");
        }

        nint ctx = Volatile.Read(ref _contexts[device]);
        if (ctx != 0)
        {
            return ctx;
        }

        lock (_contextLock)
        {
            if (_contexts[device] == 0)
            {
                int dev;
                Check(_api!.cuDeviceGet(&dev, device), $"cuDeviceGet({device})");
                nint c;
                Check(_api.cuDevicePrimaryCtxRetain(&c, dev), $"cuDevicePrimaryCtxRetain(device {device})");
                Volatile.Write(ref _contexts[device], c);
            }

            return _contexts[device];
        }
    }

    /// <summary>Makes the device's primary context current on this thread until disposed, then restores the
    /// caller's: the context stack is per thread, so a framework's current context is never disturbed.</summary>
    private ContextScope Enter(int device)
    {
        nint ctx = Context(device);
        Check(_api!.cuCtxPushCurrent(ctx), $"cuCtxPushCurrent(device {device})");
        return new ContextScope(_api);
    }

    private readonly struct ContextScope(LibCuda.Api api) : IDisposable
    {
        public void Dispose()
        {
            nint popped;
            _ = api.cuCtxPopCurrent(&popped);
        }
    }

    private void Check(int rc, string what)
    {
        if (rc != LibCuda.CUDA_SUCCESS)
        {
            ThrowFailure(rc, what);
        }
    }

    private void ThrowFailure(int rc, string what)
    {
        if (Libc.GetPid() != _pid)
        {
            // The driver state was copied by fork(): CUDA does not support it in the child, whatever it answers.
            throw new CudaUnavailableException($"{what} failed: {Text(rc)}. This process is a fork() child of process {_pid}, which had initialized CUDA; CUDA cannot be used after fork. Start CUDA users with spawn or forkserver (multiprocessing.set_start_method(\"spawn\")), or exec a new program.");
        }

        throw CudaResult.ToException(what, rc, Text(rc));
    }

    /// <summary>"NAME: description" from the driver, or the fallback name.</summary>
    private string Text(int rc)
    {
        string name = CudaResult.Name(rc);
        if (_api is null)
        {
            return name;
        }

        byte* p = null;
        if (_api.cuGetErrorName(rc, &p) == LibCuda.CUDA_SUCCESS && p is not null)
        {
            name = Marshal.PtrToStringUTF8((nint)p) ?? name;
        }

        p = null;
        if (_api.cuGetErrorString(rc, &p) == LibCuda.CUDA_SUCCESS && p is not null)
        {
            return $"{name}: {Marshal.PtrToStringUTF8((nint)p)}";
        }

        return name;
    }
}
