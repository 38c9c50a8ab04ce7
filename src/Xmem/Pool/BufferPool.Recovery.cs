using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem;

// Crash recovery (docs/layout.md, "Crash rules"). A process-table entry is alive exactly while some open file
// description holds the write lock on its liveness byte; the kernel drops that lock when the process dies, however it
// dies. Whoever takes the lock of a non-free entry owns its recovery, and impersonates the dead process (same lock
// tag, same holdings) so that recovery follows the very protocol of a normal release: a recoverer that dies half-way
// leaves a state the next recoverer finishes. A process whose state cannot be told (the lock query fails) is alive.
public sealed unsafe partial class BufferPool
{
    /// <summary>Reclaims every entry whose process is dead. Returns how many entries were reclaimed.</summary>
    internal int ReclaimDeadProcesses()
    {
        int reclaimed = 0;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            if (i != _me && Volatile.Read(ref _procs[i].State) != LayoutConstants.ProcessFree && TryRecoverEntry(i))
            {
                reclaimed++;
            }
        }

        return reclaimed;
    }

    /// <summary>Recovers entry <paramref name="i"/> if its process is dead. False when it is alive (or being
    /// recovered by another process).</summary>
    internal bool TryRecoverEntry(int i)
    {
        if (i == _me || (uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        lock (_recoveryGate)
        {
            if (_me < 0 || Volatile.Read(ref _procs[i].State) == LayoutConstants.ProcessFree && !HasLockedSlots(i + 1))
            {
                return false;
            }

            if (!Libc.TryLockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(i)))
            {
                return false; // alive, or another process is recovering it
            }

            try
            {
                RecoverEntryLocked(i);
            }
            finally
            {
                Libc.UnlockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(i));
            }

            return true;
        }
    }

    private bool HasLockedSlots(int tag)
    {
        for (int s = 0; s < _capacity; s++)
        {
            if (SlotWord.Owner(Volatile.Read(ref _slots[s].Word)) == tag)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>With entry <paramref name="i"/>'s liveness lock held by this descriptor: repairs the slots its
    /// process left locked, releases the references it held, takes off its waiters, and frees the entry.</summary>
    private void RecoverEntryLocked(int i)
    {
        int tag = i + 1;
        string obj = PoolName.HoldingsObject(_bare, _instance, i);
        MappedRegion? region = null;
        ulong* holdings = null;
        bool ownFile = false;
        SafeFd? fd = TryOpenHoldings(obj);
        if (fd is not null)
        {
            using (fd)
            {
                ownFile = true;
                long size = SegmentFile.SizeOf(fd, obj);
                if (size >= 8L * _capacity)
                {
                    region = MappedRegion.Map(fd.Fd, 8L * _capacity, writable: true, PoolName.PathOf(obj));
                    holdings = (ulong*)region.Address;
                }
            }
        }

        try
        {
            for (int s = 0; s < _capacity; s++)
            {
                RepairLockedSlot(s, tag, holdings);
            }

            if (holdings is not null)
            {
                ReleaseAllHoldings(i, holdings);
            }

            ProcessEntry* e = &_procs[i];
            // Its waiters died with it: its bit in WaitMask goes, exactly (no other process writes that bit).
            Interlocked.And(ref _header->WaitMask[i >> 6], ~(1UL << (i & 63)));
            Volatile.Write(ref e->Waiters, 0);

            if (ownFile)
            {
                // Denied when another member made it (sticky /dev/shm): the next owner of the entry reuses it.
                _ = SegmentFile.TryUnlink(obj);
            }

            Volatile.Write(ref e->State, LayoutConstants.ProcessFree);
            RemoveOrphanDataSegments();
        }
        finally
        {
            region?.Dispose();
        }
    }

    /// <summary>Opens a dead entry's holdings segment; null when there is none, or when the file of that name is not
    /// the pool's (another group or mode, or unreadable): then the dead process never made its own (it would have
    /// taken another entry), and a stranger's file is neither trusted nor unlinked.</summary>
    private SafeFd? TryOpenHoldings(string obj)
    {
        SafeFd? fd;
        try
        {
            fd = SegmentFile.TryOpen(obj, writable: true);
        }
        catch (PoolPermissionException)
        {
            return null;
        }

        if (fd is not null && !SegmentFile.IsPoolFile(fd, _access, obj))
        {
            fd.Dispose();
            return null;
        }

        return fd;
    }

    /// <summary>Finishes or rolls back the locked section that a dead process (tag) left on slot <paramref name="s"/>.</summary>
    private void RepairLockedSlot(int s, int tag, ulong* holdings)
    {
        SlotRecord* r = &_slots[s];
        ulong w = Volatile.Read(ref r->Word);
        if (SlotWord.Owner(w) != tag)
        {
            return;
        }

        // A journal naming the dead owner with the word unchanged since it was saved: the count was never published,
        // so the holding goes back. With the word changed, everything but the unlock was done: keep it. No journal:
        // nothing was done yet, or everything but the unlock.
        if (Volatile.Read(ref r->JournalOwner) == (uint)tag)
        {
            if (holdings is not null && w == r->JournalWord)
            {
                Volatile.Write(ref holdings[s], r->JournalHoldings);
            }

            Volatile.Write(ref r->JournalOwner, 0u);
        }

        uint state = SlotWord.State(w);
        if (state == SlotWord.Live)
        {
            Volatile.Write(ref r->Word, SlotWord.WithOwner(w, 0));
        }
        else
        {
            // Free (a release to zero that was not unlocked), or Acquiring (an acquire that never published): Free.
            // The memory record is consistent (capacity is set only once the segment exists); orphaned segments are
            // removed below.
            Volatile.Write(ref r->Word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
            AfterFreed(s);
        }
    }

    /// <summary>Releases every reference recorded in <paramref name="holdings"/> for entry <paramref name="i"/>.</summary>
    private void ReleaseAllHoldings(int i, ulong* holdings)
    {
        int tag = i + 1;
        for (int s = 0; s < _capacity; s++)
        {
            ulong h = Volatile.Read(ref holdings[s]);
            if (Holding.Count(h) > 0)
            {
                _ = ReleaseAttributed(s, Holding.Gen(h), Holding.Count(h), holdings, tag, forget: false);
            }
        }
    }

    /// <summary>Unlinks data segments that no slot records (left by a process that died while replacing a slot's
    /// memory). A slot is looked at only while this process holds it claimed, so no live acquirer is working on it.</summary>
    internal int RemoveOrphanDataSegments()
    {
        string prefix = PoolName.InstancePrefix(_bare, _instance) + "s";
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

                string[] parts = file[prefix.Length..].Split(".g");
                if (parts.Length == 2 && int.TryParse(parts[0], out int slot) && uint.TryParse(parts[1], out uint g) && (uint)slot < (uint)_capacity)
                {
                    if (!bySlot.TryGetValue(slot, out var list))
                    {
                        bySlot[slot] = list = [];
                    }

                    list.Add((g, file));
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
            SlotRecord* r = &_slots[s];
            ulong w = Volatile.Read(ref r->Word);
            if (SlotWord.State(w) != SlotWord.Free || SlotWord.Owner(w) != 0
                || Interlocked.CompareExchange(ref r->Word, SlotWord.Make(0, SlotWord.Acquiring, _tag, SlotWord.Gen(w)), w) != w)
            {
                continue;
            }

            uint memGen = r->MemGen;
            bool hasMemory = Volatile.Read(ref r->DataCapacity) > 0;
            foreach ((uint g, string file) in files)
            {
                // Only the pool's own files: a stranger's file of a data segment's name is left alone.
                if (!(hasMemory && g == memGen) && SegmentFile.OwnershipOf(file, _access, out _) == SegmentOwnership.Pool
                    && SegmentFile.TryUnlink(file) == UnlinkOutcome.Removed)
                {
                    removed++;
                }
            }

            Volatile.Write(ref r->Word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
            Interlocked.Or(ref _hints[s >> 6], 1UL << (s & 63));
        }

        return removed;
    }
}
