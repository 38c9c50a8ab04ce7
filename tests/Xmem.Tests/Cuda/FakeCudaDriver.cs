using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Xmem.Cuda;
using Xmem.Interop;

namespace Xmem.Tests.Cuda;

/// <summary>
/// Device memory shared by the simulated processes of one test: host memory standing in for device allocations,
/// with CUDA IPC's rules (an exporter cannot open its own handle, a handle names a whole allocation, only the
/// exporter frees, an exporter's death takes its memory). It checks xmem's bookkeeping, never CUDA itself.
/// </summary>
internal sealed unsafe class FakeCudaWorld : IDisposable
{
    private readonly Lock _lock = new();
    private long _nextId;

    public FakeCudaWorld(int devices = 2) => Devices = devices;

    public int Devices { get; }

    internal sealed class Allocation
    {
        public long Id;
        public int Device;
        public ulong Pointer;
        public long Size;
        public FakeCudaDriver Owner = null!;
        public bool Freed;
    }

    internal readonly Dictionary<long, Allocation> Allocations = [];
    internal readonly Dictionary<long, (FakeCudaDriver Owner, int Device)> Events = [];

    internal long NextId() => Interlocked.Increment(ref _nextId);

    internal Lock Gate => _lock;

    public long LiveBytes
    {
        get
        {
            lock (_lock)
            {
                return Allocations.Values.Where(a => !a.Freed).Sum(a => a.Size);
            }
        }
    }

    /// <summary>The process <paramref name="p"/> died: its context, allocations and events are gone.</summary>
    public void Kill(FakeCudaDriver p)
    {
        lock (_lock)
        {
            foreach (Allocation a in Allocations.Values.Where(a => a.Owner == p && !a.Freed))
            {
                a.Freed = true;
                NativeMemory.AlignedFree((void*)a.Pointer);
            }
        }

        p.Dead = true;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (Allocation a in Allocations.Values.Where(a => !a.Freed))
            {
                a.Freed = true;
                NativeMemory.AlignedFree((void*)a.Pointer);
            }
        }
    }
}

/// <summary>One simulated process's driver (see <see cref="FakeCudaWorld"/>). Counts calls by name.</summary>
internal sealed unsafe class FakeCudaDriver(FakeCudaWorld world, string name, string? unavailable = null) : ICudaDriver
{
    private const uint Magic = 0x46414B45; // "FAKE"
    private readonly Dictionary<ulong, (long Id, int Refs)> _imports = [];
    private readonly Dictionary<nint, long> _events = []; // local event → world event id
    private long _nextLocalEvent = 0x1000;

    public string Name { get; } = name;
    public bool Dead { get; set; }
    public Dictionary<string, int> Calls { get; } = [];
    public int TotalCalls => Calls.Values.Sum();
    public int Count(string call) => Calls.TryGetValue(call, out int n) ? n : 0;

    public int OpenImports => _imports.Count;

    public string? UnavailableReason { get; } = unavailable;

    public int DeviceCount
    {
        get
        {
            if (UnavailableReason is not null)
            {
                throw new CudaUnavailableException($"CUDA is unavailable: {UnavailableReason}. CPU buffers work as usual.");
            }

            return world.Devices;
        }
    }

    private void Call(string call, int device)
    {
        lock (world.Gate)
        {
            Calls[call] = Count(call) + 1;
        }

        _ = DeviceCount;
        if (Dead)
        {
            throw Fail(call, CudaResult.Deinitialized);
        }

        if ((uint)device >= (uint)world.Devices)
        {
            throw Fail(call, CudaResult.InvalidDevice);
        }
    }

    private static Exception Fail(string call, int rc) => CudaResult.ToException(call, rc, CudaResult.Name(rc));

    public ulong Allocate(int device, long bytes)
    {
        Call("cuMemAlloc", device);
        var a = new FakeCudaWorld.Allocation
        {
            Id = world.NextId(),
            Device = device,
            Pointer = (ulong)NativeMemory.AlignedAlloc((nuint)bytes, 4096),
            Size = bytes,
            Owner = this,
        };
        lock (world.Gate)
        {
            world.Allocations[a.Id] = a;
        }

        return a.Pointer;
    }

    public void Free(int device, ulong pointer)
    {
        Call("cuMemFree", device);
        lock (world.Gate)
        {
            FakeCudaWorld.Allocation a = world.Allocations.Values.SingleOrDefault(x => x.Pointer == pointer && !x.Freed && x.Owner == this)
                ?? throw Fail("cuMemFree", CudaResult.InvalidValue);
            a.Freed = true;
            NativeMemory.AlignedFree((void*)a.Pointer);
        }
    }

    /// <summary>The live allocation containing <paramref name="p"/> that this process may touch (own or imported).</summary>
    private FakeCudaWorld.Allocation Accessible(ulong p, long bytes, string call)
    {
        lock (world.Gate)
        {
            foreach (FakeCudaWorld.Allocation a in world.Allocations.Values)
            {
                if (!a.Freed && p >= a.Pointer && p + (ulong)bytes <= a.Pointer + (ulong)a.Size
                    && (a.Owner == this || _imports.ContainsKey(a.Pointer)))
                {
                    return a;
                }
            }
        }

        throw Fail(call, CudaResult.InvalidValue);
    }

    public (ulong Base, long Size) GetAddressRange(int device, ulong pointer)
    {
        Call("cuMemGetAddressRange", device);
        FakeCudaWorld.Allocation a = Accessible(pointer, 0, "cuMemGetAddressRange");
        return (a.Pointer, a.Size);
    }

    public CuIpcHandle GetMemHandle(int device, ulong basePointer)
    {
        Call("cuIpcGetMemHandle", device);
        FakeCudaWorld.Allocation a = Accessible(basePointer, 0, "cuIpcGetMemHandle");
        if (a.Pointer != basePointer || a.Owner != this)
        {
            throw Fail("cuIpcGetMemHandle", CudaResult.InvalidValue);
        }

        CuIpcHandle h = default;
        BinaryPrimitives.WriteUInt32LittleEndian(h.Bytes, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(h.Bytes[8..], a.Id);
        return h;
    }

    public ulong OpenMemHandle(int device, in CuIpcHandle handle)
    {
        Call("cuIpcOpenMemHandle", device);
        CuIpcHandle h = handle;
        if (BinaryPrimitives.ReadUInt32LittleEndian(h.Bytes) != Magic)
        {
            throw Fail("cuIpcOpenMemHandle", CudaResult.InvalidValue);
        }

        long id = BinaryPrimitives.ReadInt64LittleEndian(h.Bytes[8..]);
        lock (world.Gate)
        {
            if (!world.Allocations.TryGetValue(id, out FakeCudaWorld.Allocation? a) || a.Freed)
            {
                throw Fail("cuIpcOpenMemHandle", CudaResult.InvalidValue);
            }

            if (a.Owner == this)
            {
                throw Fail("cuIpcOpenMemHandle", CudaResult.InvalidContext); // CUDA refuses to open one's own handle
            }

            _imports[a.Pointer] = (id, _imports.TryGetValue(a.Pointer, out var e) ? e.Refs + 1 : 1);
            return a.Pointer;
        }
    }

    public void CloseMemHandle(int device, ulong basePointer)
    {
        Call("cuIpcCloseMemHandle", device);
        lock (world.Gate)
        {
            if (!_imports.TryGetValue(basePointer, out var e))
            {
                throw Fail("cuIpcCloseMemHandle", CudaResult.InvalidValue);
            }

            if (e.Refs == 1)
            {
                _imports.Remove(basePointer);
            }
            else
            {
                _imports[basePointer] = (e.Id, e.Refs - 1);
            }
        }
    }

    public nint CreateInterprocessEvent(int device, out CuIpcHandle handle)
    {
        Call("cuEventCreate", device);
        long id = world.NextId();
        lock (world.Gate)
        {
            world.Events[id] = (this, device);
        }

        CuIpcHandle h = default;
        BinaryPrimitives.WriteUInt32LittleEndian(h.Bytes, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(h.Bytes[8..], id);
        handle = h;
        return NewLocalEvent(id);
    }

    public nint OpenEventHandle(int device, in CuIpcHandle handle)
    {
        Call("cuIpcOpenEventHandle", device);
        CuIpcHandle h = handle;
        long id = BinaryPrimitives.ReadInt64LittleEndian(h.Bytes[8..]);
        lock (world.Gate)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(h.Bytes) != Magic || !world.Events.ContainsKey(id))
            {
                throw Fail("cuIpcOpenEventHandle", CudaResult.InvalidValue);
            }
        }

        return NewLocalEvent(id);
    }

    private nint NewLocalEvent(long id)
    {
        lock (world.Gate)
        {
            nint ev = (nint)(++_nextLocalEvent);
            _events[ev] = id;
            return ev;
        }
    }

    private void CheckEvent(nint ev, string call)
    {
        lock (world.Gate)
        {
            if (!_events.ContainsKey(ev))
            {
                throw Fail(call, CudaResult.InvalidHandle);
            }
        }
    }

    public int LiveEvents
    {
        get
        {
            lock (world.Gate)
            {
                return _events.Count;
            }
        }
    }

    public void DestroyEvent(int device, nint ev)
    {
        Call("cuEventDestroy", device);
        CheckEvent(ev, "cuEventDestroy");
        lock (world.Gate)
        {
            _events.Remove(ev);
        }
    }

    public void RecordEvent(int device, nint ev, nint stream)
    {
        Call("cuEventRecord", device);
        CheckEvent(ev, "cuEventRecord");
    }

    public void StreamWaitEvent(int device, nint stream, nint ev)
    {
        Call("cuStreamWaitEvent", device);
        CheckEvent(ev, "cuStreamWaitEvent");
    }

    public void SynchronizeEvent(int device, nint ev)
    {
        Call("cuEventSynchronize", device);
        CheckEvent(ev, "cuEventSynchronize");
    }

    public void SynchronizeDevice(int device) => Call("cuCtxSynchronize", device);

    public void CopyDeviceToDevice(int device, ulong destination, ulong source, long bytes)
    {
        Call("cuMemcpyDtoD", device);
        Copy(destination, source, bytes, "cuMemcpyDtoD");
    }

    public void CopyPeer(int destinationDevice, ulong destination, int sourceDevice, ulong source, long bytes)
    {
        Call("cuMemcpyPeer", destinationDevice);
        Copy(destination, source, bytes, "cuMemcpyPeer");
    }

    public void CopyHostToDevice(int device, ulong destination, nint source, long bytes)
    {
        Call("cuMemcpyHtoD", device);
        _ = Accessible(destination, bytes, "cuMemcpyHtoD");
        Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
    }

    public void CopyDeviceToHost(int device, nint destination, ulong source, long bytes)
    {
        Call("cuMemcpyDtoH", device);
        _ = Accessible(source, bytes, "cuMemcpyDtoH");
        Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
    }

    // The bookkeeping double models a driver without VMM: the pool takes the cuMemAlloc + IPC path with it. The VMM
    // path is tested against the stand-in driver (StandInVmmTests).
    public bool SupportsVmm(int device)
    {
        _ = DeviceCount;
        return false;
    }

    public ulong VmmCreate(int device, long bytes) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public long VmmGranularity(int device) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public int VmmExportFd(int device, ulong handle) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public ulong VmmImportFd(int device, int fd) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public ulong VmmMap(int device, ulong handle, long bytes) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public void VmmUnmap(int device, ulong address, long bytes) => throw new NotSupportedException("the bookkeeping double has no VMM");

    public void VmmRelease(int device, ulong handle) => throw new NotSupportedException("the bookkeeping double has no VMM");

    private void Copy(ulong dst, ulong src, long bytes, string call)
    {
        _ = Accessible(dst, bytes, call);
        _ = Accessible(src, bytes, call);
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
    }
}
