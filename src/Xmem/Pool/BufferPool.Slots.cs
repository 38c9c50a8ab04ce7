using System.Numerics;
using System.Runtime.CompilerServices;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.Pool;
using Xmem.SharedMemory;

namespace Xmem;

// Slot operations. The protocol (docs/layout.md, "Slot protocol"):
// - A slot's word is changed only by CAS. Unattributed count changes (AddRef, Release, SetRefCount) are one CAS on an
//   unlocked word. Attributed changes (guards) lock the word (owner = entry + 1), journal the process's holding in the
//   slot, write the holding, clear the journal, and publish the new count with the unlock in one release store.
// - A process that dies inside a locked section is repaired by whoever takes its liveness lock: the journal restores
//   its holding, the unchanged count in the word is kept (nothing was published), and the lock is dropped.
// Interlocked operations are full fences in .NET; Volatile.Write is a release store, Volatile.Read an acquire load.
public sealed unsafe partial class BufferPool
{
    private const int LockWaitLimitMs = 5000;

    /// <summary>Acquires a read-write buffer of <paramref name="size"/> bytes in the lowest free slot (one whose kept
    /// memory fits, if any). Its count is 1, held by the returned guard. Throws <see cref="PoolFullException"/> at
    /// once when every slot is live, and <see cref="XmemOutOfMemoryException"/> when the memory cannot be had.</summary>
    public BufferGuard AcquireCpu(long size)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        int s = ClaimSlot(size, reclaim: true);
        if (s < 0)
        {
            ThrowHelper.ThrowPoolFull(_bare, _capacity);
        }

        return PublishAcquired(s, size, attributed: true)!;
    }

    /// <summary>Like <see cref="AcquireCpu(long)"/>, but waits up to <paramref name="timeout"/> for a slot to be
    /// freed by any thread or process (sleeping in the kernel on a futex). False when none came in time.</summary>
    public bool TryAcquireCpu(long size, TimeSpan timeout, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out BufferGuard? guard)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        long timeoutNs = timeout == Timeout.InfiniteTimeSpan ? -1 : (long)(timeout.TotalMilliseconds * 1_000_000);
        if (timeoutNs < -1)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(timeout), timeout, "timeout must be non-negative or Timeout.InfiniteTimeSpan.");
        }

        bool counted = false;
        try
        {
            int s = WaitForSlot(size, timeoutNs, CancellationToken.None, ref counted);
            guard = s < 0 ? null : PublishAcquired(s, size, attributed: true);
            return guard is not null;
        }
        finally
        {
            if (counted)
            {
                ExitBlocking();
            }
        }
    }

    /// <summary>Acquires a buffer, waiting for a free slot until <paramref name="cancellationToken"/> is cancelled.
    /// The wait sleeps in the kernel on a dedicated thread and wakes when a slot is released.</summary>
    public Task<BufferGuard> AcquireCpuAsync(long size, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        int fast = ClaimSlot(size, reclaim: false);
        if (fast >= 0)
        {
            return Task.FromResult(PublishAcquired(fast, size, attributed: true)!);
        }

        return Task.Factory.StartNew(
            () =>
            {
                bool counted = false;
                try
                {
                    int s = WaitForSlot(size, -1, cancellationToken, ref counted);
                    return PublishAcquired(s, size, attributed: true)!;
                }
                finally
                {
                    if (counted)
                    {
                        ExitBlocking();
                    }
                }
            },
            cancellationToken,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
    }

    /// <summary>Acquires <paramref name="count"/> buffers of <paramref name="size"/> bytes and leaves each live with
    /// count 1 held by no guard (in flight, owned by no process). Returns their meta indexes. All or nothing.</summary>
    public int[] PreallocateCpu(long size, int count)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        if (count < 0 || count > _capacity)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, $"count must be 0..{_capacity} (the pool's capacity).");
        }

        var result = new int[count];
        int done = 0;
        try
        {
            for (; done < count; done++)
            {
                int s = ClaimSlot(size, reclaim: true);
                if (s < 0)
                {
                    ThrowHelper.ThrowPoolFull(_bare, _capacity);
                }

                PublishAcquired(s, size, attributed: false);
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

    /// <summary>A read-only guard on a live slot; its count goes up by one. Throws for an index outside the pool or a
    /// slot with no live buffer, changing no count.</summary>
    public BufferGuard Get(int metaIndex) => GetGuard(metaIndex, writable: false);

    /// <summary>A read-write guard on a live slot; its count goes up by one.</summary>
    public BufferGuard GetMut(int metaIndex) => GetGuard(metaIndex, writable: true);

    /// <summary>Sets the slot's count (0..16,777,215). The count is in flight, owned by no process; 0 recycles the slot.</summary>
    public void SetRefCount(int metaIndex, int count)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        if (count < 0 || count > SlotWord.MaxCount)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, $"count must be 0..{SlotWord.MaxCount}.");
        }

        ref ulong word = ref _slots[metaIndex].Word;
        while (true)
        {
            ulong w = WaitUnlocked(metaIndex);
            RequireLive(metaIndex, w);
            ulong next = count == 0 ? SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)) : SlotWord.Make(count, SlotWord.Live, 0, SlotWord.Gen(w));
            if (Interlocked.CompareExchange(ref word, next, w) == w)
            {
                if (count == 0)
                {
                    AfterFreed(metaIndex);
                }

                return;
            }
        }
    }

    /// <summary>Adds one in-flight reference (owned by no process) and returns the new count.</summary>
    public int AddRef(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        ref ulong word = ref _slots[metaIndex].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(metaIndex);
            }

            RequireLive(metaIndex, w);
            int c = SlotWord.Count(w);
            if (c == SlotWord.MaxCount)
            {
                ThrowHelper.ThrowArgumentOutOfRange(nameof(metaIndex), metaIndex, $"slot {metaIndex}'s count is at its maximum ({SlotWord.MaxCount}).");
            }

            // One CAS: the count changes only if nothing else changed the word (state, lock, generation) meanwhile.
            if (Interlocked.CompareExchange(ref word, w + 1, w) == w)
            {
                return c + 1;
            }
        }
    }

    /// <summary>Drops one in-flight reference and returns the new count; at 0 the slot is recycled.</summary>
    public int Release(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        ref ulong word = ref _slots[metaIndex].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(metaIndex);
            }

            RequireLive(metaIndex, w);
            int c = SlotWord.Count(w);
            ulong next = c == 1 ? SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)) : w - 1;
            if (Interlocked.CompareExchange(ref word, next, w) == w)
            {
                if (c == 1)
                {
                    AfterFreed(metaIndex);
                }

                return c - 1;
            }
        }
    }

    /// <summary>The slot's current count: 0 for a slot with no live buffer. No system call, no lock.</summary>
    public int RefCount(int metaIndex)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        // No state test: Free and Acquiring slots hold count 0 (docs/layout.md, "The slot word"), so the count field
        // alone is the answer. A word damaged by another process can only make this number wrong, never unsafe.
        return SlotWord.Count(Volatile.Read(ref _slots[metaIndex].Word));
    }

    /// <summary>Gives back the memory of free slots: their data segments are unlinked (and unmapped here; other
    /// processes drop their mappings when they next touch the slot). Returns the bytes given back.</summary>
    public long Trim()
    {
        ThrowIfDisposed();
        long freed = 0;
        for (int s = 0; s < _capacity; s++)
        {
            ref ulong word = ref _slots[s].Word;
            ulong w = Volatile.Read(ref word);
            if (SlotWord.State(w) != SlotWord.Free || SlotWord.Owner(w) != 0 || Volatile.Read(ref _slots[s].DataCapacity) == 0)
            {
                continue;
            }

            // Take the slot as if acquiring it, so no acquirer uses the memory while it goes away.
            if (Interlocked.CompareExchange(ref word, SlotWord.Make(0, SlotWord.Acquiring, _tag, SlotWord.Gen(w)), w) != w)
            {
                continue;
            }

            freed += DropMemoryLocked(s);
            Volatile.Write(ref word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
            // An acquirer that met the hint while we held the slot dropped it as stale: set it again.
            Interlocked.Or(ref _hints[s >> 6], 1UL << (s & 63));
        }

        return freed + TrimCuda();
    }

    // ---------------------------------------------------------------- acquire

    private static void ValidateSize(long size)
    {
        if (size < 1)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(size), size, "size must be at least 1 byte.");
        }

        if (size > (1L << 60))
        {
            throw new XmemOutOfMemoryException($"a buffer of {size} bytes is more than any machine can give; ask for less.", Errno.ENOMEM);
        }
    }

    /// <summary>One compare for both checks: <see cref="_liveCapacity"/> is the capacity while the pool is open
    /// and 0 once it is disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckIndex(int metaIndex)
    {
        if ((uint)metaIndex >= (uint)_liveCapacity)
        {
            ThrowBadIndex(metaIndex);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadIndex(int metaIndex)
    {
        ThrowIfDisposed();
        ThrowHelper.ThrowIndexOutOfRange(metaIndex, _capacity);
    }

    private void RequireLive(int metaIndex, ulong w)
    {
        if (SlotWord.State(w) != SlotWord.Live || SlotWord.Count(w) == 0)
        {
            ThrowHelper.ThrowSlotNotLive(metaIndex);
        }
    }

    /// <summary>Finds and claims a free slot (Free → Acquiring, locked by this process, generation + 1).
    /// Returns -1 when none is free, after repairing lost hints and, when <paramref name="reclaim"/>, reclaiming
    /// what dead processes held.</summary>
    private int ClaimSlot(long size, bool reclaim)
    {
        int s = TryClaimHinted(size);
        if (s >= 0)
        {
            return s;
        }

        // Slow path (pool looks full): hints can be lost by a process that died between freeing a slot and setting
        // its hint, and dead processes may hold slots. Repair both, then look again.
        bool changed = RepairHints();
        if (reclaim)
        {
            changed |= ReclaimDeadProcesses() > 0;
        }

        return changed ? TryClaimHinted(size) : -1;
    }

    private int TryClaimHinted(long size)
    {
        for (int round = 0; round < 1024; round++)
        {
            int pick = PickHinted(size);
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

    /// <summary>Claims hinted slot <paramref name="pick"/>: clears its hint, then CASes it Free → Acquiring (locked by
    /// this process, generation + 1). False when another claimer took the hint or the hint was stale.</summary>
    private bool TryClaimPicked(int pick)
    {
        ulong bit = 1UL << (pick & 63);
        // Clearing the hint first makes this thread the one claimer that acts on it; a stale hint (slot in use)
        // is simply dropped, since the slot's releaser sets it again.
        ulong old = Interlocked.And(ref _hints[pick >> 6], ~bit);
        if ((old & bit) == 0)
        {
            return false;
        }

        ref ulong word = ref _slots[pick].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.State(w) != SlotWord.Free)
            {
                return false; // stale hint
            }

            if (SlotWord.Owner(w) != 0)
            {
                _ = WaitUnlocked(pick);
                continue;
            }

            ulong claimed = SlotWord.Make(0, SlotWord.Acquiring, _tag, SlotWord.Gen(w) + 1);
            if (Interlocked.CompareExchange(ref word, claimed, w) == w)
            {
                return true;
            }
        }
    }

    /// <summary>The lowest hinted slot whose kept CPU memory fits, else the lowest with no memory, else the lowest
    /// with CPU memory (replaced), else the lowest CUDA slot (its device memory is given back first).</summary>
    private int PickHinted(long size)
    {
        int firstEmpty = -1, firstCpu = -1, firstCuda = -1, looked = 0;
        for (int wi = 0; wi < _hintWords; wi++)
        {
            ulong bits = Volatile.Read(ref _hints[wi]);
            while (bits != 0)
            {
                int s = (wi << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                if (s >= _capacity)
                {
                    break; // a hint past the end (written by someone else): ignore it
                }

                ushort kind = Volatile.Read(ref _slots[s].Kind);
                long cap = Volatile.Read(ref _slots[s].DataCapacity);
                if (kind == LayoutConstants.KindCuda)
                {
                    firstCuda = firstCuda < 0 ? s : firstCuda;
                }
                else if (cap >= size && kind == LayoutConstants.KindCpu)
                {
                    return s;
                }
                else if (cap == 0 && kind == LayoutConstants.KindNone)
                {
                    firstEmpty = firstEmpty < 0 ? s : firstEmpty;
                }
                else
                {
                    firstCpu = firstCpu < 0 ? s : firstCpu;
                }

                if (++looked >= 64 && (firstEmpty >= 0 || firstCpu >= 0))
                {
                    return firstEmpty >= 0 ? firstEmpty : firstCpu;
                }
            }
        }

        return firstEmpty >= 0 ? firstEmpty : firstCpu >= 0 ? firstCpu : firstCuda;
    }

    /// <summary>Sets the hint of every free, unlocked slot whose hint is clear. True when any was set.</summary>
    private bool RepairHints()
    {
        bool any = false;
        for (int s = 0; s < _capacity; s++)
        {
            ulong w = Volatile.Read(ref _slots[s].Word);
            ulong bit = 1UL << (s & 63);
            if (SlotWord.State(w) == SlotWord.Free && SlotWord.Owner(w) == 0 && (Volatile.Read(ref _hints[s >> 6]) & bit) == 0)
            {
                Interlocked.Or(ref _hints[s >> 6], bit);
                any = true;
            }
        }

        return any;
    }

    /// <summary>Blocks until a slot is claimed (returns it), the timeout passes (-1) or the token is cancelled.
    /// Before its first sleep it counts itself in as a blocking call (<paramref name="counted"/>; the caller counts
    /// out once it has published the slot), and throws ObjectDisposedException once the pool is closing.</summary>
    private int WaitForSlot(long size, long timeoutNs, CancellationToken token, ref bool counted)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        uint* epoch = &_header->FreeEpoch;
        // A release makes the futex wake call only when some process has a waiter: each process keeps its own count
        // and shows "I have waiters" as its bit in the header's WaitMask, one atomic that recovery clears exactly for
        // a dead process (docs/layout.md, "Waiting for a free slot").
        AddLocalWaiter(+1);
        CancellationTokenRegistration reg = token.CanBeCanceled ? token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)epoch) : default;
        CancellationTokenRegistration closeReg = default;
        try
        {
            while (true)
            {
                token.ThrowIfCancellationRequested();
                if (counted)
                {
                    ThrowIfClosing();
                }

                uint seen = Volatile.Read(ref *epoch);
                int s = ClaimSlot(size, reclaim: true);
                if (s >= 0)
                {
                    return s;
                }

                long waitNs = 100_000_000; // wake at least every 100 ms to look for dead holders
                if (timeoutNs >= 0)
                {
                    long left = timeoutNs - (long)System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalNanoseconds;
                    if (left <= 0)
                    {
                        return -1;
                    }

                    waitNs = Math.Min(waitNs, left);
                }

                if (!counted)
                {
                    EnterBlocking();
                    counted = true;
                    closeReg = WakeOnClose(epoch);
                    continue; // look once more now that a close would wake us
                }

                bool outOfGate = ForkGate.LeaveForWait(); // a wait without a bound must not hold a fork back
                _ = Libc.FutexWait((nint)epoch, seen, waitNs);
                ForkGate.ReturnFromWait(outOfGate);
            }
        }
        finally
        {
            closeReg.Dispose();
            reg.Dispose();
            AddLocalWaiter(-1);
        }
    }

    /// <summary>Gives the claimed slot memory of at least <paramref name="size"/> bytes, fills in its record and
    /// publishes it Live with count 1 (attributed to this process, or in flight).</summary>
    private BufferGuard? PublishAcquired(int s, long size, bool attributed)
    {
        SlotRecord* r = &_slots[s];
        ref ulong word = ref r->Word;
        ulong w = Volatile.Read(ref word);
        uint gen = SlotWord.Gen(w);
        DataMapping map;
        try
        {
            map = EnsureMemoryLocked(s, size);
        }
        catch
        {
            Volatile.Write(ref word, SlotWord.Make(0, SlotWord.Free, 0, gen));
            AfterFreed(s);
            throw;
        }

        r->Size = size;
        r->Kind = LayoutConstants.KindCpu;
        r->DeviceId = -1;
        r->CudaOffset = 0;
        r->CudaAllocSize = 0;
        r->DescVersion = 0;
        r->DType = 0;
        r->NDim = 0;
        r->Seq = 0;
        r->TimestampNs = 0;
        new Span<byte>(r->Shape, 8 * 8 * 2).Clear(); // shape and strides are adjacent
        new Span<byte>(r->ContentType, 64).Clear();  // content type and producer tag are adjacent
        BufferGuard? guard = null;
        if (attributed)
        {
            try
            {
                guard = NewGuard(s, gen, map, size, readOnly: false); // takes over the mapping's lease
            }
            catch
            {
                Volatile.Write(ref word, SlotWord.Make(0, SlotWord.Free, 0, gen));
                AfterFreed(s);
                throw;
            }

            // Publication: every field above is visible before the slot reads Live (release stores).
            CommitAttributed(r, s, _holdings, _tag, w, Holding.Make(gen, 1), SlotWord.Make(1, SlotWord.Live, 0, gen));
        }
        else
        {
            map.Region.DangerousRelease(); // in flight: no guard of this process points into the memory
            Volatile.Write(ref word, SlotWord.Make(1, SlotWord.Live, 0, gen));
        }

        return guard;
    }

    /// <summary>With slot <paramref name="s"/> claimed: keeps its memory when it fits, else replaces it by a new data
    /// segment (pages reserved now). Returns this process's mapping of it, with a lease for the caller.</summary>
    private DataMapping EnsureMemoryLocked(int s, long size)
    {
        SlotRecord* r = &_slots[s];
        long cap = Volatile.Read(ref r->DataCapacity);
        if (cap >= size && r->Kind == LayoutConstants.KindCpu)
        {
            try
            {
                return LeaseSlotMapping(s, r->MemGen, cap, size);
            }
            catch (CorruptSegmentException)
            {
                // The kept memory is unusable (its segment was removed by hand or the record is damaged): replace it
                // rather than fail every later acquire that picks this slot.
            }
        }

        _ = DropMemoryLocked(s);
        long newCap = LayoutConstants.AlignUp(size, LayoutConstants.PageSize);
        (SafeFd fd, uint memGen, string obj) = CreateDataSegmentLocked(s, r->MemGen);
        using (fd)
        {
            MappedRegion region;
            try
            {
                SegmentFile.Size(fd, newCap, reserve: true, obj);
                region = MappedRegion.Map(fd.Fd, newCap, writable: true, PoolName.PathOf(obj));
            }
            catch
            {
                _ = SegmentFile.Unlink(obj);
                throw;
            }

            r->MemGen = memGen;
            r->Kind = LayoutConstants.KindCpu;
            Volatile.Write(ref r->DataCapacity, newCap);
            var map = new DataMapping(region, memGen);
            lock (_mappings.Gate)
            {
                _mappings.SetLocked(s, map);
                map.Region.DangerousAddRefChecked(); // under the gate: no eviction closes it first
            }

            return map;
        }
    }

    /// <summary>Names of the next generations an acquirer tries for a slot's new memory before giving up.</summary>
    private const int MaxDataNameTries = 16;

    /// <summary>With slot <paramref name="s"/> claimed: creates its next data segment, generation
    /// <paramref name="memGen"/> + 1 or later. An existing file of the pool's own (a member died while replacing this
    /// slot's memory) is unlinked and made again; one the kernel will not let this process unlink, or a stranger's
    /// file of another group or mode (its name can be seen in /dev/shm), is left alone and the next generation
    /// tried: the slot records whichever generation it got, so nothing but the name changes.</summary>
    private (SafeFd Fd, uint MemGen, string Obj) CreateDataSegmentLocked(int s, uint memGen)
    {
        for (int tries = 0; tries < MaxDataNameTries; tries++)
        {
            memGen++;
            string obj = PoolName.DataObject(_bare, _instance, s, memGen);
            SafeFd? fd = SegmentFile.TryCreateExclusive(obj, _access);
            if (fd is null && SegmentFile.OwnershipOf(obj, _access, out _) == SegmentOwnership.Pool
                && SegmentFile.TryUnlink(obj) is UnlinkOutcome.Removed or UnlinkOutcome.Missing)
            {
                fd = SegmentFile.TryCreateExclusive(obj, _access);
            }

            if (fd is not null)
            {
                return (fd, memGen, obj);
            }
        }

        throw new PoolPermissionException($"pool '{_bare}': the names of slot {s}'s next {MaxDataNameTries} data segments ({PoolName.InstancePrefix(_bare, _instance)}s{s}.g*) are all held by files this process cannot remove (made by a stranger, or by another member). Remove them as root or as their owner (`xmem gc`).", Errno.EEXIST);
    }

    /// <summary>With slot <paramref name="s"/> claimed: unlinks its data segment and drops this process's mapping.</summary>
    private long DropMemoryLocked(int s)
    {
        SlotRecord* r = &_slots[s];
        long cudaFreed = r->Kind == LayoutConstants.KindCuda ? DropCudaMemoryLocked(s) : 0;
        long cap = Volatile.Read(ref r->DataCapacity);
        Volatile.Write(ref r->DataCapacity, 0);
        if (cap > 0)
        {
            _ = SegmentFile.Unlink(PoolName.DataObject(_bare, _instance, s, r->MemGen));
        }

        lock (_mappings.Gate)
        {
            _mappings.RemoveLocked(s);
        }

        r->Kind = LayoutConstants.KindNone;
        return cap + cudaFreed;
    }

    /// <summary>This process's mapping of slot <paramref name="s"/>'s data segment generation
    /// <paramref name="memGen"/>, with a lease for the caller: cached after the first call, so later calls make no
    /// system call and allocate nothing. Every value read from the slot is checked on every path: Size must be
    /// 1..DataCapacity and within the mapping, else the slot is corrupt.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private DataMapping LeaseSlotMapping(int s, uint memGen, long cap, long size)
    {
        if (size <= cap && _mappings.TryLease(s, memGen, size) is DataMapping m)
        {
            return m;
        }

        return LeaseSlotMappingSlow(s, memGen, cap, size);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DataMapping LeaseSlotMappingSlow(int s, uint memGen, long cap, long size)
    {
        if (cap <= 0 || size < 1 || size > cap)
        {
            ThrowHelper.ThrowCorrupt(_bare, $"slot {s} says it holds {size} bytes in {cap} bytes of memory");
        }

        lock (_mappings.Gate)
        {
            DataMapping? m = _mappings.PeekLocked(s);
            if (m is not null && m.MemGen == memGen && m.Length >= size)
            {
                m.Region.DangerousAddRefChecked(); // under the gate: listed entries are open
                return m;
            }

            string obj = PoolName.DataObject(_bare, _instance, s, memGen);
            using SafeFd fd = SegmentFile.TryOpen(obj, writable: true)
                ?? throw new CorruptSegmentException($"pool '{_bare}': slot {s}'s data segment {obj} is missing (removed by hand, or the slot record is damaged).");
            if (!SegmentFile.IsPoolFile(fd, _access, obj))
            {
                // Not made by the pool (the real one was removed by hand and a stranger took the name): never mapped.
                ThrowHelper.ThrowCorrupt(_bare, $"slot {s}'s data segment {obj} does not have the pool's {_access}: it was not made by this pool");
            }
            long fileSize = SegmentFile.SizeOf(fd, obj);
            if (fileSize < cap)
            {
                ThrowHelper.ThrowCorrupt(_bare, $"slot {s}'s data segment is {fileSize} bytes, less than the {cap} the slot claims");
            }

            var map = new DataMapping(MappedRegion.Map(fd.Fd, cap, writable: true, PoolName.PathOf(obj)), memGen);
            _mappings.SetLocked(s, map); // may evict other slots' mappings beyond the budget, never this one
            map.Region.DangerousAddRefChecked();
            return map;
        }
    }

    // ---------------------------------------------------------------- get / guard release

    private BufferGuard GetGuard(int metaIndex, bool writable)
    {
        CheckIndex(metaIndex); // also refuses every index once the pool is disposed
        SlotRecord* r = &_slots[metaIndex];
        ulong w = LockLive(metaIndex);
        if (r->Kind == LayoutConstants.KindCuda)
        {
            return CompleteCudaGet(metaIndex, w, writable);
        }

        uint gen = SlotWord.Gen(w);
        BufferGuard guard;
        try
        {
            long size = r->Size;
            DataMapping map = LeaseSlotMapping(metaIndex, r->MemGen, Volatile.Read(ref r->DataCapacity), size);
            guard = NewGuard(metaIndex, gen, map, size, readOnly: !writable);
        }
        catch
        {
            Volatile.Write(ref r->Word, w); // unlock, nothing changed
            throw;
        }

        // Everything that can fail (mapping, leases, the guard's allocation) is done: the commit cannot fail, so a
        // reference is never counted without the guard that gives it back.
        ulong h = _holdings[metaIndex];
        CommitAttributed(r, metaIndex, _holdings, _tag, SlotWord.WithOwner(w, _tag), Holding.Make(gen, Holding.CountFor(h, gen) + 1), SlotWord.Make(SlotWord.Count(w) + 1, SlotWord.Live, 0, gen));
        return guard;
    }

    /// <summary>The guard for a reference about to be committed, taking over the caller's lease on
    /// <paramref name="map"/> and taking one on the control segment. On failure (out of memory, pool disposed)
    /// nothing is left held: the mapping's lease is dropped too.</summary>
    private BufferGuard NewGuard(int s, uint gen, DataMapping map, long size, bool readOnly)
    {
        bool controlLeased = false;
        try
        {
            _lease.DangerousAddRefChecked();
            controlLeased = true;
            return new BufferGuard(this, s, gen, map, size, readOnly);
        }
        catch
        {
            if (controlLeased)
            {
                _lease.DangerousRelease();
            }

            map.Region.DangerousRelease();
            throw;
        }
    }

    /// <summary>Locks a live slot for an attributed change and returns its word as it was (unlocked).</summary>
    private ulong LockLive(int s)
    {
        ref ulong word = ref _slots[s].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(s);
            }

            RequireLive(s, w);
            if (SlotWord.Count(w) == SlotWord.MaxCount)
            {
                ThrowHelper.ThrowArgumentOutOfRange("metaIndex", s, $"slot {s}'s count is at its maximum ({SlotWord.MaxCount}).");
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, _tag), w) == w)
            {
                return w;
            }
        }
    }

    /// <summary>Releases (<paramref name="forget"/> false) or hands off to no process (true) one reference of
    /// <paramref name="gen"/> held by this process through a guard. Does nothing when this process no longer holds
    /// one (the pool was disposed and released it, or another process recycled the slot).</summary>
    internal void ReleaseGuardReference(int s, uint gen, bool forget)
    {
        // Dekker with Dispose: count ourselves in (a full fence), then look for a detach. Either Dispose sees us and
        // waits until we are done, or we see it and leave the reference to its release of all holdings — so a guard
        // never acts under a process-table entry this process has already given up.
        Interlocked.Increment(ref _guardOpsInFlight);
        try
        {
            if (_detaching || _me < 0)
            {
                return;
            }

            _ = ReleaseAttributed(s, gen, 1, _holdings, _tag, forget);
        }
        finally
        {
            Interlocked.Decrement(ref _guardOpsInFlight);
        }
    }

    /// <summary>Drops up to <paramref name="n"/> of the references that the holdings at <paramref name="holdings"/>
    /// (entry tag <paramref name="tag"/>) keep on slot <paramref name="s"/> of generation <paramref name="gen"/>;
    /// <paramref name="forget"/> leaves them in the count as in-flight references instead. Returns how many.</summary>
    private int ReleaseAttributed(int s, uint gen, int n, ulong* holdings, int tag, bool forget)
    {
        SlotRecord* r = &_slots[s];
        ref ulong word = ref r->Word;
        ulong w;
        while (true)
        {
            w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(s);
            }

            if (SlotWord.State(w) != SlotWord.Live || SlotWord.Gen(w) != gen)
            {
                return 0; // recycled under us (someone released references that were not theirs)
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, tag), w) == w)
            {
                break;
            }
        }

        int held = Holding.CountFor(holdings[s], gen);
        int drop = Math.Min(held, n);
        if (drop == 0)
        {
            Volatile.Write(ref word, w);
            return 0;
        }

        ulong locked = SlotWord.WithOwner(w, tag);
        ulong hold = Holding.Make(gen, held - drop);
        if (forget)
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, w);
            return drop;
        }

        int count = Math.Max(SlotWord.Count(w) - drop, 0);
        if (count == 0)
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, SlotWord.Make(0, SlotWord.Free, 0, gen));
            AfterFreed(s);
        }
        else
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, SlotWord.Make(count, SlotWord.Live, 0, gen));
        }

        return drop;
    }

    /// <summary>Under the slot's lock (<paramref name="locked"/> is the word as locked): journals the old holding and
    /// word, writes the new holding, publishes the new word still locked, clears the journal, unlocks. A death at any
    /// point is resolved by recovery: no journal means nothing or everything was done; a journal with the word still
    /// equal to the saved one means the count was never published (the old holding goes back); a journal with a
    /// changed word means everything but the unlock was done (docs/layout.md, "Slot protocol").</summary>
    private static void CommitAttributed(SlotRecord* r, int s, ulong* holdings, int tag, ulong locked, ulong holding, ulong unlocked)
    {
        r->JournalHoldings = holdings[s];
        r->JournalWord = locked;
        Volatile.Write(ref r->JournalOwner, (uint)tag);                 // release: the saved values are visible first
        Volatile.Write(ref holdings[s], holding);                       // release: after the journal
        Volatile.Write(ref r->Word, SlotWord.WithOwner(unlocked, tag)); // release: count published, still locked
        Volatile.Write(ref r->JournalOwner, 0u);
        Volatile.Write(ref r->Word, unlocked);                          // release: unlock
    }

    /// <summary>Counts a waiting thread of this process in (+1) or out (-1). The process's count is written to its
    /// entry (for display) and its bit in WaitMask is set on 0 → 1 and cleared on 1 → 0, under a process-local lock;
    /// the bit's atomic OR is a full fence, so a releaser that increments the epoch after it sees the bit.</summary>
    private void AddLocalWaiter(int delta)
    {
        lock (_waitGate)
        {
            int before = _localWaiters;
            _localWaiters += delta;
            Volatile.Write(ref _procs[_me].Waiters, _localWaiters);
            ulong bit = 1UL << (_me & 63);
            if (before == 0 && _localWaiters > 0)
            {
                Interlocked.Or(ref _header->WaitMask[_me >> 6], bit);
            }
            else if (before > 0 && _localWaiters == 0)
            {
                Interlocked.And(ref _header->WaitMask[_me >> 6], ~bit);
            }
        }
    }

    /// <summary>After a slot became Free: hint it, advance the free epoch and wake sleepers, if any.</summary>
    private void AfterFreed(int s)
    {
        Interlocked.Or(ref _hints[s >> 6], 1UL << (s & 63));
        Interlocked.Increment(ref _header->FreeEpoch);
        // The increments above are full fences, so a waiter that counted itself before reading the epoch is seen here.
        ulong* mask = _header->WaitMask;
        if ((Volatile.Read(ref mask[0]) | Volatile.Read(ref mask[1]) | Volatile.Read(ref mask[2]) | Volatile.Read(ref mask[3])) != 0)
        {
            _ = Libc.FutexWakeAll((nint)(&_header->FreeEpoch));
        }
    }

    /// <summary>Waits while slot <paramref name="s"/> is locked and returns its unlocked word. A lock held by a dead
    /// process is repaired; one held longer than 5 s by a live one is an error, never a hang.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong WaitUnlocked(int s)
    {
        ref ulong word = ref _slots[s].Word;
        var spin = new SpinWait();
        long start = Environment.TickCount64;
        int checks = 0;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            int owner = SlotWord.Owner(w);
            if (owner == 0)
            {
                return w;
            }

            if (owner > LayoutConstants.MaxProcesses)
            {
                ThrowHelper.ThrowCorrupt(_bare, $"slot {s} is locked by process entry {owner - 1}, which does not exist");
            }

            spin.SpinOnce(sleep1Threshold: -1);
            if (spin.Count < 100)
            {
                continue;
            }

            // Held for long: its holder may be dead, or descheduled.
            if ((++checks & 63) == 1 && owner - 1 != _me)
            {
                _ = TryRecoverEntry(owner - 1);
            }

            if (Environment.TickCount64 - start > LockWaitLimitMs)
            {
                throw new XmemTimeoutException($"pool '{_bare}': slot {s} has been locked by live process entry {owner - 1} for over {LockWaitLimitMs / 1000} s. That process is stopped or misbehaving; see `xmem stat {_bare}`.");
            }

            Thread.Sleep(0);
        }
    }
}
