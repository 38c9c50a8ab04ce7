using System.Runtime.CompilerServices;
using Xmem.Layout;

namespace Xmem.Core;

/// <summary>
/// The pool's counters in its header (docs/layout.md, "PoolHeader", Counters): acquires, acquire waits, recoveries of
/// dead processes, orphaned segments removed. Numbers to show, never an input to the protocol: nothing decides
/// anything by them, so each update is a single atomic add with no ordering requirement (.NET has no weaker
/// read-modify-write than <c>Interlocked.Add</c>, which is <c>lock xadd</c> on x64), made on a path that already does
/// the counted thing, and a reader's plain 8-byte load is enough. A process killed at any instruction leaves a counter
/// counted or not, never torn. Each update is one call, so the hot paths carry one line for them.
/// </summary>
internal readonly unsafe struct PoolCounters(PoolHeader* header)
{
    /// <summary>One slot claimed (every kind of acquire).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void CountAcquire() => Interlocked.Increment(ref header->Acquires);

    /// <summary>An acquire found the pool full and starts to wait.</summary>
    internal void CountAcquireWait() => Interlocked.Increment(ref header->AcquireWaits);

    /// <summary>A dead process's entry was recovered.</summary>
    internal void CountRecovery() => Interlocked.Increment(ref header->Recoveries);

    /// <summary><paramref name="n"/> orphaned data segments were unlinked.</summary>
    internal void CountOrphansRemoved(int n)
    {
        if (n > 0)
        {
            Interlocked.Add(ref header->OrphansRemoved, (ulong)n);
        }
    }

    /// <summary>The four counters now (plain loads: each is one aligned 8-byte word).</summary>
    internal PoolCounterValues Read() => new(
        Volatile.Read(ref header->Acquires),
        Volatile.Read(ref header->AcquireWaits),
        Volatile.Read(ref header->Recoveries),
        Volatile.Read(ref header->OrphansRemoved));
}

/// <summary>A reading of <see cref="PoolCounters"/>.</summary>
internal readonly record struct PoolCounterValues(ulong Acquires, ulong AcquireWaits, ulong Recoveries, ulong OrphansRemoved);
