namespace Xmem.Cuda;

/// <summary>
/// One pool's per-slot CUDA views in this process, keyed by slot and memory generation: the allocation this pool
/// exported for the slot, the mapping it imported from another process (kept while a guard of this process leases
/// it), or an export of another pool instance of this process that it borrows. A Get whose slot and generation are
/// cached makes no driver call to resolve the pointer; a new generation replaces (and frees or closes) the old view.
/// </summary>
internal sealed class CudaSlotTable(CudaRuntime runtime, ulong instance, int capacity, Xmem.SharedMemory.SegmentAccess access)
{
    private readonly Entry?[] _entries = new Entry?[capacity];
    private readonly Lock _lock = new();

    /// <summary>A cached view. <see cref="Owned"/>: this table frees (export) or closes (import) it.</summary>
    private sealed record Entry(CudaMemory Memory, bool Owned);

    /// <summary>The driver.</summary>
    internal ICudaDriver Driver => runtime.Driver;

    /// <summary>The process's CUDA state (exports, fd server).</summary>
    internal CudaRuntime Runtime => runtime;

    /// <summary>The view of slot <paramref name="s"/> for <paramref name="memGen"/>, if cached: no driver call.</summary>
    internal CudaMemory? Cached(int s, uint memGen)
    {
        Entry? e = Volatile.Read(ref _entries[s]);
        return e is not null && e.Memory.MemGen == memGen && !e.Memory.IsReleased ? e.Memory : null;
    }

    /// <summary>This pool's own allocation kept for slot <paramref name="s"/> (any generation), if any.</summary>
    internal CudaMemory? OwnExport(int s)
    {
        Entry? e = Volatile.Read(ref _entries[s]);
        return e is { Owned: true } && e.Memory.IsExport ? e.Memory : null;
    }

    /// <summary>Slots for which this pool keeps its own allocation.</summary>
    internal List<(int Slot, CudaMemory Memory)> OwnExports()
    {
        var list = new List<(int, CudaMemory)>();
        lock (_lock)
        {
            for (int s = 0; s < _entries.Length; s++)
            {
                if (_entries[s] is { Owned: true } e && e.Memory.IsExport)
                {
                    list.Add((s, e.Memory));
                }
            }
        }

        return list;
    }

    /// <summary>Views that are not this pool's own exports (imports and borrowed exports).</summary>
    internal List<(int Slot, CudaMemory Memory)> OtherViews()
    {
        var list = new List<(int, CudaMemory)>();
        lock (_lock)
        {
            for (int s = 0; s < _entries.Length; s++)
            {
                if (_entries[s] is { } e && !(e.Owned && e.Memory.IsExport))
                {
                    list.Add((s, e.Memory));
                }
            }
        }

        return list;
    }

    /// <summary>The slot's memory in this process for <paramref name="info"/>'s generation: cached; else this
    /// process's own export (from any pool instance); else opened from the IPC handles (validated first).</summary>
    internal CudaMemory Resolve(int s, in CudaSlotInfo info)
    {
        CudaMemory? m = Cached(s, info.MemGen);
        return m ?? ResolveSlow(s, info);
    }

    private CudaMemory ResolveSlow(int s, in CudaSlotInfo info)
    {
        lock (_lock)
        {
            CudaMemory? m = Cached(s, info.MemGen);
            if (m is not null)
            {
                return m;
            }

            Entry e;
            CudaMemory? mine = runtime.FindExport(instance, s, info.MemGen);
            if (mine is not null)
            {
                e = new Entry(mine, Owned: false);
            }
            else
            {
                CudaMemory import = info.Kind == Layout.LayoutConstants.KindCudaVmm ? ImportVmm(s, info) : CudaMemory.Import(Driver, info);
                // An import stays open only while a guard of this process leases it: closed when the last one goes,
                // before that guard's reference is released, so every importer has closed an allocation before its
                // slot can be free and its exporter may free it (docs/cuda.md, "Who frees what").
                import.OnIdle(m => DropIf(s, m));
                e = new Entry(import, Owned: true);
            }

            Replace(s, e);
            return e.Memory;
        }
    }

    /// <summary>Gets the allocation's file descriptor from its exporter, imports and maps it, and closes the
    /// descriptor (the driver's handle keeps the memory).</summary>
    private CudaMemory ImportVmm(int s, in CudaSlotInfo info)
    {
        int fd = CudaFdClient.RequestFd(instance, s, info, access);
        try
        {
            return CudaMemory.ImportVmm(Driver, info, fd);
        }
        finally
        {
            _ = Interop.Libc.Close(fd);
        }
    }

    /// <summary>Caches a new allocation this pool exported for slot <paramref name="s"/>.</summary>
    internal void SetExport(int s, CudaMemory memory)
    {
        lock (_lock)
        {
            runtime.RegisterExport(instance, s, memory);
            Replace(s, new Entry(memory, Owned: true));
        }
    }

    /// <summary>Forgets slot <paramref name="s"/>'s view; an owned one is freed or closed. Returns device bytes freed.</summary>
    internal long Drop(int s) => DropIf(s, null);

    /// <summary>Like <see cref="Drop"/>, but only while the cached view is <paramref name="expected"/> (null: any).</summary>
    internal long DropIf(int s, CudaMemory? expected)
    {
        Entry? e;
        lock (_lock)
        {
            e = _entries[s];
            if (e is null || (expected is not null && !ReferenceEquals(e.Memory, expected)))
            {
                return 0;
            }

            Volatile.Write(ref _entries[s], null);
            if (e.Owned && e.Memory.IsExport)
            {
                runtime.UnregisterExport(instance, s, e.Memory);
            }
        }

        return e.Owned ? e.Memory.Release() : 0;
    }

    /// <summary>At detach: closes every import and forgets borrowed views; exports are left allocated (their
    /// slots are still in use by other processes) and stay known to the process's runtime.</summary>
    internal void Detach()
    {
        foreach ((int s, CudaMemory m) in OtherViews())
        {
            _ = DropIf(s, m);
        }
    }

    private void Replace(int s, Entry e)
    {
        Entry? old = _entries[s];
        Volatile.Write(ref _entries[s], e);
        if (old is not null && old.Owned)
        {
            if (old.Memory.IsExport)
            {
                runtime.UnregisterExport(instance, s, old.Memory);
            }

            _ = old.Memory.Release();
        }
    }
}
