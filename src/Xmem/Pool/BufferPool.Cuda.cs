using Xmem.SharedMemory;
using Xmem.Core;
using Xmem.Cuda;
using Xmem.Errors;
using Xmem.Layout;

namespace Xmem;

// The facade's CUDA device buffers (docs/cuda.md): argument checks and guards; the device memory is CudaStore's.
public sealed partial class BufferPool
{
    /// <summary>When true (the default), <see cref="Get"/> and <see cref="GetMut"/> of a CUDA buffer make the legacy
    /// default stream (the one PyTorch and CuPy use unless told otherwise) wait for the writes last recorded on the
    /// slot's interprocess event — asynchronously, one <c>cuStreamWaitEvent</c>. Set it to false to order work
    /// yourself with <see cref="BufferGuard.WaitWritesDone"/> or <see cref="BufferGuard.SynchronizeWrites"/>; a Get
    /// whose mapping is cached then makes no driver call at all.</summary>
    public bool CudaGetWaitsForWrites
    {
        get => _cuda.GetWaitsForWrites;
        set => _cuda.GetWaitsForWrites = value;
    }

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
        _cuda.ValidateDevice(deviceId);
        int s = _cuda.Claim(size, deviceId);
        if (s < 0)
        {
            ThrowHelper.ThrowPoolFull(Bare, Capacity);
        }

        return PublishCuda(s, size, deviceId, attributed: true)!;
    }

    /// <summary>Like <see cref="PreallocateCpu"/> for CUDA: acquires <paramref name="count"/> buffers of
    /// <paramref name="size"/> bytes on <paramref name="deviceId"/>, each live with count 1 held by no guard (in
    /// flight). Returns their meta indexes. All or nothing.</summary>
    public int[] PreallocateCuda(long size, int count, int deviceId)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        ValidateCount(count);
        _cuda.ValidateDevice(deviceId);
        return Preallocate(count, () =>
        {
            int s = _cuda.Claim(size, deviceId);
            if (s >= 0)
            {
                _ = PublishCuda(s, size, deviceId, attributed: false);
            }

            return s;
        });
    }

    /// <summary>Uses <paramref name="runtime"/> instead of the process's real driver. For tests of xmem's own
    /// bookkeeping only; must be called before this pool's first CUDA operation.</summary>
    internal void UseCudaRuntime(CudaRuntime runtime) => _cuda.UseRuntime(runtime);

    /// <summary>The driver this pool's CUDA operations use.</summary>
    internal ICudaDriver CudaDriver => _cuda.Driver;

    /// <summary>Gives back device memory of free slots (this process's own allocations) and closes stale imports;
    /// <see cref="Trim"/> includes it. Returns the device bytes freed.</summary>
    internal long TrimCuda() => _cuda.Trim();

    /// <summary>What Dispose does for CUDA memory, on its own (tests).</summary>
    internal void DetachCuda() => _cuda.Detach();

    /// <summary>A guard on live CUDA slot <paramref name="metaIndex"/>, refusing a CPU slot (tests of the CUDA path;
    /// <see cref="Get"/> takes either kind).</summary>
    internal BufferGuard GetCudaGuard(int metaIndex, bool writable)
    {
        ThrowIfDisposed();
        CheckIndex(metaIndex);
        ulong w = _slots.LockLive(metaIndex);
        if (!_slots.HoldsCuda(metaIndex))
        {
            _slots.Unlock(metaIndex, w); // nothing changed
            throw new XmemException(XmemStatus.InvalidArgument, $"slot {metaIndex} holds a CPU buffer, not CUDA memory.");
        }

        return CompleteCudaGet(metaIndex, w, writable, pooled: false);
    }

    /// <summary>Gives claimed slot <paramref name="s"/> CUDA memory and publishes it Live with count 1 (attributed to
    /// this process with a guard, or in flight). Any failure returns the slot to Free.</summary>
    private BufferGuard? PublishCuda(int s, long size, int device, bool attributed)
    {
        SlotTable slots = _slots;
        ulong w = slots.Word(s);
        uint gen = SlotWord.Gen(w);
        CudaMemory mem = _cuda.PrepareClaimed(s, size, device);
        if (!attributed)
        {
            slots.PublishInFlight(s, gen);
            return null;
        }

        BufferGuard guard;
        bool leased = false, memLeased = false;
        try
        {
            _core.Lease.DangerousAddRefChecked();
            leased = true;
            if (!mem.TryLease())
            {
                throw new CudaException($"slot {s}'s new CUDA memory was released before its guard was made", CudaResult.Unknown);
            }

            memLeased = true;
            guard = BufferGuard.Make(this, s, gen, mem, size, readOnly: false);
        }
        catch
        {
            if (memLeased)
            {
                mem.Unlease();
            }

            if (leased)
            {
                _core.Lease.DangerousRelease();
            }

            slots.AbandonClaim(s, gen);
            throw;
        }

        slots.PublishOwned(s, w); // every field above is visible before the slot reads Live
        return guard;
    }

    /// <summary>With live CUDA slot <paramref name="s"/> locked by this process (<paramref name="w"/> its word before
    /// the lock): takes one attributed reference, then resolves the device pointer. The pointer is resolved after the
    /// count is published so no other process waits on the lock during a driver call; the count keeps the record
    /// unchanged meanwhile.</summary>
    private BufferGuard CompleteCudaGet(int s, ulong w, bool writable, bool pooled)
    {
        try
        {
            _ = _cuda.Table;
        }
        catch
        {
            _slots.Unlock(s, w); // nothing changed
            throw;
        }

        _slots.CommitGet(s, w);
        return CudaGuardForHeldReference(s, SlotWord.Gen(w), writable, pooled);
    }

    /// <summary>A guard owning one reference of generation <paramref name="gen"/> of CUDA slot <paramref name="s"/>
    /// that this process already holds (attributed): from a Get, or a channel receive. On failure the reference is
    /// released.</summary>
    private BufferGuard CudaGuardForHeldReference(int s, uint gen, bool writable, bool pooled)
    {
        _core.Lease.DangerousAddRefChecked();
        try
        {
            CudaMemory mem = _cuda.ResolveHeld(s, out long size); // leased for the guard
            return BufferGuard.Make(this, pooled, s, gen, null, mem, size, readOnly: !writable);
        }
        catch
        {
            ReleaseGuardReference(s, gen, forget: false);
            ReleaseControlLease();
            throw;
        }
    }
}
