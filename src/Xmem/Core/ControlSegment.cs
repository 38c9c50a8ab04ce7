using System.Security.Cryptography;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// One pool instance's control segment as this process sees it: the descriptor (whose open file description holds
/// this process's liveness lock), the mapping, and typed pointers to the header, the process table, the free-slot
/// hints and the slot table (docs/layout.md, "Control segment"). Creation publishes a finished header by naming the
/// file (docs/layout.md, "Creation"); opening waits for a creator that is still alive and then checks every header
/// field (<see cref="HeaderCheck"/>) before any of it is used.
/// Invariants: the pointers and <see cref="Capacity"/> come from a header that passed the check, and never change;
/// the mapping is unmapped only through <see cref="PoolLease"/>, once nothing of this process points into it.
/// </summary>
internal sealed unsafe class ControlSegment
{
    // capacity: the one the header check accepted (or the creator wrote), never read again from the header, which
    // every member can write, so the pointers below always fit the mapping.
    private ControlSegment(string bare, SafeFd fd, MappedRegion region, int capacity, SegmentAccess access, FileIdentity identity)
    {
        Identity = identity;
        Bare = bare;
        Fd = fd;
        Region = region;
        Header = (PoolHeader*)region.Address;
        Capacity = capacity;
        Instance = Header->InstanceId;
        HintWords = (Capacity + 63) / 64;
        Procs = (ProcessEntry*)(region.Address + (nint)LayoutConstants.ProcessTableOffset);
        Hints = (ulong*)(region.Address + (nint)LayoutConstants.FreeHintsOffset);
        Slots = (SlotRecord*)(region.Address + (nint)LayoutConstants.SlotTableOffset(Capacity));
        Access = access;
    }

    /// <summary>The pool's name without a leading '/'.</summary>
    internal string Bare { get; }

    /// <summary>The descriptor of the control segment (liveness and removal locks are taken through it).</summary>
    internal SafeFd Fd { get; }

    /// <summary>This process's mapping of the whole segment.</summary>
    internal MappedRegion Region { get; }

    internal PoolHeader* Header { get; }

    /// <summary>The pool's counters in the header (docs/layout.md, "PoolHeader", Counters).</summary>
    internal PoolCounters Counters => new(Header);
    internal ProcessEntry* Procs { get; }
    internal ulong* Hints { get; }
    internal SlotRecord* Slots { get; }
    internal int Capacity { get; }
    internal int HintWords { get; }
    internal ulong Instance { get; }

    /// <summary>The group and mode of every segment this process makes for the pool: the control segment's, from the
    /// kernel at open (the header's Mode field is writable by every member and is never read for this).</summary>
    internal SegmentAccess Access { get; }

    /// <summary>Which file this instance's control segment is (the kernel's device and inode number, at open).</summary>
    internal FileIdentity Identity { get; }

    internal string ObjectName => PoolName.ControlObject(Bare);

    internal bool IsPersistent => (Volatile.Read(ref Header->Flags) & LayoutConstants.PoolFlagPersistent) != 0;

    /// <summary>Makes the control segment as an unnamed file, locks entry 0's liveness byte, sizes it, writes the
    /// header, and only then names it with linkat(2), which never replaces an existing name. The result is named,
    /// still Initializing (<see cref="PublishReady"/> finishes it), with entry 0's lock held. Null when the name is
    /// taken (nothing is left behind then).</summary>
    internal static ControlSegment? TryCreate(string bare, int capacity, uint mode, bool persistent)
    {
        string obj = PoolName.ControlObject(bare);
        SafeFd fd = SegmentFile.CreateUnnamed(mode);
        MappedRegion? region = null;
        try
        {
            // Entry 0's liveness lock marks the creator alive from before the file has a name: nobody can ever find
            // this pool by name with its creator alive but unlocked.
            if (!Libc.TryLockByte(fd.Fd, LayoutConstants.LivenessLockByte(0)))
            {
                throw new XmemException(XmemStatus.Internal, "could not lock a freshly created segment");
            }

            long size = LayoutConstants.SegmentSize(capacity);
            SegmentFile.Size(fd, size, reserve: true, obj);
            region = MappedRegion.Map(fd.Fd, size, writable: true, PoolName.PathOf(obj));
            WriteHeader((PoolHeader*)region.Address, capacity, size, mode, persistent);
            var hints = (ulong*)(region.Address + (nint)LayoutConstants.FreeHintsOffset);
            for (int i = 0; i < capacity; i++)
            {
                hints[i / 64] |= 1UL << (i % 64);
            }

            // Read before the name is given: from here on nothing can fail but the publication itself, so a named
            // pool is either handed to the caller (who finishes or abandons it) or never named.
            SegmentAccess access = SegmentFile.AccessOf(fd, obj, out FileIdentity identity);

            // The name is the publication of the header (an opener reads it through its own mapping of the same
            // pages, after its open(2) found the name); linkat never replaces an existing name.
            if (!SegmentFile.Publish(fd, obj))
            {
                region.Dispose();
                fd.Dispose(); // the unnamed file goes with its last descriptor
                return null;
            }

            return new ControlSegment(bare, fd, region, capacity, access, identity);
        }
        catch
        {
            region?.Dispose();
            fd.Dispose();
            throw;
        }
    }

    private static void WriteHeader(PoolHeader* h, int capacity, long size, uint mode, bool persistent)
    {
        h->Magic = LayoutConstants.Magic;
        h->LayoutVersion = LayoutConstants.LayoutVersion;
        h->Capacity = capacity;
        h->MaxProcesses = LayoutConstants.MaxProcesses;
        h->SegmentSize = size;
        ulong instance = 0;
        RandomNumberGenerator.Fill(new Span<byte>(&instance, sizeof(ulong)));
        h->InstanceId = instance | 1;
        h->HeaderSize = LayoutConstants.HeaderSize;
        h->SlotSize = LayoutConstants.SlotSize;
        h->ProcessTableOffset = LayoutConstants.ProcessTableOffset;
        h->FreeHintsOffset = LayoutConstants.FreeHintsOffset;
        h->SlotTableOffset = LayoutConstants.SlotTableOffset(capacity);
        h->Flags = persistent ? LayoutConstants.PoolFlagPersistent : 0;
        h->Mode = mode;
        h->CreatedUnixNs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000;
        h->CreatorPid = ProcessInfo.OwnPid;
    }

    /// <summary>The last step of creation. Release ordering: a reader that sees Ready sees every field.</summary>
    internal void PublishReady() => Volatile.Write(ref Header->State, LayoutConstants.PoolStateReady);

    /// <summary>Opens the control segment of the pool named <paramref name="bare"/>: waits (at most 2 s, and only
    /// while its creator is alive) for it to be sized and finished, then checks its header.</summary>
    internal static ControlSegment Open(string bare)
    {
        string obj = PoolName.ControlObject(bare);
        SafeFd fd = SegmentFile.TryOpen(obj, writable: true)
            ?? throw new PoolNotFoundException($"no xmem pool named '{bare}' (looked for {PoolName.PathOf(obj)}). Create the pool first, or check XMEM_SHM_DIR.", PoolName.PathOf(obj), Errno.ENOENT);
        MappedRegion? region = null;
        try
        {
            SegmentAccess access = WaitForSize(fd, obj, bare, out long size, out FileIdentity identity);
            region = MappedRegion.Map(fd.Fd, size, writable: true, PoolName.PathOf(obj));
            WaitForReady(fd, (PoolHeader*)region.Address, bare);
            int capacity = HeaderCheck.Validate((PoolHeader*)region.Address, size, bare);
            return new ControlSegment(bare, fd, region, capacity, access, identity);
        }
        catch
        {
            region?.Dispose();
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Unmaps and closes a segment that never became a pool's (a failed create or open).</summary>
    internal void DisposeUnused()
    {
        Region.Dispose();
        Fd.Dispose();
    }

    /// <summary>The segment's access, identity and size (one statx), once its creator has sized it.</summary>
    private static SegmentAccess WaitForSize(SafeFd fd, string obj, string bare, out long size, out FileIdentity identity)
    {
        // A creator sizes the file right after creating it; wait for it while it is alive, at most 2 s.
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            SegmentAccess access = SegmentFile.AccessOf(fd, obj, out identity, out size);
            if (size >= LayoutConstants.HeaderSize)
            {
                return access;
            }

            if (!Libc.IsByteLockedByOther(fd.Fd, LayoutConstants.LivenessLockByte(0)) || Environment.TickCount64 > deadline)
            {
                ThrowHelper.ThrowCorrupt(bare, $"the control segment is {size} bytes, smaller than its header (its creator died while creating it)");
            }

            Thread.Sleep(1);
        }
    }

    private static void WaitForReady(SafeFd fd, PoolHeader* h, string bare)
    {
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            uint state = Volatile.Read(ref h->State);
            if (state == LayoutConstants.PoolStateReady)
            {
                return;
            }

            if (state == LayoutConstants.PoolStateRemoving)
            {
                return; // attach first, then decide (WaitWhileRemoving): see docs/layout.md, "Removal"
            }

            if (state == LayoutConstants.PoolStateRemoved)
            {
                _ = PoolRemoval.TryRemoveStale(bare); // finish the unlinking of a remover that died after its commit point
                throw new PoolNotFoundException($"pool '{bare}' has been removed. Create it again.", PoolName.PathOf(PoolName.ControlObject(bare)));
            }

            if (state != LayoutConstants.PoolStateInitializing)
            {
                ThrowHelper.ThrowCorrupt(bare, $"pool state {state} is not a known state");
            }

            if (!Libc.IsByteLockedByOther(fd.Fd, LayoutConstants.LivenessLockByte(0)) || Environment.TickCount64 > deadline)
            {
                ThrowHelper.ThrowCorrupt(bare, "the pool was never finished: its creator died while creating it");
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>After attaching: if a remover marked the pool Removing, wait for it to give up (it saw us alive) or
    /// finish (then the pool is gone and opening fails cleanly).</summary>
    internal void WaitWhileRemoving()
    {
        long deadline = Environment.TickCount64 + 5000;
        uint state;
        while ((state = Volatile.Read(ref Header->State)) is LayoutConstants.PoolStateRemoving or LayoutConstants.PoolStateRemoved)
        {
            if (state == LayoutConstants.PoolStateRemoved)
            {
                throw new PoolNotFoundException($"pool '{Bare}' was removed while this process opened it. Create it again.", PoolName.PathOf(ObjectName));
            }

            if (Libc.IsByteLockedByOther(Fd.Fd, LayoutConstants.RemovalLockByte))
            {
                if (Environment.TickCount64 > deadline)
                {
                    throw new XmemTimeoutException($"pool '{Bare}' has been marked as being removed for over 5 s by a live process; try again, or see `xmem ls`.");
                }

                Thread.Sleep(1);
                continue;
            }

            // No remover at work: it either finished (the name is gone or names another instance) or died half-way.
            if (!NameStillNamesThisInstance())
            {
                throw new PoolNotFoundException($"pool '{Bare}' was removed while this process opened it. Create it again.", PoolName.PathOf(ObjectName));
            }

            // A remover died between marking Removing and putting Ready back: repair it under the removal lock.
            if (Libc.TryLockByte(Fd.Fd, LayoutConstants.RemovalLockByte))
            {
                _ = Interlocked.CompareExchange(ref Header->State, LayoutConstants.PoolStateReady, LayoutConstants.PoolStateRemoving);
                Libc.UnlockByte(Fd.Fd, LayoutConstants.RemovalLockByte);
            }
        }
    }

    /// <summary>True when the pool's name still names the control segment of this instance.</summary>
    internal bool NameStillNamesThisInstance() => SegmentFile.NameRefersTo(ObjectName, Identity);

    /// <summary>In a child made by fork(): drops this process's two references to the parent's open file description
    /// (see OpenPools.AbandonInherited): the descriptor is closed without unlocking, the mapping
    /// replaced by zero pages.</summary>
    internal void AbandonInherited()
    {
        Fd.CloseInheritedCopy();
        Region.ReplaceInheritedWithZeros(writable: true);
    }
}
