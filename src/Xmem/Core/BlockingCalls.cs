using Xmem.Errors;
using Xmem.Interop;

namespace Xmem.Core;

/// <summary>
/// Closing a pool while its calls sleep: a close wakes every blocking call (a wait for a slot, a channel receive or
/// send), which then throws ObjectDisposedException, and waits until they have all left.
/// Invariant (Dekker): a blocking call counts itself in with a full-fence increment before its first sleep and then
/// reads the closing flag; a close stores the flag and then, after a full fence, reads the count. So either the call
/// sees the flag and leaves, or the close sees the call and waits for it.
/// </summary>
internal sealed unsafe class BlockingCalls(string bare, uint* freeEpoch) : IDisposable
{
    private readonly CancellationTokenSource _closingSource = new();
    private volatile bool _closing;
    private int _count;

    /// <summary>The first step of closing; idempotent. Every sleeper registered so far is woken.</summary>
    internal void BeginClose()
    {
        _closing = true;
        Interlocked.MemoryBarrier(); // the store above before the count read in WaitForAll (see the type)
        try
        {
            _closingSource.Cancel(); // runs the wake callbacks of every sleeper registered so far
        }
        catch (ObjectDisposedException)
        {
            // Disposed already: nothing waits any more.
        }
    }

    /// <summary>Waits until every blocking call has left. A sleeper that registered its wake after the cancel, or
    /// read its futex word just before it, sleeps at most one slice (100 ms) more; the free-slot word is woken again
    /// meanwhile, which costs other processes' waiters one extra scan at most.</summary>
    internal void WaitForAll()
    {
        int rounds = 0;
        while (Volatile.Read(ref _count) != 0)
        {
            if (rounds++ % 10 == 0)
            {
                _ = Libc.FutexWakeAll((nint)freeEpoch);
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>Counts a blocking call in, before its first sleep; throws ObjectDisposedException when the pool is
    /// closing. Every call of it that returns is matched by one <see cref="Exit"/>.</summary>
    internal void Enter()
    {
        Interlocked.Increment(ref _count); // full fence: before the read of _closing (see the type)
        if (_closing)
        {
            Interlocked.Decrement(ref _count);
            ThrowHelper.ThrowPoolClosedWhileWaiting(bare);
        }
    }

    /// <summary>Counts a blocking call out.</summary>
    internal void Exit() => Interlocked.Decrement(ref _count);

    /// <summary>Throws ObjectDisposedException once the pool is closing: a counted call checks it after every wake.</summary>
    internal void ThrowIfClosing()
    {
        if (_closing)
        {
            ThrowHelper.ThrowPoolClosedWhileWaiting(bare);
        }
    }

    /// <summary>Makes a close wake a sleeper on <paramref name="word"/> (a futex word in shared memory).</summary>
    internal CancellationTokenRegistration WakeOnClose(uint* word) =>
        _closingSource.Token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)word);

    public void Dispose() => _closingSource.Dispose();
}
