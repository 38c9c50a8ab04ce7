namespace Xmem.Core;

/// <summary>
/// A futex word in shared memory that waiters sleep on and wakers change (the pool's FreeEpoch, a ring's DataEpoch),
/// with the protocol its sleepers follow: how a sleeper announces itself to wakers and how it sleeps. The blocking
/// calls follow the same protocol inline; <see cref="WordWatchers"/> uses it to sleep for many waits at once.
/// </summary>
internal abstract unsafe class EventWord(uint* word)
{
    /// <summary>The word's address (it lives as long as the pool's mapping, which outlives every watcher).</summary>
    internal uint* Word { get; } = word;

    /// <summary>Called once before a watcher's first sleep on the word (an announcement that wakers read).</summary>
    internal virtual void BeginWatch()
    {
    }

    /// <summary>Undoes <see cref="BeginWatch"/> when the watcher stops.</summary>
    internal virtual void EndWatch()
    {
    }

    /// <summary>Sleeps while the word still holds <paramref name="seen"/> (read before the last look), at most
    /// <paramref name="timeoutNs"/>.</summary>
    internal abstract void Sleep(uint seen, long timeoutNs);
}
