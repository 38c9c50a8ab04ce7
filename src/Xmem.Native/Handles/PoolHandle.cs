namespace Xmem.Native.Handles;

/// <summary>
/// A pool behind a C handle, with a count of its users: the handle table holds one, and every call in flight one
/// more. <see cref="BufferPool.Dispose"/> must not race with other calls on the pool, so closing the handle only drops
/// the table's count; whoever drops the last one disposes the pool. A call that races a close therefore either runs
/// on the whole pool or finds the handle gone — never a half-disposed pool.
/// </summary>
internal sealed class PoolHandle(BufferPool pool)
{
    private int _users = 1;
    private volatile bool _disposed;

    internal BufferPool Pool { get; } = pool;

    /// <summary>Counts a call in; false once the pool is (being) disposed.</summary>
    internal bool TryEnter()
    {
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

    /// <summary>Counts a call (or the table) out; the last one out disposes the pool. Never throws: a detach that
    /// fails half-way leaves what the pool's crash recovery cleans up, as if this process had died.</summary>
    internal void Exit()
    {
        if (Interlocked.Decrement(ref _users) != 0)
        {
            return;
        }

        try
        {
            Pool.Dispose();
        }
        catch (Exception)
        {
            // Nothing to report to: the caller's own call succeeded. See the summary.
        }
        finally
        {
            _disposed = true;
        }
    }

    /// <summary>Waits until a dispose that has started is finished (it is short: no waiting inside).</summary>
    internal void WaitDisposed()
    {
        var spin = new SpinWait();
        while (!_disposed)
        {
            spin.SpinOnce();
        }
    }
}

/// <summary>A guard behind a C handle, with the pool handle it came from (to order its release against a close).</summary>
internal sealed class GuardHandle(BufferGuard guard, PoolHandle owner)
{
    internal BufferGuard Guard { get; } = guard;

    internal PoolHandle Owner { get; } = owner;
}

/// <summary>The three handle tables of the process.</summary>
internal static class HandleTables
{
    internal static readonly HandleTable<PoolHandle> Pools = new(HandleKind.Pool);
    internal static readonly HandleTable<GuardHandle> Guards = new(HandleKind.Guard);
    internal static readonly HandleTable<Pool.MappingLease> Leases = new(HandleKind.Lease);
}
