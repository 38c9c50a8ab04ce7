using Xmem.Errors;
using Xmem.Native.Handles;

#pragma warning disable CA1815 // call structs live for one export call on the stack: never compared

namespace Xmem.Native.Exports;

/// <summary>One export call as <see cref="Export.Call{TCall}"/> runs it: the body's checks, then the handle's object
/// found and counted in (so that a concurrent close cannot close it under the call), the body, and counted out.</summary>
internal interface IExportCall
{
    /// <summary>The body's checks (<see cref="IExportBody.Check"/>).</summary>
    int Check();

    /// <summary>Finds the handle's object and counts the call in; false with <paramref name="rc"/> the status
    /// recorded with LastError when the handle is not live (nothing is left counted then).</summary>
    bool Enter(out int rc);

    /// <summary>The body, on the object <see cref="Enter"/> found.</summary>
    int Run();

    /// <summary>Counts the call out of what <see cref="Enter"/> counted it into.</summary>
    void Leave();
}

// How each kind of handle is found and its call counted in and out. Each struct is generic over the body struct only,
// so every export gets its own exact code (no allocation, no indirect call, no shared generic code), and none has an
// exception handler, so the skeleton inlines all of it. Not readonly: the body's Check may keep what it computed for
// its Run, on the same copy.

/// <summary>No handle.</summary>
internal struct PlainCall<TBody>(TBody body) : IExportCall
    where TBody : struct, IExportBody
{
    private TBody _body = body;

    public int Check() => _body.Check();

    public readonly bool Enter(out int rc)
    {
        rc = 0;
        return true;
    }

    public int Run() => _body.Run();

    public readonly void Leave()
    {
    }
}

/// <summary>A pool handle, for a call that never sleeps: the pool is open, and its close waits for the call in its
/// grace period (<see cref="CountedTarget"/>); nothing is counted.</summary>
internal struct PoolCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<PoolHandle>
{
    private TBody _body = body;
    private PoolHandle? _pool;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        PoolHandle? p = HandleTables.Pools.Get(handle);
        if (p is null || !p.IsOpen)
        {
            rc = LastError.InvalidHandle("pool", handle);
            return false;
        }

        _pool = p;
        rc = 0;
        return true;
    }

    public int Run() => _body.Run(_pool!);

    public readonly void Leave()
    {
    }
}

/// <summary>A pool handle, for a call that may sleep: the pool is counted in.</summary>
internal struct BlockingPoolCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<PoolHandle>
{
    private TBody _body = body;
    private PoolHandle? _pool;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        _pool = Export.EnterPool(handle);
        rc = _pool is null ? LastError.InvalidHandle("pool", handle) : 0;
        return _pool is not null;
    }

    public int Run() => _body.Run(_pool!);

    public readonly void Leave() => _pool!.Exit();
}

/// <summary>A guard handle on its own (the guard's state is all the call needs): nothing is counted.</summary>
internal struct GuardCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<GuardHandle>
{
    private TBody _body = body;
    private GuardHandle _guard;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        bool found = HandleTables.Guards.TryGet(handle, out _guard);
        rc = found ? 0 : LastError.InvalidHandle("guard", handle);
        return found;
    }

    public int Run() => _body.Run(_guard);

    public readonly void Leave()
    {
    }
}

/// <summary>A guard handle whose call works through its pool (never sleeping): the guard's pool is open, and its close
/// waits for the call in its grace period; a closed pool is XMEM_E_DISPOSED.</summary>
internal struct GuardInPoolCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<GuardHandle>
{
    private TBody _body = body;
    private GuardHandle _guard;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        if (!HandleTables.Guards.TryGet(handle, out GuardHandle g))
        {
            rc = LastError.InvalidHandle("guard", handle);
            return false;
        }

        if (!g.Owner.IsOpen)
        {
            rc = GuardHandles.PoolClosed(g);
            return false;
        }

        _guard = g;
        rc = 0;
        return true;
    }

    public int Run() => _body.Run(_guard);

    public readonly void Leave()
    {
    }
}

/// <summary>A channel handle: the channel and its pool are counted in.</summary>
internal struct ChannelCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<ChannelHandle>
{
    private TBody _body = body;
    private ChannelHandle? _channel;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        ChannelHandle? c = HandleTables.Channels.Get(handle);
        if (c is null || !c.TryEnter())
        {
            rc = LastError.InvalidHandle("channel", handle);
            return false;
        }

        if (!c.Owner.TryEnter())
        {
            c.Exit();
            rc = LastError.Set(XmemStatus.Disposed, $"the pool of channel '{c.Channel.Name}' was closed; open the pool and the channel again.");
            return false;
        }

        _channel = c;
        rc = 0;
        return true;
    }

    public int Run() => _body.Run(_channel!);

    public readonly void Leave()
    {
        _channel!.Owner.Exit();
        _channel.Exit();
    }
}

/// <summary>A subscription handle: the subscription and its channel's pool are counted in.</summary>
internal struct SubscriptionCall<TBody>(ulong handle, TBody body) : IExportCall
    where TBody : struct, IExportBody<SubscriptionHandle>
{
    private TBody _body = body;
    private SubscriptionHandle? _subscription;

    public int Check() => _body.Check();

    public bool Enter(out int rc)
    {
        SubscriptionHandle? s = HandleTables.Subscriptions.Get(handle);
        if (s is null || !s.TryEnter())
        {
            rc = LastError.InvalidHandle("subscription", handle);
            return false;
        }

        if (!s.Channel.Owner.TryEnter())
        {
            s.Exit();
            rc = LastError.Set(XmemStatus.Disposed, $"the pool of channel '{s.Channel.Channel.Name}' was closed; open it again to receive.");
            return false;
        }

        _subscription = s;
        rc = 0;
        return true;
    }

    public int Run() => _body.Run(_subscription!);

    public readonly void Leave()
    {
        _subscription!.Channel.Owner.Exit();
        _subscription.Exit();
    }
}
