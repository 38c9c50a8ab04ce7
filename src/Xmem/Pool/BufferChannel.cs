using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Xmem.Channels;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;

namespace Xmem;

/// <summary>
/// A named channel of a <see cref="BufferPool"/>: a bounded queue of buffer references in shared memory, used by any
/// number of senders and receivers in any processes. <see cref="Send(BufferGuard)"/> moves a guard's reference into the channel
/// (the guard is spent; no count is lost or doubled); a receive returns a guard that owns that reference. References
/// waiting in the channel are counted in their slots and belong to the channel, so a process that dies loses none
/// of them; a process that dies in the middle of a send or receive never wedges the channel (its cell is repaired by
/// the next process that meets it). Waiting sleeps in the kernel (futex) and wakes on the event. Open it with
/// <see cref="BufferPool.Channel"/>. Members are thread-safe.
/// </summary>
public sealed unsafe class BufferChannel : IDisposable
{
    private const long RepairAfterNs = 1_000_000;     // a claim older than this while we wait: ask if its owner lives
    private const long MaxSleepNs = 100_000_000;      // wake at least this often to look for dead processes

    private readonly BufferPool _pool;
    private readonly ChannelSegment _seg;
    private readonly FanOutSubscribers _subscribers;
    private readonly SendClaims _sendClaims;
    private readonly RingDataWord[] _words; // per ring: what the asynchronous receives sleep on
    private int _disposed;

    internal BufferChannel(BufferPool pool, ChannelSegment segment)
    {
        _pool = pool;
        _seg = segment;
        _subscribers = new FanOutSubscribers(segment, pool.Handover, pool.Core.Registry);
        _sendClaims = new SendClaims(segment, pool.Handover, _subscribers, pool.Core.Registry, pool.Blocking);
        _words = new RingDataWord[segment.RingCount];
        for (int k = 0; k < _words.Length; k++)
        {
            _words[k] = new RingDataWord(segment, k);
        }
    }

    /// <summary>The channel's name.</summary>
    public string Name => _seg.Name;

    /// <summary>Messages the channel holds (per subscriber in fan-out mode).</summary>
    public int Depth => _seg.Depth;

    /// <summary>Queue or fan-out.</summary>
    public ChannelMode Mode => (ChannelMode)_seg.Mode;

    /// <summary>The pool the channel belongs to.</summary>
    public BufferPool Pool => _pool;

    /// <summary>How long a waiting send or receive spins (watching shared memory) before it sleeps in the kernel:
    /// zero (the default) sleeps at once. Spinning cuts the hand-over latency from a wake-up (tens of µs) to well under
    /// one when a core is free, and burns that core meanwhile.</summary>
    public TimeSpan SpinDuration { get; set; }

    /// <summary>Messages waiting in a queue channel (approximate under concurrent use; 0 in fan-out mode).</summary>
    public int Count => _seg.Mode == ChannelLayout.ModeQueue ? (int)_seg.Backlog(0) : 0;

    internal ChannelSegment Segment => _seg;

    /// <summary>Moves <paramref name="guard"/>'s reference into the channel, waiting while the channel is full. The
    /// guard is spent (invalid) afterwards. In fan-out mode every subscriber gets its own reference; with no
    /// subscriber the buffer is released.</summary>
    /// <exception cref="BufferGuardInvalidException">The guard was already disposed, forgotten or sent.</exception>
    /// <exception cref="ArgumentException">The guard belongs to another pool.</exception>
    public void Send(BufferGuard guard) => _ = SendCore(guard, guard?.Version ?? 0, -1);

    /// <summary>Like <see cref="Send(BufferGuard)"/>, but waits at most <paramref name="timeout"/> for room (zero: fail at once).
    /// False when the channel stayed full: the guard is unchanged and still the caller's.</summary>
    public bool TrySend(BufferGuard guard, TimeSpan timeout) => SendCore(guard, guard?.Version ?? 0, ToNs(timeout));

    /// <summary>Like <see cref="Send(BufferGuard)"/>, for a <see cref="BufferRef"/> (spent afterwards, in every copy).</summary>
    /// <exception cref="BufferGuardInvalidException">The reference was already disposed, forgotten or sent.</exception>
    public void Send(BufferRef buffer) => _ = SendCore(buffer.Guard, buffer.Version, -1);

    /// <summary>Like <see cref="TrySend(BufferGuard, TimeSpan)"/>, for a <see cref="BufferRef"/>: false leaves it the
    /// caller's.</summary>
    public bool TrySend(BufferRef buffer, TimeSpan timeout) => SendCore(buffer.Guard, buffer.Version, ToNs(timeout));

    /// <summary>Like <see cref="Receive"/>, as a <see cref="BufferRef"/>: no allocation once warm.</summary>
    public BufferRef ReceiveRef(bool writable = false) => new(ReceiveCore(QueueRing(), writable, -1, pooled: true, CancellationToken.None)!);

    /// <summary>Like <see cref="TryReceive"/>, as a <see cref="BufferRef"/> (<c>default</c> when none came in time).</summary>
    public bool TryReceiveRef(TimeSpan timeout, out BufferRef buffer, bool writable = false)
    {
        BufferGuard? g = ReceiveCore(QueueRing(), writable, ToNs(timeout), pooled: true, CancellationToken.None);
        buffer = g is null ? default : new BufferRef(g);
        return g is not null;
    }

    /// <summary>Receives the next buffer, waiting for one. The guard is read-only unless <paramref name="writable"/>.</summary>
    public BufferGuard Receive(bool writable = false) => ReceiveCore(QueueRing(), writable, -1, pooled: false, CancellationToken.None)!;

    /// <summary>Receives the next buffer, waiting at most <paramref name="timeout"/> (zero: do not wait).</summary>
    public bool TryReceive(TimeSpan timeout, [NotNullWhen(true)] out BufferGuard? guard, bool writable = false)
    {
        guard = ReceiveCore(QueueRing(), writable, ToNs(timeout), pooled: false, CancellationToken.None);
        return guard is not null;
    }

    /// <summary>Receives the next buffer (read-only), waiting for one without blocking the calling thread. A buffer
    /// that is ready is returned at once, synchronously and without allocating; otherwise the wait is queued on the
    /// thread that sleeps for all of this process's asynchronous waits on this channel (docs/channels.md, "Async").
    /// Cancelling <paramref name="cancellationToken"/> ends the wait with <see cref="OperationCanceledException"/>
    /// and takes nothing out of the channel; a buffer taken out just as the token fired is returned instead (the
    /// caller owns it), so no buffer is ever dropped.</summary>
    /// <exception cref="ObjectDisposedException">The channel or the pool was disposed (also while waiting).</exception>
    public ValueTask<BufferGuard> ReceiveAsync(CancellationToken cancellationToken = default) => ReceiveAsync(false, cancellationToken);

    /// <summary>Like <see cref="ReceiveAsync(CancellationToken)"/>, read-write when <paramref name="writable"/>.</summary>
    public ValueTask<BufferGuard> ReceiveAsync(bool writable, CancellationToken cancellationToken = default) =>
        ReceiveAsyncCore(QueueRing(), writable, cancellationToken);

    /// <summary>Receives every buffer as it comes (read-only guards, each the caller's to dispose), as
    /// <see cref="System.Threading.Channels.ChannelReader{T}.ReadAllAsync"/> does: the enumeration ends when the
    /// channel or its pool is disposed, and throws <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> is cancelled (a buffer taken as it fired is yielded first).</summary>
    public IAsyncEnumerable<BufferGuard> ReadAllAsync(CancellationToken cancellationToken = default) => ReadAllAsync(false, cancellationToken);

    /// <summary>Like <see cref="ReadAllAsync(CancellationToken)"/>, read-write guards when <paramref name="writable"/>.</summary>
    public IAsyncEnumerable<BufferGuard> ReadAllAsync(bool writable, CancellationToken cancellationToken = default) =>
        ReadAllCore(QueueRing(), writable, cancellationToken);

    /// <summary>Joins a fan-out channel: the subscription receives every buffer sent from now on, each with its own
    /// reference, until it is disposed. At most 16 subscribers at a time.</summary>
    /// <exception cref="InvalidOperationException">The channel is a queue.</exception>
    public ChannelSubscription Subscribe()
    {
        ThrowIfDisposed();
        if (_seg.Mode != ChannelLayout.ModeFanOut)
        {
            throw new InvalidOperationException($"channel '{Name}' is a queue; receive from it directly, or open a fan-out channel to subscribe.");
        }

        int k = _subscribers.TryJoin();
        if (k < 0)
        {
            throw new XmemException(XmemStatus.TooManyProcesses, $"channel '{Name}' already has {ChannelLayout.MaxSubscribers} subscribers; dispose some subscriptions first.");
        }

        return new ChannelSubscription(this, k);
    }

    internal void Unsubscribe(int k)
    {
        if (_pool.IsInheritedThroughFork)
        {
            return; // the subscription is the parent's: a forked child leaves its ring alone
        }

        WakeAsyncWaits(k); // the subscription's waits end with ObjectDisposedException now, not at their next slice
        _subscribers.Leave(k);
    }

    /// <summary>Repairs every cell left half-sent or half-received by a dead process, and gives back the references
    /// waiting for dead subscribers. Waits do this by themselves for the cells in their way; call it to reclaim
    /// sooner. Returns how many cells were repaired or drained.</summary>
    public int RecoverDead()
    {
        ThrowIfDisposed();
        int repaired = 0;
        for (int k = 0; k < _seg.RingCount; k++)
        {
            for (int i = 0; i < _seg.Depth; i++)
            {
                RingCell* cell = _seg.Cell(k, (ulong)i);
                ulong c = Volatile.Read(ref cell->Word);
                if (_pool.Handover.RepairCell(_seg, k, CellWord.Lap(c), c))
                {
                    repaired++;
                }
            }

            if (_seg.Mode == ChannelLayout.ModeFanOut)
            {
                repaired += _subscribers.ReclaimIfAbandoned(k);
            }
        }

        return repaired;
    }

    // ---------------------------------------------------------------- waiting

    private int QueueRing()
    {
        ThrowIfDisposed();
        if (_seg.Mode != ChannelLayout.ModeQueue)
        {
            throw new InvalidOperationException($"channel '{Name}' is a fan-out channel; subscribe to it and receive through the subscription.");
        }

        return 0;
    }

    internal ValueTask<BufferGuard> ReceiveAsyncCore(int k, bool writable, CancellationToken cancellationToken, ChannelSubscription? subscription = null)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BufferGuard>(cancellationToken);
        }

#pragma warning disable CA2000 // ownership passes to the caller through the returned task
        BufferGuard? now = ReceiveNow(k, writable, repair: false);
#pragma warning restore CA2000
        if (now is not null)
        {
            return new ValueTask<BufferGuard>(now); // no allocation: the guard is the result
        }

        return _pool.Core.Watchers.Enqueue(_words[k], new ReceiveWait(this, k, subscription, writable, cancellationToken));
    }

    /// <summary>The buffers of ring <paramref name="k"/> as they come, until this channel, its subscription or its
    /// pool is disposed (any ObjectDisposedException ends the enumeration).</summary>
    internal async IAsyncEnumerable<BufferGuard> ReadAllCore(int k, bool writable, [EnumeratorCancellation] CancellationToken cancellationToken, ChannelSubscription? subscription = null)
    {
        while (true)
        {
            BufferGuard g;
            try
            {
                g = await ReceiveAsyncCore(subscription is null ? k : subscription.LiveRing(), writable, cancellationToken, subscription).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                yield break;
            }

            yield return g;
        }
    }

    /// <summary>One look at ring <paramref name="k"/> without waiting: the next buffer, or null when none is ready.
    /// With <paramref name="repair"/> a cell in the way that a dead process claimed is repaired first.</summary>
    internal BufferGuard? ReceiveNow(int k, bool writable, bool repair)
    {
        ThrowIfDisposed();
        _pool.ThrowIfDisposed();
        int tag = _pool.Core.Registry.Tag;
        ushort inc = _pool.Core.Registry.Incarnation;
        while (true)
        {
            int r = _seg.TryClaimRead(k, tag, inc, out ulong pos, out ulong observed);
            if (r == ChannelSegment.Claimed)
            {
#pragma warning disable CA2000 // ownership passes to the caller (returned)
                BufferGuard? g = _pool.CompleteReceive(_seg, k, pos, observed, writable, pooled: false);
#pragma warning restore CA2000
                if (g is not null)
                {
                    return g;
                }

                continue;
            }

            if (repair && _pool.Handover.RepairCell(_seg, k, pos, observed))
            {
                continue;
            }

            return null;
        }
    }

    /// <summary>Receives from ring <paramref name="k"/>; null when <paramref name="timeoutNs"/> (≥ 0) passed.</summary>
    internal BufferGuard? ReceiveCore(int k, bool writable, long timeoutNs, bool pooled, CancellationToken token)
    {
        ThrowIfDisposed();
        _pool.ThrowIfDisposed();
        _ = _pool.Core.Own.Words; // this process's holdings exist before it claims a cell (made on first use)
        int tag = _pool.Core.Registry.Tag;
        ushort inc = _pool.Core.Registry.Incarnation;
        uint* epoch = &_seg.Ring(k)->DataEpoch;
        long start = Stopwatch.GetTimestamp();
        long spinNs = (long)SpinDuration.TotalNanoseconds;
        CancellationTokenRegistration reg = token.CanBeCanceled ? token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)epoch) : default;
        CancellationTokenRegistration closeReg = default;
        bool counted = false; // a blocking call of the pool from its first sleep on (see BlockingCalls)
        bool blocked = false; // counted in the channel's waiting receivers (ChannelCounters)
        try
        {
            while (true)
            {
                token.ThrowIfCancellationRequested();
                if (counted)
                {
                    _pool.Blocking.ThrowIfClosing();
                }

                uint seen = Volatile.Read(ref *epoch);
                int r = _seg.TryClaimRead(k, tag, inc, out ulong pos, out ulong observed);
                if (r == ChannelSegment.Claimed)
                {
#pragma warning disable CA2000 // ownership passes to the caller (returned); the finally only ends registrations and the blocking count, which do not throw
                    BufferGuard? g = _pool.CompleteReceive(_seg, k, pos, observed, writable, pooled);
#pragma warning restore CA2000
                    if (g is not null)
                    {
                        return g;
                    }

                    continue;
                }

                long elapsed = (long)Stopwatch.GetElapsedTime(start).TotalNanoseconds;
                if (elapsed > RepairAfterNs && _pool.Handover.RepairCell(_seg, k, pos, observed))
                {
                    continue;
                }

                if (timeoutNs >= 0 && elapsed >= timeoutNs)
                {
                    return null;
                }

                if (!blocked)
                {
                    _seg.Counters.BeginReceiveWait(_pool.Core.Registry);
                    blocked = true;
                }

                if (elapsed < spinNs)
                {
                    Thread.SpinWait(8);
                    continue;
                }

                if (!counted)
                {
                    _pool.Blocking.Enter();
                    counted = true;
                    closeReg = _pool.Blocking.WakeOnClose(epoch);
                    continue; // look once more now that a close would wake us
                }

                ChannelSegment.SleepOn(epoch, seen, timeoutNs >= 0 ? Math.Min(MaxSleepNs, timeoutNs - elapsed) : MaxSleepNs);
            }
        }
        finally
        {
            closeReg.Dispose();
            reg.Dispose();
            if (blocked)
            {
                _seg.Counters.EndReceiveWait(_pool.Core.Registry);
            }

            if (counted)
            {
                _pool.Blocking.Exit();
            }
        }
    }

    private bool SendCore(BufferGuard guard, long version, long timeoutNs)
    {
        ThrowIfDisposed();
        _pool.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(guard);
        if (!ReferenceEquals(guard.Pool, _pool))
        {
            throw new ArgumentException($"the guard belongs to pool '{guard.Pool.Name}', not to this channel's pool instance '{_pool.Name}'.", nameof(guard));
        }

        guard.ThrowIfInvalidAt(version);
        var wait = new SendWait();
        try
        {
            return SendCore(guard, version, timeoutNs, ref wait);
        }
        finally
        {
            wait.Registration.Dispose();
            if (wait.Blocked)
            {
                _seg.Counters.EndSendWait(_pool.Core.Registry, wait.BlockedSince);
            }

            if (wait.Counted)
            {
                _pool.Blocking.Exit();
            }
        }
    }

    private bool SendCore(BufferGuard guard, long version, long timeoutNs, ref SendWait wait)
    {
        long start = Stopwatch.GetTimestamp();
        if (_seg.Mode == ChannelLayout.ModeQueue)
        {
            // The common case allocates nothing: one ring, one cell, the sender's own reference.
            ulong qpos = _sendClaims.Claim(0, timeoutNs, start, (long)SpinDuration.TotalNanoseconds, ref wait, out bool qskip);
            if (qskip)
            {
                _ = guard.DisposeAt(version);
                return true;
            }

            if (qpos == ulong.MaxValue)
            {
                return false;
            }

            _pool.CompleteSend(_seg, 0, qpos, guard, version);
            return true;
        }

        // Fan-out: at most MaxRings subscribers, so the bookkeeping lives on the stack.
        Span<int> rings = stackalloc int[_seg.RingCount];
        int ringCount = 0;
        for (int k = 0; k < _seg.RingCount; k++)
        {
            if (SubscriberWord.State(Volatile.Read(ref _seg.Ring(k)->Subscriber)) == SubscriberWord.Active)
            {
                rings[ringCount++] = k;
            }
        }

        if (ringCount == 0)
        {
            _ = guard.DisposeAt(version); // nobody listens: the buffer goes back
            return true;
        }

        Span<int> claimRings = stackalloc int[ringCount];
        Span<ulong> claimPos = stackalloc ulong[ringCount];
        int claimCount = 0;
        foreach (int k in rings[..ringCount])
        {
            ulong pos = _sendClaims.Claim(k, timeoutNs, start, (long)SpinDuration.TotalNanoseconds, ref wait, out bool skip);
            if (skip)
            {
                continue;
            }

            if (pos == ulong.MaxValue)
            {
                for (int i = 0; i < claimCount; i++)
                {
                    _pool.Handover.VoidClaimedCell(_seg, claimRings[i], claimPos[i]);
                }

                return false;
            }

            claimRings[claimCount] = k;
            claimPos[claimCount] = pos;
            claimCount++;
        }

        if (claimCount == 0)
        {
            _ = guard.DisposeAt(version);
            return true;
        }

        // One reference per subscriber: the extra ones are taken as references of this process first (all before any
        // handover), so every handover moves an attributed reference into its cell. Pooled references in a buffer on
        // the stack: a fan-out send allocates nothing either.
        var extras = new ExtraReferences();
        int taken = 0, handed = 0;
        bool firstTried = false;
        try
        {
            bool readOnly = guard.IsReadOnlyAt(version);
            int slot = guard.MetaIndexAt(version);
            for (; taken < claimCount - 1; taken++)
            {
                extras[taken] = readOnly ? _pool.GetRef(slot) : _pool.GetMutRef(slot);
            }

            firstTried = true; // from here on CompleteSend voids the first cell itself if it fails
            _pool.CompleteSend(_seg, claimRings[0], claimPos[0], guard, version);
            for (handed = 1; handed < claimCount; handed++)
            {
                BufferRef extra = extras[handed - 1];
                _pool.CompleteSend(_seg, claimRings[handed], claimPos[handed], extra.Guard, extra.Version);
            }
        }
        catch
        {
            // Nothing half-sent is left behind: the references not handed over go back, the cells not filled are
            // voided (CompleteSend voided its own on failure). The caller's guard stays the caller's if it was not
            // sent (handed == 0).
            for (int i = Math.Max(handed - 1, 0); i < taken; i++)
            {
                extras[i].Dispose();
            }

            for (int i = Math.Max(handed + 1, 0); i < claimCount; i++)
            {
                _pool.Handover.VoidClaimedCell(_seg, claimRings[i], claimPos[i]);
            }

            if (!firstTried)
            {
                _pool.Handover.VoidClaimedCell(_seg, claimRings[0], claimPos[0]);
            }

            throw;
        }

        return true;
    }

    /// <summary>Wakes the watcher of ring <paramref name="k"/>, if any, to look at its waits again.</summary>
    private void WakeAsyncWaits(int k) => _ = Libc.FutexWakeAll((nint)_words[k].Word);

    private static long ToNs(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return -1;
        }

        if (timeout < TimeSpan.Zero)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(timeout), timeout, "the timeout must be non-negative, or infinite to wait without limit.");
        }

        return (long)timeout.TotalNanoseconds;
    }

    internal void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_pool.IsInheritedThroughFork)
        {
            _pool.ThrowIfDisposed(); // names fork: the channel's pool is inert in a forked child
        }
    }

    /// <summary>Closes this process's view of the channel. The channel and the references in it stay (they go with
    /// the pool).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            for (int k = 0; k < _words.Length; k++)
            {
                WakeAsyncWaits(k); // a watcher's lease keeps the segment mapped until it has let go
            }

            _pool.Handover.Close(_seg);
        }
    }

    /// <summary>The extra references of one fan-out send, on the stack (at most one per subscriber but the first).</summary>
    [System.Runtime.CompilerServices.InlineArray(ChannelLayout.MaxSubscribers)]
    private struct ExtraReferences
    {
        private BufferRef _first;
    }
}
