using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// One pool instance's core, composed once: the control segment and the types that implement its protocols, plus
/// this process's membership (its process-table entry and holdings segment). Attaching takes a free entry in the
/// order that keeps every death recoverable: the entry's liveness byte is locked first (so a process that dies at any
/// later point is seen as dead), the entry marked Registering, its holdings name checked, and only then the entry
/// published Active (docs/layout.md, "Process table"); the holdings segment itself is made before the first reference
/// this process holds (<see cref="OwnHoldings"/>).
/// </summary>
internal sealed unsafe class PoolCore
{
    internal PoolCore(ControlSegment control)
    {
        Control = control;
        Lease = new PoolLease(control.Region);
        Registry = new ProcessRegistry(control);
        Own = new OwnHoldings(control, Registry, Lease);
        Hints = new FreeHints(control);
        Slots = new SlotTable(control, Hints, Registry, Own);
        Data = new DataSegments(control);
        Recovery = new Recovery(control, Registry, Slots, Data);
        Blocking = new BlockingCalls(control.Bare, &control.Header->FreeEpoch);
        Watchers = new WordWatchers(Blocking);
        FreeEpoch = new FreeEpochWord(this);
    }

    internal ControlSegment Control { get; }
    internal PoolLease Lease { get; }
    internal ProcessRegistry Registry { get; }
    internal FreeHints Hints { get; }
    internal SlotTable Slots { get; }
    internal DataSegments Data { get; }
    internal Recovery Recovery { get; }
    internal BlockingCalls Blocking { get; }

    /// <summary>This process's holdings, made on first use.</summary>
    internal OwnHoldings Own { get; }

    /// <summary>This process's asynchronous waits on the pool's words, and their threads.</summary>
    internal WordWatchers Watchers { get; }

    /// <summary>FreeEpoch, as the asynchronous waits for a free slot sleep on it.</summary>
    internal FreeEpochWord FreeEpoch { get; }


    internal string Bare => Control.Bare;

    /// <summary>Takes a free process-table entry (Open).</summary>
    internal void Attach()
    {
        int skipped = 0;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            if (!Registry.TryLockEntry(i))
            {
                continue; // a live process has it
            }

            if (RegisterEntry(i))
            {
                return;
            }

            skipped++; // its holdings name is held by a file the pool did not make: another entry will do
        }

        if (skipped > 0)
        {
            throw new PoolPermissionException($"pool '{Bare}': no process entry could be taken; {skipped} free entries have their holdings segment name ({PoolName.InstancePrefix(Bare, Control.Instance)}p<i>) held by files this pool did not make (another group or mode). Remove those files as root or as their owner.", Errno.EEXIST);
        }

        throw new TooManyProcessesException($"pool '{Bare}' already has {LayoutConstants.MaxProcesses} attached processes; close the pool in some of them before attaching more.");
    }

    /// <summary>Registers this process in entry <paramref name="i"/>, whose liveness byte this descriptor holds.
    /// Returns false (entry freed and unlocked again) when the entry's holdings name is held by a file the pool did
    /// not make.</summary>
    internal bool RegisterEntry(int i)
    {
        try
        {
            lock (Registry.RecoveryGate)
            {
                // We hold entry i's lock, so we act as entry i from here on: recovering its dead previous owner
                // (same tag), and any other dead entry whose locked slot the recovery meets.
                Registry.Become(i);
                if (!Registry.IsFree(i))
                {
                    Recovery.RecoverEntryLocked(i); // its previous owner died without detaching
                }

                Registry.MarkRegistering();
                if (!OwnHoldings.NameIsUsable(Control, i))
                {
                    Registry.AbandonRegistration();
                    Registry.UnlockEntry(i);
                    return false;
                }

                if (!SegmentFile.SurelyCanGiveGroup(Control.Access))
                {
                    _ = Own.Words; // made now, so that a process that cannot give files the pool's group fails here
                }

                Registry.Activate(); // otherwise the holdings segment is made on first use (OwnHoldings)
            }

            return true;
        }
        catch
        {
            if (Registry.Me == i)
            {
                Registry.AbandonRegistration();
            }

            Registry.UnlockEntry(i);
            throw;
        }
    }

    /// <summary>With the recovery gate held and this process attached: releases every reference its guards still hold
    /// (as if it had died: Dispose).</summary>
    internal void ReleaseOwnHoldingsLocked()
    {
        ulong* own = Own.WordsIfMade;
        if (own is not null)
        {
            Recovery.ReleaseAll(own, Registry.Tag); // none made: this process never held a reference
        }
    }

    /// <summary>With the recovery gate held and this process attached: frees its entry, unlinks its holdings segment
    /// if it made one (before the unlock: after it, a new owner of the entry makes a file of the same name) and
    /// unlocks.</summary>
    internal void LeaveEntryLocked()
    {
        int me = Registry.Me;
        Registry.MarkFree(me);
        if (Own.Made)
        {
            _ = SegmentFile.Unlink(Holdings.ObjectName(Control, me));
        }

        Registry.Leave();
    }
}
