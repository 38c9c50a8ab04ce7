using Xmem.Interop;

namespace Xmem.Cuda;

/// <summary>
/// One CUDA allocation as this process sees it, for one slot memory generation: either <em>exported</em> (this
/// process allocated it, owns its interprocess event, and is the only one that may free it) or <em>imported</em>
/// (opened from another process's IPC handles; closing unmaps it here and leaves the exporter's memory alone). Either
/// is of one of two kinds: <c>cuMemAlloc</c> memory shared by IPC handle, or a VMM allocation (<c>cuMemCreate</c>,
/// <see cref="IsVmm"/>) shared by POSIX file descriptor, of which every holder keeps a handle of its own, so an
/// import stays valid after its exporter died (docs/cuda.md, "Buffers that outlive their producer").
/// <para>Guards (and through them DLPack tensors and CUDA Array Interface views) hold <em>leases</em> on it, as CPU
/// guards and views hold leases on a mapping. <see cref="Release"/> asks for the memory to go; the driver calls
/// (event destroyed, memory freed or closed) run exactly once, when the last lease is given back — so nothing a live
/// guard or view points at is freed or unmapped under it, whatever the pool does (trim, recycling, close).</para>
/// Invariants: <c>_state</c> packs the release request (bit 31) with the lease count (bits 0..30); a lease is taken
/// only before the request (CAS), so once the request is set and the count reaches zero no lease can come back, and
/// <see cref="Free"/> runs once (<c>_freed</c>).
/// </summary>
internal sealed class CudaMemory
{
    private const int ReleaseRequested = int.MinValue;
    private readonly ICudaDriver _driver;
    private int _state;
    private int _freed;
    private Action<CudaMemory>? _onIdle;
    private Action? _onFreed;
    private readonly Lock _hookLock = new();

    private CudaMemory(ICudaDriver driver, bool exported, int device, uint memGen, ulong basePointer, long offset, long allocSize, nint ev, ulong vmmHandle = 0)
    {
        VmmHandle = vmmHandle;
        _driver = driver;
        IsExport = exported;
        Device = device;
        MemGen = memGen;
        Base = basePointer;
        Offset = offset;
        AllocSize = allocSize;
        Event = ev;
    }

    /// <summary>This process's VMM allocation handle (<c>CUmemGenericAllocationHandle</c>); 0 for IPC memory.</summary>
    internal ulong VmmHandle { get; }

    /// <summary>True for a VMM allocation shared by POSIX file descriptor (slot Kind 3).</summary>
    internal bool IsVmm => VmmHandle != 0;

    /// <summary>VMM imports: the exporter's pid and fd-server token, to tell whether it died.</summary>
    internal int ExporterPid { get; private init; }

    internal ulong ExporterToken { get; private init; }

    /// <summary>Makes <paramref name="stream"/> wait for the slot's last recorded writes.</summary>
    internal void WaitWrites(nint stream)
    {
        try
        {
            _driver.StreamWaitEvent(Device, stream, Event);
        }
        catch (CudaException) when (ExporterDied())
        {
            // The slot's event lived in the dead exporter's context; every write it recorded ended with that
            // context, so there is nothing left to wait for.
        }
    }

    /// <summary>Blocks until the slot's last recorded writes completed.</summary>
    internal void SynchronizeWrites()
    {
        try
        {
            _driver.SynchronizeEvent(Device, Event);
        }
        catch (CudaException) when (ExporterDied())
        {
            // As in WaitWrites: the writes it recorded ended with the exporter's context.
        }
    }

    /// <summary>Records this process's writes queued on <paramref name="stream"/> on the slot's event.</summary>
    internal void RecordWrites(nint stream)
    {
        try
        {
            _driver.RecordEvent(Device, Event, stream);
        }
        catch (CudaException) when (ExporterDied())
        {
            // The event went with the exporter: no process can open this memory any more, and those that hold it
            // order their own work (docs/cuda.md, "Buffers that outlive their producer").
        }
    }

    /// <summary>True for a VMM import whose exporter is gone (its fd socket no longer listens).</summary>
    private bool ExporterDied() => IsVmm && !IsExport && CudaFdClient.IsGone(ExporterPid, ExporterToken);

    /// <summary>True when this process allocated the memory (and must free it).</summary>
    internal bool IsExport { get; }

    /// <summary>The CUDA device ordinal.</summary>
    internal int Device { get; }

    /// <summary>The slot's memory generation this allocation belongs to.</summary>
    internal uint MemGen { get; }

    /// <summary>The allocation's base in this process.</summary>
    internal ulong Base { get; }

    /// <summary>Offset of the buffer in the allocation.</summary>
    internal long Offset { get; }

    /// <summary>The buffer's first byte in this process.</summary>
    internal ulong Pointer => Base + (ulong)Offset;

    /// <summary>Bytes of the allocation.</summary>
    internal long AllocSize { get; }

    /// <summary>The slot's interprocess event in this process (created here, or opened).</summary>
    internal nint Event { get; }

    /// <summary>The allocation's IPC handle (exports only).</summary>
    internal CuIpcHandle MemHandle { get; private init; }

    /// <summary>The event's IPC handle (exports only).</summary>
    internal CuIpcHandle EventHandle { get; private init; }

    /// <summary>True once <see cref="Release"/> was asked for: no new lease can be taken (the memory goes when the
    /// last one is given back).</summary>
    internal bool IsReleased => Volatile.Read(ref _state) < 0;

    /// <summary>True once the driver calls ran: the event is destroyed and the memory freed or closed.</summary>
    internal bool IsFreed => Volatile.Read(ref _freed) != 0;

    /// <summary>Leases held now (tests).</summary>
    internal int Leases => Volatile.Read(ref _state) & int.MaxValue;

    /// <summary>Called (once per time) when the lease count drops to zero without a release request: how an
    /// import's owner closes the mapping as soon as no guard of this process uses it (docs/cuda.md, "Who frees
    /// what"). Set before the memory is shared.</summary>
    internal void OnIdle(Action<CudaMemory> onIdle) => _onIdle = onIdle;

    /// <summary>Runs <paramref name="onFreed"/> once the driver calls ran (on the thread that gave back the last
    /// lease); false, and it is not kept, when they ran already.</summary>
    internal bool OnFreed(Action onFreed)
    {
        lock (_hookLock)
        {
            if (IsFreed)
            {
                return false;
            }

            _onFreed = onFreed;
            return true;
        }
    }

    /// <summary>Takes a lease; false once a release was asked for (resolve the slot again).</summary>
    internal bool TryLease()
    {
        int s = Volatile.Read(ref _state);
        while (s >= 0)
        {
            // CAS: a lease may be added only while no release is requested (see the invariants).
            int seen = Interlocked.CompareExchange(ref _state, s + 1, s);
            if (seen == s)
            {
                return true;
            }

            s = seen;
        }

        return false;
    }

    /// <summary>Gives back a lease from <see cref="TryLease"/>; the last one after a release request frees the
    /// memory, the last one of an import without a request calls the idle hook (which asks for the release).</summary>
    internal void Unlease()
    {
        int s = Interlocked.Decrement(ref _state); // a full fence: every use of the memory by this lease came before
        if (s == ReleaseRequested)
        {
            _ = Free();
        }
        else if (s == 0)
        {
            _onIdle?.Invoke(this);
        }
    }

    /// <summary>Allocates <paramref name="allocSize"/> bytes on <paramref name="device"/> with an interprocess event
    /// and the IPC handles of both. All or nothing.</summary>
    internal static CudaMemory Export(ICudaDriver driver, int device, long allocSize, uint memGen)
    {
        ulong p = driver.Allocate(device, allocSize);
        try
        {
            // The handle must name the allocation's base; cuMemAlloc returns the base, but ask rather than assume.
            (ulong b, long size) = driver.GetAddressRange(device, p);
            if (size < allocSize || p < b)
            {
                throw new CudaException($"cuMemGetAddressRange says the allocation at 0x{p:x} is {size} bytes from 0x{b:x}, less than the {allocSize} allocated", CudaResult.Unknown);
            }

            CuIpcHandle memHandle = driver.GetMemHandle(device, b);
            nint ev = driver.CreateInterprocessEvent(device, out CuIpcHandle evHandle);
            return new CudaMemory(driver, exported: true, device, memGen, b, (long)(p - b), allocSize, ev)
            {
                MemHandle = memHandle,
                EventHandle = evHandle,
            };
        }
        catch
        {
            _ = TryOrIgnore(() => driver.Free(device, p));
            throw;
        }
    }

    /// <summary>Creates a VMM allocation of <paramref name="allocSize"/> bytes (rounded up to the device's
    /// granularity) exportable as a POSIX file descriptor, maps it read-write here, and creates the slot's
    /// interprocess event. All or nothing.</summary>
    internal static CudaMemory ExportVmm(ICudaDriver driver, int device, long allocSize, uint memGen)
    {
        long g = driver.VmmGranularity(device);
        long size = (allocSize + g - 1) / g * g;
        ulong h = driver.VmmCreate(device, size);
        ulong va = 0;
        try
        {
            va = driver.VmmMap(device, h, size);
            nint ev = driver.CreateInterprocessEvent(device, out CuIpcHandle evHandle);
            return new CudaMemory(driver, exported: true, device, memGen, va, 0, size, ev, h) { EventHandle = evHandle };
        }
        catch
        {
            if (va != 0)
            {
                _ = TryOrIgnore(() => driver.VmmUnmap(device, va, size));
            }

            _ = TryOrIgnore(() => driver.VmmRelease(device, h));
            throw;
        }
    }

    /// <summary>Imports another process's VMM allocation from <paramref name="fd"/> (which the caller closes), maps
    /// it read-write here and opens the slot's event. <paramref name="info"/> has been validated; the mapping covers
    /// its AllocSize, which the driver refuses when the allocation is smaller.</summary>
    internal static CudaMemory ImportVmm(ICudaDriver driver, in CudaSlotInfo info, int fd)
    {
        int device = info.Device;
        long size = info.AllocSize;
        ulong h = driver.VmmImportFd(device, fd);
        ulong va = 0;
        try
        {
            va = driver.VmmMap(device, h, size);
            nint ev = driver.OpenEventHandle(device, info.EventHandle);
            return new CudaMemory(driver, exported: false, device, info.MemGen, va, info.Offset, size, ev, h)
            {
                ExporterPid = info.ExporterPid,
                ExporterToken = info.ExporterToken,
            };
        }
        catch
        {
            if (va != 0)
            {
                _ = TryOrIgnore(() => driver.VmmUnmap(device, va, size));
            }

            _ = TryOrIgnore(() => driver.VmmRelease(device, h));
            throw;
        }
    }

    /// <summary>A new POSIX file descriptor of this exported VMM allocation, for an importer (the caller closes
    /// it); -1 when the memory is being released (no lease can be taken). The lease keeps the handle valid
    /// meanwhile.</summary>
    internal int ExportFd()
    {
        if (!IsVmm || !IsExport || !TryLease())
        {
            return -1;
        }

        try
        {
            return _driver.VmmExportFd(Device, VmmHandle);
        }
        finally
        {
            Unlease();
        }
    }

    /// <summary>Opens another process's allocation and event. <paramref name="info"/> has been validated.</summary>
    internal static CudaMemory Import(ICudaDriver driver, in CudaSlotInfo info)
    {
        ulong b = driver.OpenMemHandle(info.Device, info.MemHandle);
        try
        {
            (ulong rb, long size) = driver.GetAddressRange(info.Device, b);
            if (rb != b || size < info.Offset + info.Size)
            {
                throw new CorruptSegmentException($"the CUDA allocation opened for a slot is {size} bytes, less than the {info.Offset + info.Size} its record claims (the slot record is damaged)");
            }

            nint ev = driver.OpenEventHandle(info.Device, info.EventHandle);
            return new CudaMemory(driver, exported: false, info.Device, info.MemGen, b, info.Offset, info.AllocSize, ev);
        }
        catch
        {
            int device = info.Device;
            _ = TryOrIgnore(() => driver.CloseMemHandle(device, b));
            throw;
        }
    }

    /// <summary>Asks for the memory to go: frees (export) or closes (import) it and destroys the event now when no
    /// lease is held, else when the last lease is given back. Returns the bytes freed on the device now (0 for an
    /// import, when deferred, or when the driver refused: memory of a context that is gone, e.g.).</summary>
    internal long Release()
    {
        int s = Volatile.Read(ref _state);
        while (s >= 0)
        {
            int seen = Interlocked.CompareExchange(ref _state, s | ReleaseRequested, s);
            if (seen == s)
            {
                return s == 0 ? Free() : 0;
            }

            s = seen;
        }

        return 0;
    }

    private long Free()
    {
        if (Interlocked.Exchange(ref _freed, 1) != 0)
        {
            return 0;
        }

        // Failures here cannot be acted on (the memory's context may be gone with its process): the slot is
        // forgotten either way.
        _ = TryOrIgnore(() => _driver.DestroyEvent(Device, Event));
        long freed = 0;
        if (IsVmm)
        {
            // The mapping first, then this process's handle: the physical memory goes when the last handle and
            // mapping of any process are gone, so importers that still map it keep it.
            _ = TryOrIgnore(() => _driver.VmmUnmap(Device, Base, AllocSize));
            bool released = TryOrIgnore(() => _driver.VmmRelease(Device, VmmHandle));
            freed = IsExport && released ? AllocSize : 0;
        }
        else if (IsExport)
        {
            freed = TryOrIgnore(() => _driver.Free(Device, Base)) ? AllocSize : 0;
        }
        else
        {
            _ = TryOrIgnore(() => _driver.CloseMemHandle(Device, Base));
        }

        Action? after;
        lock (_hookLock)
        {
            after = _onFreed;
            _onFreed = null;
        }

        if (after is not null)
        {
            _ = TryOrIgnore(after);
        }

        return freed;
    }

    private static bool TryOrIgnore(Action a)
    {
        try
        {
            a();
            return true;
        }
        catch (XmemException)
        {
            return false;
        }
    }
}

/// <summary>A slot's CUDA fields as read from shared memory (to be validated before use).</summary>
internal readonly struct CudaSlotInfo
{
    /// <summary>The slot's Kind: <c>KindCuda</c> (IPC) or <c>KindCudaVmm</c> (POSIX file descriptor).</summary>
    internal ushort Kind { get; init; }

    /// <summary>VMM only: the exporter's pid and socket token (<see cref="Layout.CudaVmmExport"/>).</summary>
    internal int ExporterPid { get; init; }

    internal ulong ExporterToken { get; init; }

    internal uint MemGen { get; init; }
    internal int Device { get; init; }
    internal long Offset { get; init; }
    internal long AllocSize { get; init; }
    internal long Size { get; init; }
    internal CuIpcHandle MemHandle { get; init; }
    internal CuIpcHandle EventHandle { get; init; }

    /// <summary>Null when the fields are consistent, else what is wrong (never trust shared memory).</summary>
    internal string? Problem(int deviceCount)
    {
        if (!Layout.LayoutConstants.IsCuda(Kind))
        {
            return $"its kind {Kind} is not CUDA memory";
        }

        if ((uint)Device >= (uint)deviceCount)
        {
            return $"its CUDA device {Device} is not one of this process's {deviceCount} device(s) (is CUDA_VISIBLE_DEVICES the same in every process?)";
        }

        if (AllocSize <= 0 || Offset < 0 || Size < 1 || Size > AllocSize - Offset)
        {
            return $"it says it holds {Size} bytes at offset {Offset} of a {AllocSize}-byte CUDA allocation";
        }

        if (Kind == Layout.LayoutConstants.KindCudaVmm && (ExporterPid <= 0 || ExporterToken == 0))
        {
            return $"its VMM export names process {ExporterPid} with token {ExporterToken:x16}, which no exporter writes";
        }

        return null;
    }
}
