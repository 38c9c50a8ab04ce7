using Xmem.Interop;

namespace Xmem.Core;

/// <summary>
/// Waiting for a free slot (docs/layout.md, "Waiting for a free slot"): a waiter sleeps on the header's FreeEpoch
/// futex word, and a release makes the wake call only when some process has a waiter. Each process keeps its own
/// count of waiting threads and shows "I have waiters" as its bit in the header's WaitMask, one atomic that recovery
/// clears exactly for a dead process. A waiter reads the epoch before it looks for a slot, so a release after the
/// look changes the epoch and the sleep returns at once.
/// </summary>
internal static unsafe class FreeSlotWait
{
    /// <summary>How often a waiter reclaims dead processes' slots at most (it also wakes this often to look).</summary>
    internal const long ReclaimIntervalMs = 100;

    /// <summary>Blocks until a CPU slot fitting <paramref name="size"/> is claimed (returns it), the timeout passes
    /// (-1) or the token is cancelled. Before its first sleep it counts itself in as a blocking call
    /// (<paramref name="counted"/>; the caller counts out once it has published the slot), and throws
    /// ObjectDisposedException once the pool is closing. It looks once, then for up to <paramref name="spinNs"/>
    /// (a spin on the slot table, with no system call), before it shows itself as a waiter: a release while a slot
    /// was free anyway, or while this thread spins, then has nobody to wake (no futex call on the releasing side).</summary>
    internal static int Wait(PoolCore core, long size, long timeoutNs, long spinNs, CancellationToken token, ref bool counted)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        var picker = new CpuSlotPicker(core.Hints, size);
        int early = core.Slots.Claim(picker, reclaim: true); // the common case: a slot is free
        if (early >= 0)
        {
            return early;
        }

        if (spinNs > 0 && timeoutNs != 0 && !counted)
        {
            // A spin is a blocking call of the pool like a sleep: a close waits for it, and it stops at the close.
            core.Blocking.Enter();
            counted = true;
        }

        while (spinNs > 0 && (long)System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalNanoseconds < spinNs
               && (timeoutNs < 0 || (long)System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalNanoseconds < timeoutNs))
        {
            token.ThrowIfCancellationRequested();
            core.Blocking.ThrowIfClosing();
            Thread.SpinWait(8);
            early = core.Slots.Claim(picker, reclaim: false);
            if (early >= 0)
            {
                return early;
            }
        }

        long nextReclaim = System.Diagnostics.Stopwatch.GetTimestamp() + (ReclaimIntervalMs * System.Diagnostics.Stopwatch.Frequency / 1000); // the early look reclaimed
        uint* epoch = &core.Control.Header->FreeEpoch;
        core.Registry.AddLocalWaiter(+1); // from here on a release wakes this process; the look below follows it
        bool waited = false; // counted in the pool's AcquireWaits
        CancellationTokenRegistration reg = token.CanBeCanceled ? token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)epoch) : default;
        CancellationTokenRegistration closeReg = default;
        bool closeWakes = false; // closeReg is registered
        try
        {
            while (true)
            {
                token.ThrowIfCancellationRequested();
                if (counted)
                {
                    core.Blocking.ThrowIfClosing();
                }

                uint seen = Volatile.Read(ref *epoch);
                // Reclaiming what dead processes hold asks the kernel about every other live entry's lock, so a waiter
                // does it on its first look and then at most every ReclaimIntervalMs, not on every look: in a stream
                // whose slots are all in flight the pool is "full" at every acquire, and a release wakes the waiter
                // long before a dead holder would be worth looking for again.
                long now = System.Diagnostics.Stopwatch.GetTimestamp();
                bool reclaim = now >= nextReclaim;
                int s = core.Slots.Claim(picker, reclaim);
                if (s >= 0)
                {
                    return s;
                }

                if (reclaim)
                {
                    nextReclaim = now + (ReclaimIntervalMs * System.Diagnostics.Stopwatch.Frequency / 1000);
                }

                if (!waited && timeoutNs != 0)
                {
                    core.Control.Counters.CountAcquireWait(); // the pool is full and this acquire waits
                    waited = true;
                }

                long waitNs = ReclaimIntervalMs * 1_000_000; // wake at least this often to look for dead holders
                if (timeoutNs >= 0)
                {
                    long left = timeoutNs - (long)System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalNanoseconds;
                    if (left <= 0)
                    {
                        return -1;
                    }

                    waitNs = Math.Min(waitNs, left);
                }

                if (!closeWakes)
                {
                    if (!counted)
                    {
                        core.Blocking.Enter();
                        counted = true;
                    }

                    closeReg = core.Blocking.WakeOnClose(epoch);
                    closeWakes = true;
                    continue; // look once more now that a close would wake us
                }

                _ = ForkGate.FutexWait((nint)epoch, seen, waitNs); // out of the fork gate: a wait without a bound must not hold a fork back
            }
        }
        finally
        {
            closeReg.Dispose();
            reg.Dispose();
            core.Registry.AddLocalWaiter(-1);
        }
    }
}
