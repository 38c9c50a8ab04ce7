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

    /// <summary>Reclaims every entry whose process is dead. Returns how many entries were reclaimed.</summary>
    internal int ReclaimDeadProcesses()
    {
        int reclaimed = 0;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            if (i != _registry.Me && !_registry.IsFree(i) && TryRecoverEntry(i))
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
        if (i == _registry.Me || (uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        lock (_registry.RecoveryGate)
        {
            if (_registry.Me < 0 || _registry.IsFree(i) && !_slots.HasLockedSlots(i + 1))
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
                _slots.RepairLocked(s, tag, holdings);
            }

            if (holdings is not null)
            {
                _slots.ReleaseAll(holdings, tag);
            }

            _registry.ClearWaiters(i);
            if (fileExists)
            {
                // Denied when another member made it (sticky /dev/shm): the next owner of the entry reuses it.
                _ = SegmentFile.TryUnlink(Holdings.ObjectName(_control, i));
            }

            _registry.MarkFree(i);
            _ = _data.RemoveOrphans(_slots);
        }
        finally
        {
            dead?.Region.Dispose();
        }
    }
}
