using Xmem.Interop;
using System.Runtime.CompilerServices;
using Xmem.Errors;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// CPU slots' data segments (docs/layout.md, "Data segments"): making a slot's memory (generation MemGen), mapping it
/// in this process (through the <see cref="MappingCache"/>, within its budget), replacing and dropping it, and removing
/// orphans (segments no slot records, left by a process that died while replacing a slot's memory).
/// Invariants: a slot's memory is made, replaced or dropped only while this process holds the slot claimed
/// (Acquiring, locked by it), so no acquirer uses it meanwhile; DataCapacity is published only once the segment
/// exists and is sized; every value read from a slot record (Size, DataCapacity) is checked against the mapping on
/// every path, and a segment that is not the pool's (another group or mode) is never mapped.
/// </summary>
internal sealed unsafe class DataSegments
{
    /// <summary>Names of the next generations an acquirer tries for a slot's new memory before giving up.</summary>
    private const int MaxDataNameTries = 16;

    private readonly ControlSegment _control;
    private readonly SlotRecord* _slots;
    private readonly MappingCache _mappings;

    internal DataSegments(ControlSegment control)
    {
        _control = control;
        _slots = control.Slots;
        _mappings = new MappingCache(control.Capacity, MappingCache.BudgetFromEnvironment());
    }

    /// <summary>This process's cached mappings.</summary>
    internal MappingCache Mappings => _mappings;

    private string Bare => _control.Bare;

    private string ObjectOf(int s, uint memGen) => PoolName.DataObject(_control.Bare, _control.Instance, s, memGen);

    /// <summary>This process's mapping of slot <paramref name="s"/>'s data segment generation
    /// <paramref name="memGen"/>, with a lease for the caller: cached after the first call, so later calls make no
    /// system call and allocate nothing. Size must be 1..DataCapacity and within the mapping, else the slot is
    /// corrupt.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal DataMapping Lease(int s, uint memGen, long cap, long size)
    {
        if (size <= cap && _mappings.TryLease(s, memGen, size) is DataMapping m)
        {
            return m;
        }

        return LeaseSlow(s, memGen, cap, size);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DataMapping LeaseSlow(int s, uint memGen, long cap, long size)
    {
        if (cap <= 0 || size < 1 || size > cap)
        {
            ThrowHelper.ThrowCorrupt(Bare, $"slot {s} says it holds {size} bytes in {cap} bytes of memory");
        }

        lock (_mappings.Gate)
        {
            DataMapping? m = _mappings.PeekLocked(s);
            if (m is not null && m.MemGen == memGen && m.Length >= size)
            {
                m.Region.DangerousAddRefChecked(); // under the gate: listed entries are open
                return m;
            }

            string obj = ObjectOf(s, memGen);
            using SafeFd fd = SegmentFile.TryOpen(obj, writable: true)
                ?? throw new CorruptSegmentException($"pool '{Bare}': slot {s}'s data segment {obj} is missing (removed by hand, or the slot record is damaged).");
            if (!SegmentFile.IsPoolFile(fd, _control.Access, obj, out long fileSize))
            {
                // Not made by the pool (the real one was removed by hand and a stranger took the name): never mapped.
                ThrowHelper.ThrowCorrupt(Bare, $"slot {s}'s data segment {obj} does not have the pool's {_control.Access}: it was not made by this pool");
            }

            if (fileSize < cap)
            {
                ThrowHelper.ThrowCorrupt(Bare, $"slot {s}'s data segment is {fileSize} bytes, less than the {cap} the slot claims");
            }

#pragma warning disable CA2000 // ownership passes to the DataMapping, whose region the mapping cache disposes when the entry is replaced, evicted or removed
            var map = new DataMapping(MappedRegion.Map(fd.Fd, cap, writable: true, PoolName.PathOf(obj)), memGen);
#pragma warning restore CA2000
            _mappings.SetLocked(s, map); // may evict other slots' mappings beyond the budget, never this one
            map.Region.DangerousAddRefChecked();
            return map;
        }
    }

    /// <summary>This process's mapping of live CPU slot <paramref name="s"/> (locked by this process), leased, with the
    /// buffer's <paramref name="size"/>, checked against the slot's memory (<see cref="Lease"/>).</summary>
    internal DataMapping LeaseLive(int s, out long size)
    {
        SlotRecord* r = &_slots[s];
        size = r->Size;
        return Lease(s, r->MemGen, Volatile.Read(ref r->DataCapacity), size);
    }

    /// <summary>True when slot <paramref name="s"/>'s record says it keeps a data segment.</summary>
    internal bool HasMemory(int s) => Volatile.Read(ref _slots[s].DataCapacity) != 0;

    /// <summary>With slot <paramref name="s"/> claimed and holding no CUDA memory: keeps its memory when it fits,
    /// else replaces it by a new data segment (pages reserved now) and records it CPU memory. Returns this process's
    /// mapping of it, with a lease for the caller.</summary>
    internal DataMapping EnsureLocked(int s, long size)
    {
        SlotRecord* r = &_slots[s];
        long cap = Volatile.Read(ref r->DataCapacity);
        if (cap >= size && r->Kind == LayoutConstants.KindCpu)
        {
            try
            {
                return Lease(s, r->MemGen, cap, size);
            }
            catch (CorruptSegmentException)
            {
                // The kept memory is unusable (its segment was removed by hand or the record is damaged): replace it
                // rather than fail every later acquire that picks this slot.
            }
        }

        _ = DropLocked(s);
        long newCap = LayoutConstants.AlignUp(size, LayoutConstants.PageSize);
        (SafeFd fd, uint memGen, string obj) = CreateLocked(s, r->MemGen);
        using (fd)
        {
            MappedRegion region;
            try
            {
                SegmentFile.Size(fd, newCap, reserve: true, obj);
#pragma warning disable CA2000 // ownership passes to the DataMapping below, whose region the mapping cache disposes when the entry is replaced, evicted or removed
                region = MappedRegion.Map(fd.Fd, newCap, writable: true, PoolName.PathOf(obj));
#pragma warning restore CA2000
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

    /// <summary>With slot <paramref name="s"/> claimed: creates its next data segment, generation
    /// <paramref name="memGen"/> + 1 or later. An existing file of the pool's own (a member died while replacing this
    /// slot's memory) is unlinked and made again; one the kernel will not let this process unlink, or a stranger's
    /// file of another group or mode (its name can be seen in /dev/shm), is left alone and the next generation
    /// tried: the slot records whichever generation it got, so nothing but the name changes.</summary>
    private (SafeFd Fd, uint MemGen, string Obj) CreateLocked(int s, uint memGen)
    {
        SegmentAccess access = _control.Access;
        for (int tries = 0; tries < MaxDataNameTries; tries++)
        {
            memGen++;
            string obj = ObjectOf(s, memGen);
            SafeFd? fd = SegmentFile.TryCreateExclusive(obj, access);
            if (fd is null && SegmentFile.OwnershipOf(obj, access, out _) == SegmentOwnership.Pool
                && SegmentFile.TryUnlink(obj) is UnlinkOutcome.Removed or UnlinkOutcome.Missing)
            {
                fd = SegmentFile.TryCreateExclusive(obj, access);
            }

            if (fd is not null)
            {
                return (fd, memGen, obj);
            }
        }

        throw new PoolPermissionException($"pool '{Bare}': the names of slot {s}'s next {MaxDataNameTries} data segments ({PoolName.InstancePrefix(Bare, _control.Instance)}s{s}.g*) are all held by files this process cannot remove (made by a stranger, or by another member). Remove them as root or as their owner (`xmem gc`).", Errno.EEXIST);
    }

    /// <summary>With slot <paramref name="s"/> claimed and holding no CUDA memory: unlinks its data segment, drops
    /// this process's mapping and records no memory. Returns the bytes given back.</summary>
    internal long DropLocked(int s)
    {
        SlotRecord* r = &_slots[s];
        long cap = Volatile.Read(ref r->DataCapacity);
        Volatile.Write(ref r->DataCapacity, 0);
        if (cap > 0)
        {
            _ = SegmentFile.Unlink(ObjectOf(s, r->MemGen));
        }

        lock (_mappings.Gate)
        {
            _mappings.RemoveLocked(s);
        }

        r->Kind = LayoutConstants.KindNone;
        return cap;
    }

    /// <summary>Drops every cached mapping (at detach; guards still open keep theirs through their leases).</summary>
    internal void Clear()
    {
        lock (_mappings.Gate)
        {
            _mappings.ClearLocked();
        }
    }

    /// <summary>Unlinks data segments that no slot records (left by a process that died while replacing a slot's
    /// memory). A slot is looked at only while this process holds it taken (<see cref="SlotTable.TryTakeFree"/>), so
    /// no live acquirer is working on it.</summary>
    internal int RemoveOrphans(SlotTable slots)
    {
        string prefix = PoolName.InstancePrefix(Bare, _control.Instance) + "s";
        var bySlot = new Dictionary<int, List<(uint Gen, string File)>>();
        try
        {
            foreach (string path in Directory.EnumerateFiles(SharedMemoryDirectory.Path))
            {
                string file = Path.GetFileName(path);
                if (!file.StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }

                if (SegmentNames.TryParse(file, Bare, out SegmentName n) && n.Kind == SegmentKind.Data && n.Instance == _control.Instance
                    && (uint)n.Slot < (uint)_control.Capacity)
                {
                    if (!bySlot.TryGetValue(n.Slot, out var list))
                    {
                        bySlot[n.Slot] = list = [];
                    }

                    list.Add((n.MemGen, file));
                }
            }
        }
        catch (IOException)
        {
            return 0;
        }

        int removed = 0;
        foreach ((int s, var files) in bySlot)
        {
            if (!slots.TryTakeFree(s, out ulong w))
            {
                continue;
            }

            SlotRecord* r = &_slots[s];
            uint memGen = r->MemGen;
            bool hasMemory = Volatile.Read(ref r->DataCapacity) > 0;
            foreach ((uint g, string file) in files)
            {
                // Only the pool's own files: a stranger's file of a data segment's name is left alone.
                if (!(hasMemory && g == memGen) && SegmentFile.OwnershipOf(file, _control.Access, out _) == SegmentOwnership.Pool
                    && SegmentFile.TryUnlink(file) == UnlinkOutcome.Removed)
                {
                    removed++;
                }
            }

            slots.ReturnFree(s, w);
        }

        return removed;
    }
}
