using System.Diagnostics.CodeAnalysis;

namespace Xmem;

/// <summary>One subscriber of a fan-out <see cref="BufferChannel"/>: receives every buffer sent after it joined,
/// each with its own reference. Disposing it leaves the channel and releases what was still waiting for it; a
/// subscriber whose process dies is removed the same way by the next sender that finds its queue full.</summary>
public sealed class ChannelSubscription : IDisposable
{
    private readonly BufferChannel _channel;
    private readonly int _ring;
    private int _disposed;

    internal ChannelSubscription(BufferChannel channel, int ring)
    {
        _channel = channel;
        _ring = ring;
    }

    /// <summary>The channel subscribed to.</summary>
    public BufferChannel Channel => _channel;

    /// <summary>Buffers waiting for this subscriber (approximate).</summary>
    public int Count => (int)_channel.Segment.Backlog(_ring);

    /// <summary>Receives the next buffer, waiting for one. Read-only unless <paramref name="writable"/>.</summary>
    public BufferGuard Receive(bool writable = false) => _channel.ReceiveCore(Ring(), writable, -1, pooled: false, CancellationToken.None)!;

    /// <summary>Receives the next buffer, waiting at most <paramref name="timeout"/> (zero: do not wait).</summary>
    public bool TryReceive(TimeSpan timeout, [NotNullWhen(true)] out BufferGuard? guard, bool writable = false)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout must be non-negative, or infinite to wait without limit.");
        }

        guard = _channel.ReceiveCore(Ring(), writable, timeout == Timeout.InfiniteTimeSpan ? -1 : (long)timeout.TotalNanoseconds, pooled: false, CancellationToken.None);
        return guard is not null;
    }

    /// <summary>Like <see cref="Receive"/>, as a <see cref="BufferRef"/>: no allocation once warm.</summary>
    public BufferRef ReceiveRef(bool writable = false) => new(_channel.ReceiveCore(Ring(), writable, -1, pooled: true, CancellationToken.None)!);

    /// <summary>Like <see cref="TryReceive"/>, as a <see cref="BufferRef"/> (<c>default</c> when none came in time).</summary>
    public bool TryReceiveRef(TimeSpan timeout, out BufferRef buffer, bool writable = false)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the timeout must be non-negative, or infinite to wait without limit.");
        }

        BufferGuard? g = _channel.ReceiveCore(Ring(), writable, timeout == Timeout.InfiniteTimeSpan ? -1 : (long)timeout.TotalNanoseconds, pooled: true, CancellationToken.None);
        buffer = g is null ? default : new BufferRef(g);
        return g is not null;
    }

    /// <summary>Receives the next buffer without blocking the calling thread, as
    /// <see cref="BufferChannel.ReceiveAsync(bool, CancellationToken)"/> does (at once and without allocating when one
    /// is ready; cancellation drops no buffer).</summary>
    public ValueTask<BufferGuard> ReceiveAsync(bool writable = false, CancellationToken cancellationToken = default) =>
        _channel.ReceiveAsyncCore(Ring(), writable, cancellationToken, this);

    /// <summary>Receives the next buffer (read-only) without blocking the calling thread.</summary>
    public ValueTask<BufferGuard> ReceiveAsync(CancellationToken cancellationToken) => ReceiveAsync(false, cancellationToken);

    /// <summary>Receives every buffer sent to this subscriber as it comes, as
    /// <see cref="BufferChannel.ReadAllAsync(bool, CancellationToken)"/> does; the enumeration ends when this
    /// subscription, its channel or its pool is disposed.</summary>
    public IAsyncEnumerable<BufferGuard> ReadAllAsync(bool writable = false, CancellationToken cancellationToken = default) =>
        _channel.ReadAllCore(Ring(), writable, cancellationToken, this);

    /// <summary>Receives every buffer (read-only) as it comes, until this subscription is disposed.</summary>
    public IAsyncEnumerable<BufferGuard> ReadAllAsync(CancellationToken cancellationToken) => ReadAllAsync(false, cancellationToken);

    /// <summary>The ring, or ObjectDisposedException once the subscription is disposed.</summary>
    internal int LiveRing() => Ring();

    private int Ring()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _ring;
    }

    /// <summary>Leaves the channel, releasing the buffers still waiting for this subscriber.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _channel.Unsubscribe(_ring);
        }
    }
}
