using System.Numerics;
using Xmem.Cuda;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.Pool;
using Xmem.SharedMemory;

namespace Xmem;

// CUDA device buffers (docs/cuda.md). A CUDA slot keeps no data segment (DataCapacity 0); its record names the
// exporter's allocation by IPC handle (CudaIpcMemHandle of the base, CudaOffset, CudaAllocSize, DeviceId) and its
// interprocess event (CudaIpcEventHandle). The slot protocol is the CPU one: claim (Free → Acquiring, locked by this
// process), fill the record, publish Live with a release store. Only the exporting process can free an allocation,
// so a slot's kept allocation is reused only by its exporter, and memory another process takes over is freed by the
// exporter when it next acquires, trims or detaches (ReapCudaOrphans).
public sealed unsafe partial class BufferPool
{
    private readonly Lock _cudaInitLock = new();
    private CudaRuntime? _cudaRuntime;
    private CudaSlotTable? _cudaTable;
    private DataMapping? _cudaNoCpuMapping;

    /// <summary>When true (the default), <see cref="Get"/> and <see cref="GetMut"/> of a CUDA buffer make the legacy
    /// default stream (the one PyTorch and CuPy use unless told otherwise) wait for the writes last recorded on the
    /// slot's interprocess event — asynchronously, one <c>cuStreamWaitEvent</c>. Set it to false to order work
    /// yourself with <see cref="BufferGuard.WaitWritesDone"/> or <see cref="BufferGuard.SynchronizeWrites"/>; a Get
    /// whose mapping is cached then makes no driver call at all.</summary>
    public bool CudaGetWaitsForWrites { get; set; } = true;

    /// <summary>Acquires a read-write CUDA buffer of <paramref name="size"/> bytes on device
    /// <paramref name="deviceId"/>, in the best free slot: one keeping this process's own allocation on that device
    /// that fits (the smallest), else a slot with no memory, else one whose memory can be replaced. New allocations
    /// are rounded up to 2 MiB. The guard's <see cref="BufferGuard.CudaPointer"/> is the device pointer; other
    /// processes reach the same memory through CUDA IPC with <see cref="Get"/>/<see cref="GetMut"/>.
    /// Throws <see cref="CudaUnavailableException"/> (with the reason) when CUDA or the device cannot be used,
    /// <see cref="PoolFullException"/> when every slot is live, <see cref="XmemOutOfMemoryException"/> when the
    /// device is out of memory.</summary>
    public BufferGuard AcquireCuda(long size, int deviceId)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        CudaSlotTable table = CudaTable;
        ValidateDevice(table, deviceId);
        int s = ClaimCudaSlot(table, size, deviceId);
        if (s < 0)
        {
            ThrowHelper.ThrowPoolFull(_bare, _capacity);
        }

        return PublishCuda(table, s, size, deviceId, attributed: true)!;
    }

    /// <summary>Like <see cref="PreallocateCpu"/> for CUDA: acquires <paramref name="count"/> buffers of
    /// <paramref name="size"/> bytes on <paramref name="deviceId"/>, each live with count 1 held by no guard (in
    /// flight). Returns their meta indexes. All or nothing.</summary>
    public int[] PreallocateCuda(long size, int count, int deviceId)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        if (count < 0 || count > _capacity)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, $"count must be 0..{_capacity} (the pool's capacity).");
        }

        CudaSlotTable table = CudaTable;
        ValidateDevice(table, deviceId);
        var result = new int[count];
        int done = 0;
        try
        {
            for (; done < count; done++)
            {
                int s = ClaimCudaSlot(table, size, deviceId);
                if (s < 0)
                {
                    ThrowHelper.ThrowPoolFull(_bare, _capacity);
                }

                _ = PublishCuda(table, s, size, deviceId, attributed: false);
                result[done] = s;
            }
        }
        catch
        {
            for (int i = 0; i < done; i++)
            {
                _ = Release(result[i]);
            }

            throw;
        }

        return result;
    }

    /// <summary>Uses <paramref name="runtime"/> instead of the process's real driver. For tests of xmem's own
    /// bookkeeping only; must be called before this pool's first CUDA operation.</summary>
    internal void UseCudaRuntime(CudaRuntime runtime)
    {
        lock (_cudaInitLock)
        {
            if (_cudaTable is not null)
            {
                throw new InvalidOperationException("this pool already uses a CUDA runtime");
            }

            _cudaRuntime = runtime;
        }
    }

    /// <summary>The driver this pool's CUDA operations use.</summary>
    internal ICudaDriver CudaDriver => CudaTable.Driver;

    private CudaSlotTable CudaTable => Volatile.Read(ref _cudaTable) ?? InitCuda();

    private CudaSlotTable InitCuda()
    {
        lock (_cudaInitLock)
        {
            if (_cudaTable is null)
            {
                _cudaRuntime ??= CudaRuntime.Shared;
                // Guards of CUDA buffers need a DataMapping until BufferGuard accepts none: a read-only view of the
                // control segment's first page, so a CPU accessor misused on a CUDA guard faults instead of writing
                // shared memory. TODO(core hook): drop once BufferGuard takes a null mapping (docs/cuda.md).
                MappedRegion page = MappedRegion.Map(_controlFd.Fd, LayoutConstants.PageSize, writable: false, PoolName.PathOf(PoolName.ControlObject(_bare)));
                _cudaNoCpuMapping = new DataMapping(page, 0);
                Volatile.Write(ref _cudaTable, new CudaSlotTable(_cudaRuntime, _instance, _capacity));
            }

            return _cudaTable;
        }
    }

    /// <summary>In a forked child (see <see cref="AbandonInheritedPools"/>): the read-only page of the control
    /// segment that CUDA guards carry is a mapping of the control descriptor too, so it goes the same way.</summary>
    private void DropInheritedCudaMapping() => _cudaNoCpuMapping?.Region.ReplaceInheritedWithZeros(writable: false);

    private static void ValidateDevice(CudaSlotTable table, int deviceId)
    {
        if (deviceId < 0)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(deviceId), deviceId, "deviceId must be a CUDA device ordinal (0 or more).");
        }

        int n = table.Driver.DeviceCount; // throws CudaUnavailableException with the reason
        if (deviceId >= n)
        {
            throw new CudaUnavailableException($"CUDA device {deviceId} does not exist: this process sees {n} device(s), 0..{n - 1} (CUDA_VISIBLE_DEVICES renumbers them).");
        }
    }

    // ---------------------------------------------------------------- claim

    /// <summary>Claims the best free slot for a CUDA acquire (see <see cref="CudaRecycling"/>); -1 when none is free
    /// after repairing lost hints and reclaiming what dead processes held.</summary>
    private int ClaimCudaSlot(CudaSlotTable table, long size, int device)
    {
        int s = TryClaimHintedCuda(table, size, device);
        if (s >= 0)
        {
            return s;
        }

        bool changed = RepairHints();
        changed |= ReclaimDeadProcesses() > 0;
        return changed ? TryClaimHintedCuda(table, size, device) : -1;
    }

    /// <summary>The core's claim loop (clear the hint, then CAS Free → Acquiring with generation + 1) over the CUDA
    /// ranking of candidates.</summary>
    private int TryClaimHintedCuda(CudaSlotTable table, long size, int device)
    {
        for (int round = 0; round < 1024; round++)
        {
            int pick = PickHintedCuda(table, size, device);
            if (pick < 0)
            {
                return -1;
            }

            if (TryClaimPicked(pick))
            {
                return pick;
            }
        }

        return -1;
    }

    /// <summary>The best hinted slot among the first 64 candidates (stopping early at an exact fit). The record is
    /// read without the slot claimed, so this is only a choice; the claimed slot is checked again.</summary>
    private int PickHintedCuda(CudaSlotTable table, long size, int device)
    {
        int best = -1, looked = 0;
        var bestRank = CudaRecycling.Rank.None;
        long bestAlloc = long.MaxValue, exact = CudaRecycling.AllocationSize(size);
        for (int wi = 0; wi < _hintWords; wi++)
        {
            ulong bits = Volatile.Read(ref _hints[wi]);
            while (bits != 0)
            {
                int s = (wi << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                if (s >= _capacity)
                {
                    break;
                }

                SlotRecord* r = &_slots[s];
                ushort kind = r->Kind;
                CudaMemory? own = table.OwnExport(s);
                long ownAlloc = own is not null && kind == LayoutConstants.KindCuda && own.MemGen == r->MemGen ? own.AllocSize : 0;
                CudaRecycling.Rank rank = CudaRecycling.Classify(kind, r->DeviceId, Volatile.Read(ref r->DataCapacity), ownAlloc, size, device);
                if (CudaRecycling.Better(rank, ownAlloc, bestRank, bestAlloc))
                {
                    best = s;
                    bestRank = rank;
                    bestAlloc = ownAlloc;
                    if (rank == CudaRecycling.Rank.Reuse && ownAlloc == exact)
                    {
                        return s;
                    }
                }

                if (++looked >= 64)
                {
                    return best;
                }
            }
        }

        return best;
    }

    // ---------------------------------------------------------------- memory and publication

    /// <summary>Gives claimed slot <paramref name="s"/> CUDA memory, fills in its record and publishes it Live with
    /// count 1 (attributed to this process with a guard, or in flight). Any failure returns the slot to Free.</summary>
    private BufferGuard? PublishCuda(CudaSlotTable table, int s, long size, int device, bool attributed)
    {
        SlotRecord* r = &_slots[s];
        ref ulong word = ref r->Word;
        ulong w = Volatile.Read(ref word);
        uint gen = SlotWord.Gen(w);
        CudaMemory mem;
        try
        {
            mem = EnsureCudaMemoryLocked(table, s, size, device);
        }
        catch
        {
            Volatile.Write(ref word, SlotWord.Make(0, SlotWord.Free, 0, gen));
            AfterFreed(s);
            throw;
        }

        r->Size = size;
        r->DescVersion = 0;
        r->DType = 0;
        r->NDim = 0;
        r->Seq = 0;
        r->TimestampNs = 0;
        new Span<byte>(r->Shape, 8 * 8 * 2).Clear(); // shape and strides are adjacent
        new Span<byte>(r->ContentType, 64).Clear();  // content type and producer tag are adjacent
        if (!attributed)
        {
            Volatile.Write(ref word, SlotWord.Make(1, SlotWord.Live, 0, gen));
            return null;
        }

        DataMapping none = _cudaNoCpuMapping!;
        none.Region.DangerousAddRefChecked();
        _lease.DangerousAddRefChecked();
        var guard = new BufferGuard(this, s, gen, none, mem, size, readOnly: false);
        // Publication: every field above is visible before the slot reads Live (release stores).
        CommitAttributed(r, s, _holdings, _tag, w, Holding.Make(gen, 1), SlotWord.Make(1, SlotWord.Live, 0, gen));
        return guard;
    }

    /// <summary>With slot <paramref name="s"/> claimed: keeps this process's own allocation when it is on
    /// <paramref name="device"/> and fits; otherwise gives back the slot's memory (a CPU segment, or this process's
    /// allocation; another process's allocation is only forgotten) and exports a new allocation. The record's
    /// Kind is written last, so a record that reads CUDA is complete.</summary>
    private CudaMemory EnsureCudaMemoryLocked(CudaSlotTable table, int s, long size, int device)
    {
        SlotRecord* r = &_slots[s];
        CudaMemory? own = table.OwnExport(s);
        if (own is not null && r->Kind == LayoutConstants.KindCuda && r->MemGen == own.MemGen && own.Device == device && own.AllocSize - own.Offset >= size)
        {
            return own;
        }

        if (r->Kind == LayoutConstants.KindCuda || own is not null)
        {
            _ = DropCudaMemoryLocked(s);
        }

        if (r->Kind != LayoutConstants.KindNone || Volatile.Read(ref r->DataCapacity) != 0)
        {
            _ = DropMemoryLocked(s); // a CPU data segment
        }

        long alloc = CudaRecycling.AllocationSize(size);
        uint memGen = r->MemGen + 1;
        CudaMemory mem;
        try
        {
            _ = ReapCudaOrphans(table); // memory other processes took over: give it back before allocating more
            mem = CudaMemory.Export(table.Driver, device, alloc, memGen);
        }
        catch (XmemOutOfMemoryException) when (TrimCudaFreeSlots(table, except: s) > 0)
        {
            mem = CudaMemory.Export(table.Driver, device, alloc, memGen);
        }

        r->DeviceId = (short)device;
        r->CudaOffset = mem.Offset;
        r->CudaAllocSize = mem.AllocSize;
        CuIpcHandle mh = mem.MemHandle, eh = mem.EventHandle;
        mh.Bytes.CopyTo(new Span<byte>(r->CudaIpcMemHandle, CuIpcHandle.Size));
        eh.Bytes.CopyTo(new Span<byte>(r->CudaIpcEventHandle, CuIpcHandle.Size));
        r->MemGen = memGen;
        Volatile.Write(ref r->Kind, LayoutConstants.KindCuda);
        table.SetExport(s, mem);
        return mem;
    }

    /// <summary>With slot <paramref name="s"/> claimed (or its memory being replaced): clears its CUDA record (Kind
    /// first) and drops this process's view: its own allocation is freed, an import closed. Another process's
    /// allocation is not touched (only its exporter can free it). Returns the device bytes freed.</summary>
    internal long DropCudaMemoryLocked(int s)
    {
        SlotRecord* r = &_slots[s];
        if (r->Kind == LayoutConstants.KindCuda)
        {
            Volatile.Write(ref r->Kind, LayoutConstants.KindNone);
            r->DeviceId = -1;
            r->CudaOffset = 0;
            r->CudaAllocSize = 0;
            new Span<byte>(r->CudaIpcMemHandle, 2 * CuIpcHandle.Size).Clear(); // the two handles are adjacent
        }

        CudaSlotTable? table = Volatile.Read(ref _cudaTable);
        return table is null ? 0 : table.Drop(s);
    }

    // ---------------------------------------------------------------- get

    /// <summary>A guard on live CUDA slot <paramref name="metaIndex"/>. Until the core's Get dispatches CUDA slots
    /// here (see docs/cuda.md, "Core hooks"), this is the entry point for them.</summary>
    internal BufferGuard GetCudaGuard(int metaIndex, bool writable)
    {
        ThrowIfDisposed();
        CheckIndex(metaIndex);
        ulong w = LockLive(metaIndex);
        if (_slots[metaIndex].Kind != LayoutConstants.KindCuda)
        {
            Volatile.Write(ref _slots[metaIndex].Word, w); // unlock, nothing changed
            throw new XmemException(XmemStatus.InvalidArgument, $"slot {metaIndex} holds a CPU buffer, not CUDA memory.");
        }

        return CompleteCudaGet(metaIndex, w, writable);
    }

    /// <summary>With live CUDA slot <paramref name="s"/> locked by this process (<paramref name="w"/> its word before
    /// the lock): takes one attributed reference, then resolves the device pointer — cached per slot and memory
    /// generation, so only the first Get of a generation opens IPC handles — and returns the guard. The pointer is
    /// resolved after the count is published so no other process waits on the lock during a driver call; the count
    /// keeps the record unchanged meanwhile.</summary>
    private BufferGuard CompleteCudaGet(int s, ulong w, bool writable)
    {
        SlotRecord* r = &_slots[s];
        uint gen = SlotWord.Gen(w);
        CudaSlotTable table;
        try
        {
            table = CudaTable;
        }
        catch
        {
            Volatile.Write(ref r->Word, w); // unlock, nothing changed
            throw;
        }

        ulong h = _holdings[s];
        CommitAttributed(r, s, _holdings, _tag, SlotWord.WithOwner(w, _tag), Holding.Make(gen, Holding.CountFor(h, gen) + 1), SlotWord.Make(SlotWord.Count(w) + 1, SlotWord.Live, 0, gen));
        return CudaGuardForHeldReference(s, gen, writable);
    }

    /// <summary>A guard owning one reference of generation <paramref name="gen"/> of CUDA slot <paramref name="s"/>
    /// that this process already holds (attributed): from a Get, or a channel receive. On failure the reference is
    /// released.</summary>
    internal BufferGuard CudaGuardForHeldReference(int s, uint gen, bool writable)
    {
        SlotRecord* r = &_slots[s];
        _lease.DangerousAddRefChecked();
        try
        {
            CudaSlotTable table = CudaTable;
            CudaMemory? mem = table.Cached(s, r->MemGen);
            long size = r->Size;
            if (mem is null || size < 1 || size > mem.AllocSize - mem.Offset)
            {
                mem = table.Resolve(s, ReadCudaInfo(table, s));
                if (size < 1 || size > mem.AllocSize - mem.Offset)
                {
                    // Size changed between the two reads: a peer is writing the record of a live slot.
                    ThrowHelper.ThrowCorrupt(_bare, $"slot {s} says it holds {size} bytes of a {mem.AllocSize - mem.Offset}-byte CUDA buffer");
                }
            }

            if (CudaGetWaitsForWrites)
            {
                table.Driver.StreamWaitEvent(mem.Device, LibCuda.NullStream, mem.Event);
            }

            DataMapping none = _cudaNoCpuMapping!;
            none.Region.DangerousAddRefChecked();
            return new BufferGuard(this, s, gen, none, mem, size, readOnly: !writable);
        }
        catch
        {
            ReleaseGuardReference(s, gen, forget: false);
            ReleaseControlLease();
            throw;
        }
    }

    /// <summary>Slot <paramref name="s"/>'s CUDA record, checked (never trust shared memory).</summary>
    private CudaSlotInfo ReadCudaInfo(CudaSlotTable table, int s)
    {
        SlotRecord* r = &_slots[s];
        CuIpcHandle mh = default, eh = default;
        new ReadOnlySpan<byte>(r->CudaIpcMemHandle, CuIpcHandle.Size).CopyTo(mh.Bytes);
        new ReadOnlySpan<byte>(r->CudaIpcEventHandle, CuIpcHandle.Size).CopyTo(eh.Bytes);
        var info = new CudaSlotInfo
        {
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
            ThrowHelper.ThrowCorrupt(_bare, $"slot {s} holds CUDA memory, but {problem}");
        }

        return info;
    }

    // ---------------------------------------------------------------- giving memory back

    /// <summary>Frees this process's allocations that other processes took over (their slot's memory generation
    /// moved on, or is being replaced): only the exporter can free them. Returns the device bytes freed.</summary>
    private long ReapCudaOrphans(CudaSlotTable table)
    {
        long freed = 0;
        foreach ((int s, CudaMemory m) in table.OwnExports())
        {
            SlotRecord* r = &_slots[s];
            // MemGen only grows, so once it differs the slot never comes back to this allocation. Kind reads other
            // than CUDA with our generation mean a replacer (holding the slot claimed) dropped it already.
            if (r->MemGen != m.MemGen || Volatile.Read(ref r->Kind) != LayoutConstants.KindCuda)
            {
                freed += table.DropIf(s, m);
            }
        }

        return freed;
    }

    /// <summary>Gives back this process's allocations kept in free slots (claiming each as Trim does) and those
    /// others took over, and closes mappings of memory that was replaced. Returns the device bytes freed. Slots whose
    /// memory another process exported are left alone: only it can free them.</summary>
    internal long TrimCuda()
    {
        CudaSlotTable? table = Volatile.Read(ref _cudaTable);
        if (table is null || _me < 0)
        {
            return 0;
        }

        long freed = ReapCudaOrphans(table) + TrimCudaFreeSlots(table, except: -1);
        foreach ((int s, CudaMemory m) in table.OtherViews())
        {
            SlotRecord* r = &_slots[s];
            if (r->MemGen != m.MemGen || Volatile.Read(ref r->Kind) != LayoutConstants.KindCuda)
            {
                _ = table.DropIf(s, m); // a stale import: its memory was replaced
            }
        }

        return freed;
    }

    private long TrimCudaFreeSlots(CudaSlotTable table, int except)
    {
        long freed = 0;
        foreach ((int s, CudaMemory m) in table.OwnExports())
        {
            if (s == except)
            {
                continue;
            }

            ref ulong word = ref _slots[s].Word;
            ulong w = Volatile.Read(ref word);
            if (SlotWord.State(w) != SlotWord.Free || SlotWord.Owner(w) != 0)
            {
                continue;
            }

            // Take the slot as if acquiring it, so no acquirer uses the memory while it goes away.
            if (Interlocked.CompareExchange(ref word, SlotWord.Make(0, SlotWord.Acquiring, _tag, SlotWord.Gen(w)), w) != w)
            {
                continue;
            }

            if (_slots[s].MemGen == m.MemGen)
            {
                freed += DropCudaMemoryLocked(s);
            }

            Volatile.Write(ref word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
            Interlocked.Or(ref _hints[s >> 6], 1UL << (s & 63)); // an acquirer may have dropped the hint meanwhile
        }

        return freed;
    }

    /// <summary>At detach (this process's entry still held): frees own allocations of free slots, closes every
    /// imported mapping. Own allocations of slots still live stay allocated until this process exits, since other
    /// processes may be using them; CUDA pointers of this process's guards still open become invalid.</summary>
    internal void DetachCuda()
    {
        CudaSlotTable? table = Volatile.Read(ref _cudaTable);
        if (table is null)
        {
            return;
        }

        _ = TrimCuda();
        table.Detach();
    }
}
