using Xmem.Interop;

namespace Xmem.Cuda;

/// <summary>
/// The CUDA driver operations xmem's pool needs, in xmem's terms. Every method makes the device's primary context
/// current for the call (and restores the caller's), so xmem lives beside PyTorch and CuPy in one process. Failures
/// throw: <see cref="CudaUnavailableException"/> when CUDA cannot be used at all, <see cref="XmemOutOfMemoryException"/>
/// for device memory exhaustion, <see cref="CudaException"/> (with the CUresult) otherwise.
/// <para>The one production implementation is <see cref="CudaDriver"/> over <c>libcuda.so.1</c>. Tests supply their own
/// to check xmem's bookkeeping (slot states, handle caches, recycling) on machines without a GPU; such a double proves
/// nothing about CUDA itself.</para>
/// </summary>
internal interface ICudaDriver
{
    /// <summary>Number of devices; throws <see cref="CudaUnavailableException"/> (with the reason) when CUDA is unusable.</summary>
    int DeviceCount { get; }

    /// <summary>Null when CUDA is usable in this process, else why not (the driver is probed once).</summary>
    string? UnavailableReason { get; }

    /// <summary>Allocates <paramref name="bytes"/> of device memory. Returns the device pointer.</summary>
    ulong Allocate(int device, long bytes);

    /// <summary>Frees memory from <see cref="Allocate"/>.</summary>
    void Free(int device, ulong pointer);

    /// <summary>Base and size of the allocation that contains <paramref name="pointer"/>.</summary>
    (ulong Base, long Size) GetAddressRange(int device, ulong pointer);

    /// <summary>The IPC handle of the allocation whose base is <paramref name="basePointer"/>.</summary>
    CuIpcHandle GetMemHandle(int device, ulong basePointer);

    /// <summary>Maps another process's allocation (lazy peer access). Returns its base in this process.</summary>
    ulong OpenMemHandle(int device, in CuIpcHandle handle);

    /// <summary>Unmaps an allocation from <see cref="OpenMemHandle"/>.</summary>
    void CloseMemHandle(int device, ulong basePointer);

    /// <summary>Creates an interprocess event (no timing) and returns it with its IPC handle.</summary>
    nint CreateInterprocessEvent(int device, out CuIpcHandle handle);

    /// <summary>Opens another process's interprocess event.</summary>
    nint OpenEventHandle(int device, in CuIpcHandle handle);

    /// <summary>Destroys an event (created or opened).</summary>
    void DestroyEvent(int device, nint ev);

    /// <summary>Records <paramref name="ev"/> after the work queued so far on <paramref name="stream"/>.</summary>
    void RecordEvent(int device, nint ev, nint stream);

    /// <summary>Makes later work on <paramref name="stream"/> wait for the last record of <paramref name="ev"/> (no host wait).</summary>
    void StreamWaitEvent(int device, nint stream, nint ev);

    /// <summary>Blocks the calling thread until the last record of <paramref name="ev"/> completed.</summary>
    void SynchronizeEvent(int device, nint ev);

    /// <summary>Blocks until every piece of work queued in the device's primary context completed.</summary>
    void SynchronizeDevice(int device);

    /// <summary>Device to device on one device, on the legacy default stream (asynchronous to the host).</summary>
    void CopyDeviceToDevice(int device, ulong destination, ulong source, long bytes);

    /// <summary>Device to device across devices; returns once the copy completed.</summary>
    void CopyPeer(int destinationDevice, ulong destination, int sourceDevice, ulong source, long bytes);

    /// <summary>Host to device; the source may be reused on return.</summary>
    void CopyHostToDevice(int device, ulong destination, nint source, long bytes);

    /// <summary>Device to host; the data is in place on return.</summary>
    void CopyDeviceToHost(int device, nint destination, ulong source, long bytes);

    /// <summary>True when <paramref name="device"/> supports virtual memory management with POSIX file descriptor
    /// handles (both attributes) and the driver has every VMM entry point; false also when <c>XMEM_CUDA_VMM=0</c>.
    /// Asked once per device.</summary>
    bool SupportsVmm(int device);

    /// <summary>Creates a physical allocation of <paramref name="bytes"/> (a multiple of the recommended granularity
    /// is used: see <see cref="VmmGranularity"/>) exportable as a POSIX file descriptor. Returns its handle.</summary>
    ulong VmmCreate(int device, long bytes);

    /// <summary>The recommended allocation granularity of <paramref name="device"/> for <see cref="VmmCreate"/>.</summary>
    long VmmGranularity(int device);

    /// <summary>A new POSIX file descriptor for the allocation (the caller closes it).</summary>
    int VmmExportFd(int device, ulong handle);

    /// <summary>Imports an allocation from a descriptor another process exported; the caller still closes
    /// <paramref name="fd"/>. Returns this process's handle.</summary>
    ulong VmmImportFd(int device, int fd);

    /// <summary>Reserves address space for <paramref name="bytes"/>, maps the allocation there and gives
    /// <paramref name="device"/> read-write access; all or nothing. Returns the address.</summary>
    ulong VmmMap(int device, ulong handle, long bytes);

    /// <summary>Unmaps and frees the address range from <see cref="VmmMap"/>.</summary>
    void VmmUnmap(int device, ulong address, long bytes);

    /// <summary>Releases this process's handle; the memory goes when no process holds a handle or mapping of it.</summary>
    void VmmRelease(int device, ulong handle);
}
