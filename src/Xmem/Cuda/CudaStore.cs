using Xmem.Core;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;

namespace Xmem.Cuda;

/// <summary>
/// CUDA device memory of a pool's slots (docs/cuda.md). A CUDA slot keeps no data segment (DataCapacity 0); its record
/// names the exporter's allocation (CudaOffset, CudaAllocSize, DeviceId) and its interprocess event
/// (CudaIpcEventHandle), and says how to open the allocation: Kind 2, by IPC handle (CudaIpcMemHandle of the base);
/// Kind 3, a VMM allocation, by asking its exporter's fd server for a POSIX file descriptor (the pid and token of
/// <see cref="CudaVmmExport"/>, in the CudaIpcMemHandle bytes). Kind 3 is chosen when the device supports VMM with
/// POSIX file descriptors (<see cref="ICudaDriver.SupportsVmm"/>). The slot protocol is the CPU one (claim, fill the
/// record, publish Live with a release store: <see cref="SlotTable"/>). Only the exporting process can free an allocation, so a slot's
/// kept allocation is reused only by its exporter, and memory another process takes over is freed by the exporter
/// when it next acquires, trims or detaches (<see cref="ReapOrphans"/>).
/// Invariants: a record's Kind is written last when memory is set (a record that reads CUDA is complete) and first
/// when it is cleared; every record field is checked (<see cref="CudaSlotInfo.Problem"/>) before a handle is opened.
/// </summary>
internal sealed unsafe class CudaStore(PoolCore core)
{
    private readonly Lock _initLock = new();
    private CudaRuntime? _runtime;
    private CudaSlotTable? _table;

    private SlotRecord* Slots => core.Control.Slots;

    /// <summary>When true (the default), a Get of a CUDA buffer makes the legacy default stream wait for the writes
    /// last recorded on the slot's interprocess event (see <c>BufferPool.CudaGetWaitsForWrites</c>).</summary>
    internal bool GetWaitsForWrites { get; set; } = true;

    /// <summary>Uses <paramref name="runtime"/> instead of the process's real driver (tests of the bookkeeping);
    /// before the first CUDA operation.</summary>
    internal void UseRuntime(CudaRuntime runtime)
    {
        lock (_initLock)
        {
            if (_table is not null)
            {
                throw new InvalidOperationException("this pool already uses a CUDA runtime");
            }

            _runtime = runtime;
        }
    }

    /// <summary>The table of this process's exports and imports, made on first use.</summary>
    internal CudaSlotTable Table => Volatile.Read(ref _table) ?? Init();

    internal ICudaDriver Driver => Table.Driver;

    private CudaSlotTable Init()
    {
        lock (_initLock)
        {
            if (_table is null)
            {
                _runtime ??= CudaRuntime.Shared;
                Volatile.Write(ref _table, new CudaSlotTable(_runtime, core.Control.Instance, core.Control.Capacity, core.Control.Access));
            }

            return _table;
        }
    }

    /// <summary>Throws unless <paramref name="deviceId"/> names a device this process sees.</summary>
    internal void ValidateDevice(int deviceId)
    {
        if (deviceId < 0)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(deviceId), deviceId, "the CUDA device must be a device ordinal (0 or more).");
        }

        int n = Table.Driver.DeviceCount; // throws CudaUnavailableException with the reason
        if (deviceId >= n)
        {
            throw new CudaUnavailableException($"CUDA device {deviceId} does not exist: this process sees {n} device(s), 0..{n - 1} (CUDA_VISIBLE_DEVICES renumbers them).");
        }
    }

    /// <summary>Claims the best free slot for a CUDA acquire; -1 when none is free after repairing lost hints and
    /// reclaiming what dead processes held.</summary>
    internal int Claim(long size, int device) =>
        core.Slots.Claim(new CudaSlotPicker(core.Hints, Slots, Table, size, device), reclaim: true);

    /// <summary>Gives claimed slot <paramref name="s"/> CUDA memory and resets its record for a new buffer of
    /// <paramref name="size"/> bytes; any failure returns the slot to Free. The caller publishes it.</summary>
    internal CudaMemory PrepareClaimed(int s, long size, int device)
    {
        CudaMemory mem;
        try
        {
            mem = EnsureMemoryLocked(s, size, device);
        }
        catch
        {
            core.Slots.AbandonClaim(s, SlotWord.Gen(Volatile.Read(ref Slots[s].Word)));
            throw;
        }

        core.Slots.ResetRecord(s, size);
        return mem;
    }

    /// <summary>With slot <paramref name="s"/> claimed: keeps this process's own allocation when it is on
    /// <paramref name="device"/> and fits; otherwise gives back the slot's memory (a CPU segment, or this process's
    /// allocation; another process's allocation is only forgotten) and exports a new allocation. Kind is written
    /// last, so a record that reads CUDA is complete.</summary>
    private CudaMemory EnsureMemoryLocked(int s, long size, int device)
    {
        CudaSlotTable table = Table;
        SlotRecord* r = &Slots[s];
        CudaMemory? own = table.OwnExport(s);
        if (own is not null && LayoutConstants.IsCuda(r->Kind) && r->MemGen == own.MemGen && own.Device == device && own.AllocSize - own.Offset >= size)
        {
            // The last holder of the slot (maybe another process, through its guard's release) recorded its GPU
            // work on the slot's event: the new producer's work on the legacy stream must come after it, or its
            // kernels would overwrite bytes the previous holder's kernels still read or write.
            own.WaitWrites(LibCuda.NullStream);
            return own;
        }

        if (LayoutConstants.IsCuda(r->Kind) || own is not null)
        {
            _ = DropMemoryLocked(s);
        }

        if (r->Kind != LayoutConstants.KindNone || Volatile.Read(ref r->DataCapacity) != 0)
        {
            _ = core.Data.DropLocked(s); // a CPU data segment
        }

        long alloc = CudaRecycling.AllocationSize(size);
        uint memGen = r->MemGen + 1;
        // VMM when the device can export POSIX file descriptors: the fd server runs before the allocation is made,
        // so a socket failure leaves nothing to undo.
        bool vmm = table.Driver.SupportsVmm(device);
        (int Pid, ulong Token) server = vmm ? table.Runtime.ServeVmm(core.Control.Instance, core.Control.Access) : default;
        CudaMemory mem;
        try
        {
            _ = ReapOrphans(table); // memory other processes took over: give it back before allocating more
            mem = Export(table.Driver, vmm, device, alloc, memGen);
        }
        catch (XmemOutOfMemoryException) when (TrimFreeSlots(table, except: s) > 0)
        {
            mem = Export(table.Driver, vmm, device, alloc, memGen);
        }

        r->DeviceId = (short)device;
        r->CudaOffset = mem.Offset;
        r->CudaAllocSize = mem.AllocSize;
        var handleBytes = new Span<byte>(r->CudaIpcMemHandle, CuIpcHandle.Size);
        if (vmm)
        {
            handleBytes.Clear();
            *(CudaVmmExport*)r->CudaIpcMemHandle = new CudaVmmExport { ExporterPid = server.Pid, ExporterToken = server.Token };
        }
        else
        {
            CuIpcHandle mh = mem.MemHandle;
            mh.Bytes.CopyTo(handleBytes);
        }

        CuIpcHandle eh = mem.EventHandle;
        eh.Bytes.CopyTo(new Span<byte>(r->CudaIpcEventHandle, CuIpcHandle.Size));
        r->MemGen = memGen;
        Volatile.Write(ref r->Kind, vmm ? LayoutConstants.KindCudaVmm : LayoutConstants.KindCuda);
        table.SetExport(s, mem);
        return mem;
    }

    private static CudaMemory Export(ICudaDriver driver, bool vmm, int device, long alloc, uint memGen) =>
        vmm ? CudaMemory.ExportVmm(driver, device, alloc, memGen) : CudaMemory.Export(driver, device, alloc, memGen);

    /// <summary>With slot <paramref name="s"/> claimed (or its memory being replaced): clears its CUDA record (Kind
    /// first) and drops this process's view: its own allocation is freed, an import closed. Another process's
    /// allocation is not touched (only its exporter can free it). Returns the device bytes freed.</summary>
    internal long DropMemoryLocked(int s)
    {
        SlotRecord* r = &Slots[s];
        if (LayoutConstants.IsCuda(r->Kind))
        {
            Volatile.Write(ref r->Kind, LayoutConstants.KindNone);
            r->DeviceId = -1;
            r->CudaOffset = 0;
            r->CudaAllocSize = 0;
            new Span<byte>(r->CudaIpcMemHandle, 2 * CuIpcHandle.Size).Clear(); // the two handles are adjacent
        }

        CudaSlotTable? table = Volatile.Read(ref _table);
        return table is null ? 0 : table.Drop(s);
    }

    /// <summary>The device memory of live CUDA slot <paramref name="s"/>, of which this process holds a reference,
    /// with a lease taken for the caller's guard: cached per slot and memory generation while this process uses it,
    /// so only the first use of a generation opens IPC handles; with <see cref="GetWaitsForWrites"/>, the default
    /// stream is made to wait for the slot's last recorded writes. <paramref name="size"/> is the buffer's size,
    /// checked against the allocation.</summary>
    internal CudaMemory ResolveHeld(int s, out long size)
    {
        CudaSlotTable table = Table;
        SlotRecord* r = &Slots[s];
        CudaMemory? mem = table.Cached(s, r->MemGen);
        size = r->Size;
        for (int attempt = 0; ; attempt++)
        {
            if (mem is null || size < 1 || size > mem.AllocSize - mem.Offset)
            {
                mem = table.Resolve(s, ReadInfo(table, s));
                if (size < 1 || size > mem.AllocSize - mem.Offset)
                {
                    // Size changed between the two reads: a peer is writing the record of a live slot.
                    ThrowHelper.ThrowCorrupt(core.Bare, $"slot {s} says it holds {size} bytes of a {mem.AllocSize - mem.Offset}-byte CUDA buffer");
                }
            }

            if (mem.TryLease())
            {
                break;
            }

            // Its last guard just let go of it (an import being closed): open the slot again.
            _ = table.DropIf(s, mem);
            mem = null;
            if (attempt == 8)
            {
                throw new CudaException($"slot {s}'s CUDA memory was released while being resolved, 8 times in a row", CudaResult.Unknown);
            }
        }

        if (GetWaitsForWrites)
        {
            try
            {
                mem.WaitWrites(LibCuda.NullStream);
            }
            catch
            {
                mem.Unlease();
                throw;
            }
        }

        return mem;
    }

    /// <summary>Slot <paramref name="s"/>'s CUDA record, checked (never trust shared memory).</summary>
    private CudaSlotInfo ReadInfo(CudaSlotTable table, int s)
    {
        SlotRecord* r = &Slots[s];
        CuIpcHandle mh = default, eh = default;
        new ReadOnlySpan<byte>(r->CudaIpcMemHandle, CuIpcHandle.Size).CopyTo(mh.Bytes);
        new ReadOnlySpan<byte>(r->CudaIpcEventHandle, CuIpcHandle.Size).CopyTo(eh.Bytes);
        ushort kind = Volatile.Read(ref r->Kind);
        CudaVmmExport vx = kind == LayoutConstants.KindCudaVmm ? *(CudaVmmExport*)r->CudaIpcMemHandle : default;
        var info = new CudaSlotInfo
        {
            Kind = kind,
            ExporterPid = vx.ExporterPid,
            ExporterToken = vx.ExporterToken,
            MemGen = r->MemGen,
            Device = r->DeviceId,
            Offset = r->CudaOffset,
            AllocSize = r->CudaAllocSize,
            Size = r->Size,
            MemHandle = mh,
            EventHandle = eh,
        };
        string? problem = info.Problem(table.Driver.DeviceCount);
        if (problem is not null)
        {
            ThrowHelper.ThrowCorrupt(core.Bare, $"slot {s} holds CUDA memory, but {problem}");
        }

        return info;
    }

    /// <summary>Frees this process's allocations that other processes took over (their slot's memory generation
    /// moved on, or is being replaced): only the exporter can free them. Returns the device bytes freed.</summary>
    private long ReapOrphans(CudaSlotTable table)
    {
        long freed = 0;
        foreach ((int s, CudaMemory m) in table.OwnExports())
        {
            SlotRecord* r = &Slots[s];
            // MemGen only grows, so once it differs the slot never comes back to this allocation. Kind reads other
            // than CUDA with our generation mean a replacer (holding the slot claimed) dropped it already.
            if (r->MemGen != m.MemGen || !LayoutConstants.IsCuda(Volatile.Read(ref r->Kind)))
            {
                freed += table.DropIf(s, m);
            }
        }

        return freed;
    }

    /// <summary>Gives back this process's allocations kept in free slots and those others took over, and closes
    /// mappings of memory that was replaced. Returns the device bytes freed. Slots whose memory another process
    /// exported are left alone: only it can free them.</summary>
    internal long Trim()
    {
        CudaSlotTable? table = Volatile.Read(ref _table);
        if (table is null || core.Registry.Me < 0)
        {
            return 0;
        }

        long freed = ReapOrphans(table) + TrimFreeSlots(table, except: -1);
        foreach ((int s, CudaMemory m) in table.OtherViews())
        {
            SlotRecord* r = &Slots[s];
            if (r->MemGen != m.MemGen || !LayoutConstants.IsCuda(Volatile.Read(ref r->Kind)))
            {
                _ = table.DropIf(s, m); // a stale import: its memory was replaced
            }
        }

        return freed;
    }

    private long TrimFreeSlots(CudaSlotTable table, int except)
    {
        long freed = 0;
        foreach ((int s, CudaMemory m) in table.OwnExports())
        {
            if (s == except || !core.Slots.TryTakeFree(s, out ulong w))
            {
                continue;
            }

            if (Slots[s].MemGen == m.MemGen)
            {
                freed += DropMemoryLocked(s);
            }

            core.Slots.ReturnFree(s, w);
        }

        return freed;
    }

    /// <summary>At close, before this process's references are released (its entry still held): each import that a
    /// guard of this process still leases keeps one in-flight reference to its slot, given back (an unattributed
    /// release) when the import is closed with its last lease. So the slot stays live, and its exporter cannot free
    /// memory this process still maps (docs/cuda.md, "Who frees what"). A process that dies before then leaves that
    /// reference in flight, like any other.</summary>
    internal void PinLeasedImports()
    {
        CudaSlotTable? table = Volatile.Read(ref _table);
        if (table is null)
        {
            return;
        }

        SlotTable slots = core.Slots;
        foreach ((int s, CudaMemory m) in table.OtherViews())
        {
            if (m.IsExport || m.IsReleased || m.Leases == 0)
            {
                continue;
            }

            try
            {
                _ = slots.AddRef(s); // Live: this process's guard holds a reference until the holdings go
            }
            catch (XmemException)
            {
                continue;
            }

            int slot = s;
            if (!m.OnFreed(() => slots.Release(slot)))
            {
                _ = slots.Release(slot); // closed meanwhile
            }
        }
    }

    /// <summary>At detach (this process's entry still held): frees own allocations of free slots, closes every
    /// imported mapping. Own allocations of slots still live stay allocated until this process exits, since other
    /// processes may be using them; CUDA pointers of this process's guards still open become invalid.</summary>
    internal void Detach()
    {
        CudaSlotTable? table = Volatile.Read(ref _table);
        if (table is null)
        {
            return;
        }

        _ = Trim();
        table.Detach();
        table.Runtime.StopServingIfIdle();
    }
}
