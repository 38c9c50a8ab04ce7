using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// Crash recovery (docs/layout.md, "Crash rules"). A process-table entry is alive exactly while some open file
/// description holds the write lock on its liveness byte; the kernel drops that lock when the process dies, however it
/// dies. Whoever takes the lock of a non-free entry owns its recovery, and impersonates the dead process (same lock
/// tag, same holdings) so that recovery follows the very protocol of a normal release: a recoverer that dies half-way
/// leaves a state the next recoverer finishes. A process whose state cannot be told (the lock query fails) is alive.
/// </summary>
internal sealed unsafe class Recovery
{
    private readonly ControlSegment _control;
    private readonly ProcessRegistry _registry;
    private readonly SlotTable _slots;
    private readonly DataSegments _data;

    internal Recovery(ControlSegment control, ProcessRegistry registry, SlotTable slots, DataSegments data)
    {
        _control = control;
        _registry = registry;
        _slots = slots;
        _data = data;
        slots.UseRecovery(this);
    }

    /// <summary>Entries this thread has recovered (ever): <see cref="ReclaimDeadProcesses"/> counts by it, so that an
    /// entry recovered inside another's recovery (a release that meets a slot locked by a second dead process
    /// recovers that one first) is counted too.</summary>
    [ThreadStatic]
    private static int t_recovered;

    /// <summary>Reclaims every entry whose process is dead. Returns how many entries were reclaimed.</summary>
    internal int ReclaimDeadProcesses()
    {
        int before = t_recovered;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            if (i != _registry.Me && !_registry.IsFree(i))
            {
                _ = TryRecoverEntry(i);
            }
        }

        return t_recovered - before;
    }

    /// <summary>Recovers entry <paramref name="i"/> if its process is dead. False when it is alive (or being
    /// recovered by another process).</summary>
    internal bool TryRecoverEntry(int i)
    {
        if (i == _registry.Me || (uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        lock (_registry.RecoveryGate)
        {
            if (_registry.Me < 0 || _registry.IsFree(i) && !HasLockedSlots(i + 1))
            {
                return false;
            }

            if (!_registry.TryLockEntry(i))
            {
                return false; // alive, or another process is recovering it
            }

            try
            {
                RecoverEntryLocked(i);
                t_recovered++;
            }
            finally
            {
                _registry.UnlockEntry(i);
            }

            return true;
        }
    }

    /// <summary>With entry <paramref name="i"/>'s liveness lock held by this descriptor (and the recovery gate):
    /// repairs the slots its process left locked, releases the references it held, takes off its waiters, and frees
    /// the entry.</summary>
    internal void RecoverEntryLocked(int i)
    {
        int tag = i + 1;
        Holdings? dead = Holdings.OpenDead(_control, i, out bool fileExists);
        try
        {
            ulong* holdings = dead is null ? null : dead.Words;
            for (int s = 0; s < _control.Capacity; s++)
            {
                RepairLocked(s, tag, holdings);
            }

            if (holdings is not null)
            {
                ReleaseAll(holdings, tag);
            }

            _registry.ClearWaiters(i);
            if (fileExists)
            {
                // Denied when another member made it (sticky /dev/shm): the next owner of the entry reuses it.
                _ = SegmentFile.TryUnlink(Holdings.ObjectName(_control, i));
            }

            _registry.MarkFree(i);
            _control.Counters.CountRecovery();
            _control.Counters.CountOrphansRemoved(_data.RemoveOrphans(_slots));
        }
        finally
        {
            dead?.Region.Dispose();
        }
    }

    /// <summary>True when some slot is locked by entry tag <paramref name="tag"/>.</summary>
    /// <summary>Releases every reference recorded in <paramref name="holdings"/> for entry tag <paramref name="tag"/>,
    /// as for a dead process: a dead entry's recovery, and this process's own detach.</summary>
    internal void ReleaseAll(ulong* holdings, int tag)
    {
        for (int s = 0; s < _control.Capacity; s++)
        {
            ulong h = Volatile.Read(ref holdings[s]);
            if (Holding.Count(h) > 0)
            {
                _ = _slots.ReleaseAttributed(s, Holding.Gen(h), Holding.Count(h), holdings, tag, forget: false);
            }
        }
    }

    private bool HasLockedSlots(int tag)
    {
        for (int s = 0; s < _control.Capacity; s++)
        {
            if (SlotWord.Owner(Volatile.Read(ref _slots.Record(s)->Word)) == tag)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Finishes or rolls back the locked section that a dead process (<paramref name="tag"/>) left on slot
    /// <paramref name="s"/>; <paramref name="holdings"/> is its holdings segment, or null when it has none.</summary>
    private void RepairLocked(int s, int tag, ulong* holdings)
    {
        SlotRecord* r = _slots.Record(s);
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
            // removed by the recovery that called this.
            Volatile.Write(ref r->Word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
            _slots.AfterFreed(s);
        }
    }
}
