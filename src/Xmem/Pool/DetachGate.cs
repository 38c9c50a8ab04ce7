namespace Xmem.Pool;

/// <summary>
/// Guard releases against a pool's detach. Invariant (Dekker): a guard release counts itself in (a full fence) and
/// then looks for a detach; Dispose marks the detach and then (after a full fence) waits for the count to drain. So
/// either Dispose sees the release and waits until it is done, or the release sees the detach and leaves the
/// reference to Dispose's release of all holdings — a guard never acts under a process-table entry this process has
/// already given up.
/// </summary>
internal sealed class DetachGate
{
    private volatile bool _detaching;
    private int _inFlight;

    /// <summary>Counts a guard operation in; false (and counted out again) once the pool detaches.</summary>
    internal bool TryEnter()
    {
        Interlocked.Increment(ref _inFlight);
        if (_detaching)
        {
            Interlocked.Decrement(ref _inFlight);
            return false;
        }

        return true;
    }

    internal void Exit() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Refuses new guard operations and waits for those in flight (a few hundred nanoseconds each).</summary>
    internal void CloseAndDrain()
    {
        _detaching = true;
        Interlocked.MemoryBarrier();
        var spin = new SpinWait();
        while (Volatile.Read(ref _inFlight) != 0)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>In a forked child: guard releases return at once from now on (nothing to wait for: one thread).</summary>
    internal void CloseInChild() => _detaching = true;
}
