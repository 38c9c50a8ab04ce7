using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// Removes stale pools — not persistent, no live process — when this process creates or opens a pool, so that the
/// segments of pools whose processes were all killed do not wait for <c>xmem gc</c> (docs/layout.md, "Removal"). At
/// most one sweep per <see cref="IntervalMs"/> per process (a monotonic clock), never on a hot path, and never an
/// error of its caller. Each pool is decided by the pool's own stale removal under its removal lock; a pool being
/// created has entry 0 locked from before it has a name, so it is alive to the sweep; a pool that does not look like
/// one of this layout is left to <c>xmem gc</c>. <c>XMEM_STALE_SWEEP=0</c> turns the sweep off (for tools and tests
/// that look at a stale pool before removing it).
/// </summary>
internal static class StalePoolSweep
{
    /// <summary>The shortest time between two sweeps of one process.</summary>
    internal const long IntervalMs = 5000;

    private static long s_nextMs = long.MinValue;

    /// <summary>Sweeps unless this process swept less than <see cref="IntervalMs"/> ago (or another thread is
    /// sweeping now), leaving <paramref name="skip"/> — the pool the caller creates or opens — to the caller.</summary>
    internal static void MaybeRun(string skip)
    {
        long now = Environment.TickCount64;
        long next = Volatile.Read(ref s_nextMs);
        // The CAS elects one thread per interval; the others go on at once.
        if (now < next || Interlocked.CompareExchange(ref s_nextMs, now + IntervalMs, next) != next)
        {
            return;
        }

        if (Environment.GetEnvironmentVariable("XMEM_STALE_SWEEP") == "0")
        {
            return;
        }

        try
        {
            _ = Run(skip);
        }
        catch (Exception)
        {
            // Not the caller's error: a pool the sweep cannot decide on is left to `xmem gc`.
        }
    }

    /// <summary>One sweep; returns how many pools it removed.</summary>
    internal static int Run(string skip)
    {
        int removed = 0;
        // A name that may be a pool's or another pool's object is a candidate: LooksStale reads its header.
        foreach (string bare in SegmentNames.Pools(SharedMemoryDirectory.ListObjects(), isControlSegment: static _ => true, objects: null))
        {
            if (bare == skip)
            {
                continue;
            }

            try
            {
                // The cheap look first (no lock taken, nothing written), so a pool in use is never marked Removing.
                if (PoolRemoval.LooksStale(bare) && PoolRemoval.TryRemoveStale(bare, out _))
                {
                    removed++;
                }
            }
            catch (Exception)
            {
                // Another user's pool (permission denied), or one removed meanwhile: not ours to decide.
            }
        }

        return removed;
    }
}
