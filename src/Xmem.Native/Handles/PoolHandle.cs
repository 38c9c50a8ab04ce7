namespace Xmem.Native.Handles;

/// <summary>
/// An object behind a C handle that may be destroyed while other threads are inside calls on it, with a count of
/// its users: the handle table holds one, and every call in flight one more. Destroying the handle removes it from
/// its table and drops the table's count; whoever drops the last one closes the object. A call that races a destroy
/// therefore either runs on the whole object or finds the handle gone — never a half-closed object.
/// </summary>
internal abstract class CountedTarget
{
    private int _users = 1;
    private volatile bool _closed;
    private volatile bool _closing;

    /// <summary>Refuses every later <see cref="TryEnter"/>: the handle was closed, and the calls still in flight
    /// are only waited out (a blocking one re-entering every slice must not keep the object alive).</summary>
    internal void RefuseNewCalls() => _closing = true;

    /// <summary>Counts a call in; false once the object is (being) closed.</summary>
    internal bool TryEnter()
    {
        if (_closing)
        {
            return false;
        }

        while (true)
        {
            int n = Volatile.Read(ref _users);
            if (n == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _users, n + 1, n) == n)
            {
                return true;
            }
        }
    }

    /// <summary>Counts a call (or the table) out; the last one out closes the object. Never throws: a close that
    /// fails half-way leaves what xmem's crash recovery cleans up, as if this process had died.</summary>
    internal void Exit()
    {
        if (Interlocked.Decrement(ref _users) != 0)
        {
            return;
        }

        try
        {
            Close();
        }
        catch (Exception)
        {
            // Nothing to report to: the caller's own call succeeded. See the summary.
        }
        finally
        {
            _closed = true;
        }
    }

    /// <summary>Waits until a close that has started is finished (it is short: no waiting inside).</summary>
    internal void WaitClosed()
    {
        var spin = new SpinWait();
        while (!_closed)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>Closes the object; called once, by the last user out.</summary>
    protected abstract void Close();
}

/// <summary>A pool behind a C handle. <see cref="BufferPool.Dispose"/> must not race other calls on the pool, hence
/// the count of users (see <see cref="CountedTarget"/>).</summary>
internal sealed class PoolHandle(BufferPool pool) : CountedTarget
{
    internal BufferPool Pool { get; } = pool;

    /// <summary>Waits until a dispose that has started is finished.</summary>
    internal void WaitDisposed() => WaitClosed();

    /// <summary>The handle was closed: refuse new calls and wake the blocked ones (they fail with "disposed"), so
    /// the last of them out disposes the pool promptly.</summary>
    internal void BeginClose()
    {
        RefuseNewCalls();
        Pool.BeginClose();
    }

    protected override void Close() => Pool.Dispose();
}

/// <summary>A guard behind a C handle, with the pool handle it came from (to order its release against a close).</summary>
internal sealed class GuardHandle(BufferGuard guard, PoolHandle owner)
{
    internal BufferGuard Guard { get; } = guard;

    internal PoolHandle Owner { get; } = owner;
}

/// <summary>A channel behind a C handle. Closing it unmaps the channel's segment, so a close must not race a send or
/// receive on another thread: the count of users orders them (see <see cref="CountedTarget"/>). Calls also enter the
/// pool handle, so that the pool is not disposed under them either.</summary>
internal sealed class ChannelHandle(BufferChannel channel, PoolHandle owner) : CountedTarget
{
    internal BufferChannel Channel { get; } = channel;

    internal PoolHandle Owner { get; } = owner;

    protected override void Close() => Channel.Dispose();
}

/// <summary>A fan-out subscription behind a C handle. It holds one use of its channel handle (released when it
/// closes), so the channel's segment stays mapped while the subscription exists.</summary>
internal sealed class SubscriptionHandle(ChannelSubscription subscription, ChannelHandle channel) : CountedTarget
{
    internal ChannelSubscription Subscription { get; } = subscription;

    internal ChannelHandle Channel { get; } = channel;

    protected override void Close()
    {
        try
        {
            // Leaving drains the ring, which needs the pool; once the pool is closed there is nothing to drain for:
            // this process's entry is gone, so the ring counts as abandoned and the next sender reclaims it.
            if (Channel.Owner.TryEnter())
            {
                try
                {
                    Subscription.Dispose();
                }
                finally
                {
                    Channel.Owner.Exit();
                }
            }
        }
        finally
        {
            Channel.Exit();
        }
    }
}

/// <summary>The handle tables of the process.</summary>
internal static class HandleTables
{
    internal static readonly HandleTable<PoolHandle> Pools = new(HandleKind.Pool);
    internal static readonly HandleTable<GuardHandle> Guards = new(HandleKind.Guard);
    internal static readonly HandleTable<Pool.MappingLease> Leases = new(HandleKind.Lease);
    internal static readonly HandleTable<ChannelHandle> Channels = new(HandleKind.Channel);
    internal static readonly HandleTable<SubscriptionHandle> Subscriptions = new(HandleKind.Subscription);
}
