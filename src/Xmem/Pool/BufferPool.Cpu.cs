using Xmem.Core;
using Xmem.Errors;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem;

// The facade's CPU buffers and counts: argument checks, then the core's claim (SlotTable), memory (DataSegments)
// and commit, and the guard that owns the reference.
public sealed partial class BufferPool
{
    /// <summary>How long a waiting <see cref="TryAcquireCpu(long, TimeSpan, out BufferGuard?)"/> (or
    /// <see cref="TryAcquireCpuRef"/>) spins on the slot table, with no system call, before it sleeps in the kernel;
    /// zero (the default) sleeps at once. As <see cref="BufferChannel.SpinDuration"/>: worth it only when the thread
    /// has a CPU of its own and slots come back within the spin (a pipeline whose buffers are all in flight).</summary>
    public TimeSpan AcquireSpinDuration { get; set; }

    /// <summary>Acquires a read-write buffer of <paramref name="size"/> bytes in a free slot, one whose kept memory fits
    /// if any (docs/layout.md, "Acquire"). Its count is 1, held by the returned guard. Throws
    /// <see cref="PoolFullException"/> at once when every slot is live, and <see cref="XmemOutOfMemoryException"/> when
    /// the memory cannot be had.</summary>
    public BufferGuard AcquireCpu(long size)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        int s = _slots.Claim(new CpuSlotPicker(_core.Hints, size), reclaim: true);
        if (s < 0)
        {
            ThrowHelper.ThrowPoolFull(Bare, Capacity);
        }

        return PublishCpu(s, size, attributed: true, pooled: false)!;
    }

    /// <summary>Like <see cref="AcquireCpu(long)"/>, but waits up to <paramref name="timeout"/> for a slot to be
    /// freed by any thread or process (sleeping in the kernel on a futex). False when none came in time.</summary>
    public bool TryAcquireCpu(long size, TimeSpan timeout, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out BufferGuard? guard)
    {
        guard = TryAcquireCpuCore(size, timeout, pooled: false);
        return guard is not null;
    }

    /// <summary><see cref="TryAcquireCpu(long, TimeSpan, out BufferGuard?)"/> for a plain or a pooled guard: null
    /// when no slot came in time.</summary>
    private BufferGuard? TryAcquireCpuCore(long size, TimeSpan timeout, bool pooled)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        long timeoutNs = timeout == Timeout.InfiniteTimeSpan ? -1 : (long)(timeout.TotalMilliseconds * 1_000_000);
        if (timeoutNs < -1)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(timeout), timeout, "the timeout must be non-negative, or infinite to wait without limit.");
        }

        bool counted = false;
        try
        {
            int s = FreeSlotWait.Wait(_core, size, timeoutNs, (long)AcquireSpinDuration.TotalNanoseconds, CancellationToken.None, ref counted);
            return s < 0 ? null : PublishCpu(s, size, attributed: true, pooled);
        }
        finally
        {
            if (counted)
            {
                _core.Blocking.Exit();
            }
        }
    }

    /// <summary>Acquires a buffer, waiting for a free slot without blocking the calling thread until
    /// <paramref name="cancellationToken"/> is cancelled. A free slot is taken at once, synchronously and without
    /// allocating more than the guard; otherwise the wait is queued on the one thread that sleeps on the pool's
    /// FreeEpoch for all of this process's asynchronous acquires (docs/channels.md, "Async"). A cancelled wait takes
    /// no slot; a slot taken just as the token fired is returned instead (the caller owns it).</summary>
    public ValueTask<BufferGuard> AcquireCpuAsync(long size, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BufferGuard>(cancellationToken);
        }

        int fast = _slots.Claim(new CpuSlotPicker(_core.Hints, size), reclaim: false);
        if (fast >= 0)
        {
#pragma warning disable CA2000 // ownership passes to the caller through the returned task
            return new ValueTask<BufferGuard>(PublishCpu(fast, size, attributed: true, pooled: false)!);
#pragma warning restore CA2000
        }

        return _core.Watchers.Enqueue(_core.FreeEpoch, new AcquireWait(this, size, cancellationToken));
    }

    /// <summary>One look for a free slot (reclaiming dead holders' slots), without waiting: a guard, or null.</summary>
    internal BufferGuard? AcquireCpuNow(long size)
    {
        ThrowIfDisposed();
        int s = _slots.Claim(new CpuSlotPicker(_core.Hints, size), reclaim: true);
        return s < 0 ? null : PublishCpu(s, size, attributed: true, pooled: false);
    }

    /// <summary>Acquires a read-write buffer sized for <paramref name="spec"/> (at least 1 byte) and describes it
    /// with the spec, sequence number 0 and the current CLOCK_MONOTONIC time.</summary>
    /// <exception cref="ArgumentException">The spec is the default (uninitialized) value.</exception>
    public BufferGuard AcquireCpu(TensorSpec spec)
    {
        if (spec.ElementType == ElementType.None || spec.Shape.IsDefault)
        {
            throw new ArgumentException("the tensor spec is empty (a default value); give it an element type and a shape.", nameof(spec));
        }

        BufferGuard guard = AcquireCpu(Math.Max(spec.RequiredBytes, 1));
        try
        {
            WriteDescription(guard.MetaIndex, guard.Generation, guard.Size, new BufferDescription(spec, 0, BufferDescription.MonotonicNowNs()));
        }
        catch
        {
            guard.Dispose();
            throw;
        }

        return guard;
    }

    /// <summary>Acquires <paramref name="count"/> buffers of <paramref name="size"/> bytes and leaves each live with
    /// count 1 held by no guard (in flight, owned by no process). Returns their meta indexes. All or nothing.</summary>
    public int[] PreallocateCpu(long size, int count)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        ValidateCount(count);
        return Preallocate(count, () =>
        {
            int s = _slots.Claim(new CpuSlotPicker(_core.Hints, size), reclaim: true);
            if (s >= 0)
            {
                _ = PublishCpu(s, size, attributed: false, pooled: false);
            }

            return s;
        });
    }

    /// <summary>A read-only guard on a live slot; its count goes up by one. Throws for an index outside the pool or a
    /// slot with no live buffer, changing no count.</summary>
    public BufferGuard Get(int metaIndex) => GetGuard(metaIndex, writable: false, pooled: false);

    /// <summary>A read-write guard on a live slot; its count goes up by one.</summary>
    public BufferGuard GetMut(int metaIndex) => GetGuard(metaIndex, writable: true, pooled: false);

    /// <summary>Sets the slot's count (0..16,777,215). The count is in flight, owned by no process; 0 recycles the slot.</summary>
    public void SetRefCount(int metaIndex, int count)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        if (count < 0 || count > SlotWord.MaxCount)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, $"count must be 0..{SlotWord.MaxCount}.");
        }

        _slots.SetRefCount(metaIndex, count);
    }

    /// <summary>Adds one in-flight reference (owned by no process) and returns the new count.</summary>
    public int AddRef(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        return _slots.AddRef(metaIndex);
    }

    /// <summary>Drops one in-flight reference and returns the new count; at 0 the slot is recycled.</summary>
    public int Release(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        return _slots.Release(metaIndex);
    }

    /// <summary>The slot's current count: 0 for a slot with no live buffer. No system call, no lock.</summary>
    public int RefCount(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        return _slots.RefCount(metaIndex);
    }

    /// <summary>Gives back the memory of free slots: their data segments are unlinked (and unmapped here; other
    /// processes drop their mappings when they next touch the slot). Returns the bytes given back.</summary>
    public long Trim()
    {
        ThrowIfDisposed();
        long freed = 0;
        SlotTable slots = _slots;
        for (int s = 0; s < Capacity; s++)
        {
            if (!_core.Data.HasMemory(s) || !slots.TryTakeFree(s, out ulong w))
            {
                continue;
            }

            freed += DropMemoryLocked(s);
            slots.ReturnFree(s, w);
        }

        return freed + _cuda.Trim();
    }

    private static void ValidateSize(long size)
    {
        if (size < 1)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(size), size, "size must be at least 1 byte.");
        }

        if (size > (1L << 60))
        {
            throw new XmemOutOfMemoryException($"a buffer of {size} bytes is more than any machine can give; ask for less.", Interop.Errno.ENOMEM);
        }
    }

    private void ValidateCount(int count)
    {
        if (count < 0 || count > Capacity)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, $"count must be 0..{Capacity} (the pool's capacity).");
        }
    }

    /// <summary>Claims and publishes <paramref name="count"/> in-flight buffers through <paramref name="claimOne"/>
    /// (a slot index, -1 when the pool is full). All or nothing: a failure releases what was made.</summary>
    private int[] Preallocate(int count, Func<int> claimOne)
    {
        var result = new int[count];
        int done = 0;
        try
        {
            for (; done < count; done++)
            {
                int s = claimOne();
                if (s < 0)
                {
                    ThrowHelper.ThrowPoolFull(Bare, Capacity);
                }

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

    /// <summary>With slot <paramref name="s"/> claimed: drops whatever memory it keeps (CUDA or CPU).</summary>
    private long DropMemoryLocked(int s)
    {
        long cuda = _slots.HoldsCuda(s) ? _cuda.DropMemoryLocked(s) : 0;
        return cuda + _core.Data.DropLocked(s);
    }

    /// <summary>Gives claimed slot <paramref name="s"/> CPU memory of at least <paramref name="size"/> bytes, fills
    /// in its record and publishes it Live with count 1 (attributed to this process with a guard, or in flight).</summary>
    private BufferGuard? PublishCpu(int s, long size, bool attributed, bool pooled)
    {
        SlotTable slots = _slots;
        ulong w = slots.Word(s);
        uint gen = SlotWord.Gen(w);
        DataMapping map;
        try
        {
            if (slots.HoldsCuda(s))
            {
                _ = _cuda.DropMemoryLocked(s); // a CUDA slot taken for CPU memory: its device memory goes first
            }

            map = _core.Data.EnsureLocked(s, size);
        }
        catch
        {
            slots.AbandonClaim(s, gen);
            throw;
        }

        slots.ResetRecordForCpu(s, size);
        if (!attributed)
        {
            map.Region.DangerousRelease(); // in flight: no guard of this process points into the memory
            slots.PublishInFlight(s, gen);
            return null;
        }

        BufferGuard guard;
        try
        {
            guard = NewGuard(s, gen, map, size, readOnly: false, pooled); // takes over the mapping's lease
        }
        catch
        {
            slots.AbandonClaim(s, gen);
            throw;
        }

        slots.PublishOwned(s, w);
        return guard;
    }

    private BufferGuard GetGuard(int metaIndex, bool writable, bool pooled)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        SlotTable slots = _slots;
        ulong w = slots.LockLive(metaIndex);
        if (slots.HoldsCuda(metaIndex))
        {
            return CompleteCudaGet(metaIndex, w, writable, pooled);
        }

        BufferGuard guard;
        try
        {
            DataMapping map = _core.Data.LeaseLive(metaIndex, out long size);
            guard = NewGuard(metaIndex, SlotWord.Gen(w), map, size, readOnly: !writable, pooled);
        }
        catch
        {
            slots.Unlock(metaIndex, w); // nothing changed
            throw;
        }

        // Everything that can fail (mapping, leases, the guard's allocation) is done: the commit cannot fail, so a
        // reference is never counted without the guard that gives it back.
        slots.CommitGet(metaIndex, w);
        return guard;
    }

    /// <summary>The guard for a reference about to be committed (or already held), taking over the caller's lease on
    /// <paramref name="map"/> and taking one on the control segment. On failure (out of memory, pool disposed)
    /// nothing is left held: the mapping's lease is dropped too.</summary>
    private BufferGuard NewGuard(int s, uint gen, DataMapping map, long size, bool readOnly, bool pooled)
    {
        bool controlLeased = false;
        try
        {
            _core.Lease.DangerousAddRefChecked();
            controlLeased = true;
            return BufferGuard.Make(this, pooled, s, gen, map, null, size, readOnly);
        }
        catch
        {
            if (controlLeased)
            {
                _core.Lease.DangerousRelease();
            }

            map.Region.DangerousRelease();
            throw;
        }
    }

    /// <summary>Releases (<paramref name="forget"/> false) or hands off to no process (true) one reference of
    /// <paramref name="gen"/> held by this process through a guard. Does nothing when this process no longer holds
    /// one (the pool was disposed and released it, or another process recycled the slot).</summary>
    internal void ReleaseGuardReference(int s, uint gen, bool forget)
    {
        if (!_detach.TryEnter())
        {
            return; // detaching: Dispose's release of all holdings gives the reference back
        }

        try
        {
            if (_core.Registry.Me >= 0)
            {
                _ = _slots.ReleaseOwn(s, gen, forget);
            }
        }
        finally
        {
            _detach.Exit();
        }
    }

    /// <summary>Validates <paramref name="d"/> against a buffer of <paramref name="size"/> bytes and writes it into
    /// slot <paramref name="s"/> (generation <paramref name="gen"/>, which the caller holds a reference to).</summary>
    internal void WriteDescription(int s, uint gen, long size, in BufferDescription d)
    {
        ThrowIfDisposed();
        _descriptions.Write(s, gen, size, d);
    }

    /// <summary>Slot <paramref name="s"/>'s description as seen by a holder of a reference to it (null: none).</summary>
    internal BufferDescription? ReadDescription(int s, long size)
    {
        ThrowIfDisposed();
        return _descriptions.Read(s, size);
    }
}
