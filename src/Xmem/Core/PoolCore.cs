using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// One pool instance's core, composed once: the control segment and the types that implement its protocols, plus
/// this process's membership (its process-table entry and holdings segment). Attaching takes a free entry in the
/// order that keeps every death recoverable: the entry's liveness byte is locked first (so a process that dies at any
/// later point is seen as dead), the entry marked Registering, the holdings segment made, and only then the entry
/// published Active (docs/layout.md, "Process table").
/// </summary>
internal sealed unsafe class PoolCore
{
    internal PoolCore(ControlSegment control)
    {
        Control = control;
        Lease = new PoolLease(control.Region);
        Registry = new ProcessRegistry(control);
        Hints = new FreeHints(control);
        Slots = new SlotTable(control, Hints, Registry);
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

    /// <summary>This process's asynchronous waits on the pool's words, and their threads.</summary>
    internal WordWatchers Watchers { get; }

    /// <summary>FreeEpoch, as the asynchronous waits for a free slot sleep on it.</summary>
    internal FreeEpochWord FreeEpoch { get; }

    /// <summary>This process's holdings (null until attached): <c>OwnHoldings[s]</c> is its holding of slot s.</summary>
    internal ulong* OwnHoldings => Slots.OwnHoldings;

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

        throw new TooManyProcessesException($"pool '{Bare}' already has {LayoutConstants.MaxProcesses} attached processes; detach some (Dispose) before attaching more.");
    }

    /// <summary>Registers this process in entry <paramref name="i"/>, whose liveness byte this descriptor holds.
    /// Returns false (entry freed and unlocked again) when the entry's holdings name is held by a file the pool did
    /// not make.</summary>
    internal bool RegisterEntry(int i)
    {
        bool madeHoldings = false;
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
                Holdings? own = Holdings.CreateOwn(Control, i, out madeHoldings);
                if (own is null)
                {
                    Registry.AbandonRegistration();
                    Registry.UnlockEntry(i);
                    return false;
                }

                Lease.AdoptHoldings(own.Region);
                Slots.OwnHoldings = own.Words;
                Registry.Activate();
            }

            return true;
        }
        catch
        {
            if (Registry.Me == i)
            {
                Registry.AbandonRegistration();
                if (madeHoldings)
                {
                    _ = SegmentFile.Unlink(Holdings.ObjectName(Control, i));
                }
            }

            Registry.UnlockEntry(i);
            throw;
        }
    }

    /// <summary>With the recovery gate held and this process attached: releases every reference its guards still hold
    /// (as if it had died: Dispose).</summary>
    internal void ReleaseOwnHoldingsLocked() => Recovery.ReleaseAll(OwnHoldings, Registry.Tag);

    /// <summary>With the recovery gate held and this process attached: frees its entry, unlinks its holdings segment
    /// (before the unlock: after it, a new owner of the entry makes a file of the same name) and unlocks.</summary>
    internal void LeaveEntryLocked()
    {
        int me = Registry.Me;
        Registry.MarkFree(me);
        _ = SegmentFile.Unlink(Holdings.ObjectName(Control, me));
        Registry.Leave();
    }
}
