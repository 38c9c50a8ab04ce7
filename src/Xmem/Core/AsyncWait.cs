using System.Diagnostics;
using System.Threading.Tasks.Sources;

namespace Xmem.Core;

/// <summary>
/// One asynchronous wait of this process (a channel receive, a wait for a free slot), queued on the
/// <see cref="WordWatchers"/> thread that watches its futex word. Only that thread ever tries it, cancels it or
/// completes it, so "the attempt took a buffer" and "the token fired" are decided in one place: a wait whose
/// attempt succeeded completes with the buffer even when its token fired meanwhile (the caller gets it: nothing is
/// dropped), and a wait that is cancelled was not tried after its token was seen cancelled (nothing was taken).
/// </summary>
internal abstract class AsyncWait
{
    protected AsyncWait(CancellationToken token)
    {
        Token = token;
        StartTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The caller's token; the watcher looks at it before each attempt.</summary>
    internal CancellationToken Token { get; }

    /// <summary>When the wait began (Stopwatch ticks), for the attempts that repair a dead claim after a while.</summary>
    internal long StartTimestamp { get; }

    /// <summary>Wakes the watcher when the token fires (registered by the watcher, disposed when the wait ends).</summary>
    internal CancellationTokenRegistration Registration { get; set; }

    /// <summary>One attempt without waiting; true when it succeeded and completed the wait. It may throw: the watcher
    /// then completes the wait with that exception.</summary>
    internal abstract bool TryComplete();

    /// <summary>Completes the wait with <paramref name="error"/> (cancellation, a closing pool, a failed attempt).</summary>
    internal abstract void Fail(Exception error);
}

/// <summary>An <see cref="AsyncWait"/> whose result is a <typeparamref name="T"/>, awaited as a
/// <see cref="ValueTask{T}"/> over this object (one allocation per wait that has to wait; none for a call that finds
/// its result at once, which never makes one). Continuations run on the thread pool, never on the watcher.</summary>
internal abstract class AsyncWait<T> : AsyncWait, IValueTaskSource<T>
{
    private ManualResetValueTaskSourceCore<T> _source = new() { RunContinuationsAsynchronously = true };

    protected AsyncWait(CancellationToken token)
        : base(token)
    {
    }

    /// <summary>The task the caller awaits.</summary>
    internal ValueTask<T> Task => new(this, _source.Version);

    /// <summary>One attempt without waiting: true and the result, or false when there is nothing yet.</summary>
    protected abstract bool TryTake(out T result);

    internal sealed override bool TryComplete()
    {
        if (!TryTake(out T result))
        {
            return false;
        }

        _source.SetResult(result);
        return true;
    }

    internal sealed override void Fail(Exception error) => _source.SetException(error);

    T IValueTaskSource<T>.GetResult(short token) => _source.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<T>.GetStatus(short token) => _source.GetStatus(token);

    void IValueTaskSource<T>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _source.OnCompleted(continuation, state, token, flags);
}
