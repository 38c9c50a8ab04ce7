using System.Diagnostics;
using System.Runtime.CompilerServices;
using Xmem.Core;
using Xmem.Layout;

namespace Xmem.Channels;

/// <summary>
/// A channel's counters in its header (docs/layout.md, "ChannelHeader", bytes 128..255): messages sent and received,
/// waits for room and for messages, the time senders spent waiting, and which processes have a thread waiting now.
/// Numbers to show, never an input to the protocol, so every update is one atomic add (or OR/AND) with no ordering
/// requirement — .NET has no weaker read-modify-write than <c>Interlocked</c>, <c>lock xadd</c> on x64 — on a path that
/// already does the counted thing. The send and receive hot paths carry one call each (<see cref="CountSent"/>,
/// <see cref="CountReceived"/>); the wait bookkeeping runs only on the path that waits anyway.
/// The blocked bits follow WaitMask: this process's own count of waiting threads per channel view, under a
/// process-local lock, sets its bit on 0 → 1 and clears it on 1 → 0, so a dead process leaves at most its bit, which
/// readers ignore once its entry is dead or shows no channel waiters (ProcessEntry.ChannelWaiters).
/// </summary>
internal sealed unsafe class ChannelCounters(ChannelHeader* header)
{
    private readonly Lock _gate = new();
    private int _waitingSenders;
    private int _waitingReceivers;

    /// <summary>One message put into a cell.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void CountSent() => Interlocked.Increment(ref header->Sent);

    /// <summary>One message taken out of a cell.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void CountReceived() => Interlocked.Increment(ref header->Received);

    /// <summary>A send of this process found its ring full and starts to wait. Returns the clock reading the wait
    /// is measured from (taken here, on the path that waits, never on a send that finds room).</summary>
    internal long BeginSendWait(ProcessRegistry registry)
    {
        Interlocked.Increment(ref header->SendWaits);
        Enter(ref _waitingSenders, header->BlockedSenders, registry);
        return Stopwatch.GetTimestamp();
    }

    /// <summary>After each sleep of a waiting send: adds the time since <paramref name="since"/> to the senders'
    /// waiting time, so that a send waiting for long shows in it while it waits (at most one sleep, 100 ms, late).
    /// Returns the clock reading the rest of the wait is measured from.</summary>
    internal long AccountSendWait(long since)
    {
        long now = Stopwatch.GetTimestamp();
        AddBlocked(since, now);
        return now;
    }

    /// <summary>The wait, measured from <paramref name="since"/> on, ended (room found, timed out, or failed).</summary>
    internal void EndSendWait(ProcessRegistry registry, long since)
    {
        AddBlocked(since, Stopwatch.GetTimestamp());
        Leave(ref _waitingSenders, header->BlockedSenders, registry);
    }

    private void AddBlocked(long from, long to)
    {
        long ns = (long)Stopwatch.GetElapsedTime(from, to).TotalNanoseconds;
        Interlocked.Add(ref header->SendBlockedNs, (ulong)Math.Max(0, ns));
    }

    /// <summary>A receive of this process found its ring empty and starts to wait.</summary>
    internal void BeginReceiveWait(ProcessRegistry registry)
    {
        Interlocked.Increment(ref header->ReceiveWaits);
        Enter(ref _waitingReceivers, header->BlockedReceivers, registry);
    }

    /// <summary>The receive's wait ended.</summary>
    internal void EndReceiveWait(ProcessRegistry registry) => Leave(ref _waitingReceivers, header->BlockedReceivers, registry);

    /// <summary>At this entry's first open of the channel: a bit of entry <paramref name="entry"/> is a dead previous
    /// owner's (this process has no thread waiting in the channel yet).</summary>
    internal void ClearStaleBits(int entry)
    {
        ulong keep = ~(1UL << (entry & 63));
        _ = Interlocked.And(ref header->BlockedSenders[entry >> 6], keep);
        _ = Interlocked.And(ref header->BlockedReceivers[entry >> 6], keep);
    }

    private void Enter(ref int local, ulong* mask, ProcessRegistry registry)
    {
        int me = registry.Me;
        if ((uint)me >= LayoutConstants.MaxProcesses)
        {
            return; // detached meanwhile (the pool was closed under a wait that had not counted in yet): no bit of ours
        }

        lock (_gate)
        {
            if (local++ == 0)
            {
                _ = Interlocked.Or(ref mask[me >> 6], 1UL << (me & 63));
            }
        }

        registry.AddChannelWaiter(+1);
    }

    private void Leave(ref int local, ulong* mask, ProcessRegistry registry)
    {
        int me = registry.Me;
        if ((uint)me >= LayoutConstants.MaxProcesses)
        {
            return; // detached meanwhile (the pool was closed under a wait that had not counted in yet): no bit of ours
        }

        lock (_gate)
        {
            if (--local == 0)
            {
                _ = Interlocked.And(ref mask[me >> 6], ~(1UL << (me & 63)));
            }
        }

        registry.AddChannelWaiter(-1);
    }

    /// <summary>The counters now; blocked processes are the bits whose entry <paramref name="waiting"/> confirms
    /// (alive, with channel waiters).</summary>
    internal ChannelCounterValues Read(Func<int, bool> waiting) => new(
        Volatile.Read(ref header->Sent),
        Volatile.Read(ref header->Received),
        Volatile.Read(ref header->SendWaits),
        Volatile.Read(ref header->ReceiveWaits),
        Volatile.Read(ref header->SendBlockedNs),
        BlockedMask.Count(header->BlockedSenders, waiting),
        BlockedMask.Count(header->BlockedReceivers, waiting));
}

/// <summary>A reading of a channel's counters: <see cref="BlockedSenders"/> and <see cref="BlockedReceivers"/> count
/// processes with a thread waiting.</summary>
internal readonly record struct ChannelCounterValues(ulong Sent, ulong Received, ulong SendWaits, ulong ReceiveWaits, ulong SendBlockedNs, int BlockedSenders, int BlockedReceivers);
