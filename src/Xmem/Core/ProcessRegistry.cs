using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// The process table (docs/layout.md, "Process table" and "Liveness"): which entry is this process's, the entries'
/// states and identities, liveness through OFD locks, and the waiter bits of "Waiting for a free slot".
/// Invariants: an entry is alive exactly while some open file description holds the write lock on its liveness byte
/// (the kernel drops it when the holder dies, however it dies); "cannot tell" counts as alive. This process writes
/// only its own entry, and the entries it recovers while holding their lock. Entry <c>i</c>'s lock tag is i + 1.
/// </summary>
internal sealed unsafe class ProcessRegistry(ControlSegment control)
{
    private readonly ControlSegment _control = control;
    private readonly Lock _waitGate = new();
    private int _localWaiters;
    private int _channelWaiters;

    /// <summary>This process's entry; -1 while it has none (before attaching, after detaching).</summary>
    internal int Me { get; private set; } = -1;

    /// <summary>This process's lock tag in slot words and journals (entry + 1); 0 before it registered.</summary>
    internal int Tag { get; private set; }

    /// <summary>Serialises, within this process, recovery of dead entries with attaching and detaching.</summary>
    internal Lock RecoveryGate { get; } = new();

    internal ProcessEntry* Entry(int i) => &_control.Procs[i];

    /// <summary>Takes entry <paramref name="i"/>'s liveness lock; false when a live process (or a recoverer) has it.</summary>
    internal bool TryLockEntry(int i) => Libc.TryLockByte(_control.Fd.Fd, LayoutConstants.LivenessLockByte(i));

    internal void UnlockEntry(int i) => Libc.UnlockByte(_control.Fd.Fd, LayoutConstants.LivenessLockByte(i));

    internal bool IsFree(int i) => Volatile.Read(ref _control.Procs[i].State) == LayoutConstants.ProcessFree;

    /// <summary>True when any entry's liveness byte is locked by another open file description: one F_OFD_GETLK over
    /// the whole table answers it.</summary>
    internal static bool HasLiveProcess(SafeFd fd) =>
        Libc.IsRangeLockedByOther(fd.Fd, LayoutConstants.ProcessTableOffset, (long)LayoutConstants.MaxProcesses * LayoutConstants.ProcessEntrySize);

    /// <summary>With entry <paramref name="i"/>'s lock held: this process acts as entry i from here on.</summary>
    internal void Become(int i)
    {
        Me = i;
        Tag = i + 1;
    }

    /// <summary>Entry i is Registering: a death from here on leaves a non-free entry, which recovery frees together
    /// with its holdings segment.</summary>
    internal void MarkRegistering() => Volatile.Write(ref _control.Procs[Me].State, LayoutConstants.ProcessRegistering);

    /// <summary>Gives back an entry this process was registering (its lock is still held; the caller unlocks).</summary>
    internal void AbandonRegistration()
    {
        Volatile.Write(ref _control.Procs[Me].State, LayoutConstants.ProcessFree);
        Me = -1;
        Tag = 0;
    }

    /// <summary>Fills in this process's identity and publishes the entry Active (a release store, last).</summary>
    internal void Activate()
    {
        int i = Me;
        ProcessEntry* e = &_control.Procs[i];
        e->Pid = ProcessInfo.OwnPid;
        e->StartTime = ProcessInfo.OwnStartTime;
        e->Waiters = 0;
        e->ChannelWaiters = 0;
        Interlocked.And(ref _control.Header->WaitMask[i >> 6], ~(1UL << (i & 63)));
        e->Incarnation++;
        string comm = ProcessInfo.OwnComm;
        Span<byte> commBytes = new(e->Comm, 16);
        commBytes.Clear();
        System.Text.Encoding.UTF8.GetBytes(comm.AsSpan(0, Math.Min(comm.Length, 15)), commBytes);
        Volatile.Write(ref e->State, LayoutConstants.ProcessActive);
    }

    /// <summary>The last step of detaching (the entry already marked free, its holdings unlinked): drops this
    /// process's liveness lock; from here on another process may take the entry.</summary>
    internal void Leave()
    {
        UnlockEntry(Me);
        Me = -1;
    }

    /// <summary>A dead entry's waiters died with it: its bit in WaitMask goes, exactly (no other process writes it).</summary>
    internal void ClearWaiters(int i)
    {
        Interlocked.And(ref _control.Header->WaitMask[i >> 6], ~(1UL << (i & 63)));
        Volatile.Write(ref _control.Procs[i].Waiters, 0);
        Volatile.Write(ref _control.Procs[i].ChannelWaiters, 0);
    }

    /// <summary>Frees a recovered entry (its lock held by this process).</summary>
    internal void MarkFree(int i) => Volatile.Write(ref _control.Procs[i].State, LayoutConstants.ProcessFree);

    /// <summary>This process's incarnation counter, as channel claims record it.</summary>
    internal ushort Incarnation => (ushort)Volatile.Read(ref _control.Procs[Me].Incarnation);

    /// <summary>True while the process that claimed with (<paramref name="tag"/>, <paramref name="incarnation"/>) is
    /// alive. "Cannot tell" counts as alive.</summary>
    internal bool IsClaimerAlive(int tag, ushort incarnation)
    {
        int i = tag - 1;
        if ((uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        ProcessEntry* e = &_control.Procs[i];
        if ((ushort)Volatile.Read(ref e->Incarnation) != incarnation || Volatile.Read(ref e->State) == LayoutConstants.ProcessFree)
        {
            return false;
        }

        return i == Me || Libc.IsByteLockedByOther(_control.Fd.Fd, LayoutConstants.LivenessLockByte(i));
    }

    /// <summary>True when entry <paramref name="i"/> shows threads waiting in channels and its process is alive
    /// ("cannot tell" is alive): whether a channel's blocked bit of entry i is counted. One lock query per call, so
    /// for readers of the counters only.</summary>
    internal bool HasLiveChannelWaiters(int i)
    {
        if ((uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        ProcessEntry* e = &_control.Procs[i];
        return Volatile.Read(ref e->ChannelWaiters) > 0 && Volatile.Read(ref e->State) != LayoutConstants.ProcessFree
            && (i == Me || Libc.IsByteLockedByOther(_control.Fd.Fd, LayoutConstants.LivenessLockByte(i)));
    }

    /// <summary>Counts a thread of this process waiting in a channel in (+1) or out (-1), shown in its entry's
    /// ChannelWaiters: a reader counts a channel's blocked bit of this entry only while it is above zero, so a bit that
    /// a dead owner left in a channel it never reopens is not shown for the entry's next owner.</summary>
    internal void AddChannelWaiter(int delta)
    {
        lock (_waitGate)
        {
            _channelWaiters += delta;
            int me = Me;
            if ((uint)me < LayoutConstants.MaxProcesses) // -1 once detached
            {
                Volatile.Write(ref _control.Procs[me].ChannelWaiters, _channelWaiters);
            }
        }
    }

    /// <summary>Counts a waiting thread of this process in (+1) or out (-1). The process's count is written to its
    /// entry (for display) and its bit in WaitMask is set on 0 → 1 and cleared on 1 → 0, under a process-local lock;
    /// the bit's atomic OR is a full fence, so a releaser that increments the epoch after it sees the bit.</summary>
    internal void AddLocalWaiter(int delta)
    {
        lock (_waitGate)
        {
            int me = Me;
            int before = _localWaiters;
            _localWaiters += delta;
            Volatile.Write(ref _control.Procs[me].Waiters, _localWaiters);
            ulong bit = 1UL << (me & 63);
            if (before == 0 && _localWaiters > 0)
            {
                Interlocked.Or(ref _control.Header->WaitMask[me >> 6], bit);
            }
            else if (before > 0 && _localWaiters == 0)
            {
                Interlocked.And(ref _control.Header->WaitMask[me >> 6], ~bit);
            }
        }
    }
}
