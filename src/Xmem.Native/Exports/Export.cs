using Xmem.Core;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>
/// The body of an export that works on no handle: its argument checks, then its work. Implemented by a struct that
/// holds the export's arguments, so <see cref="Export"/> is specialised for each body: no allocation, no indirect
/// call, the body inlined into the skeleton.
/// </summary>
internal interface IExportBody
{
    /// <summary>The checks that need no handle (NULL pointers, ranges): 0, or the status LastError recorded. The
    /// skeleton calls <see cref="Check"/> and then <see cref="Run"/> on the same copy, so a check may keep what it
    /// computed for the run.</summary>
    int Check();

    /// <summary>The export's work: 0 or a status recorded with LastError; may throw (the skeleton turns any
    /// exception into a status).</summary>
    int Run();
}

/// <summary>The body of an export that works on the object behind a handle (see <see cref="IExportBody"/>).</summary>
internal interface IExportBody<in T>
{
    /// <inheritdoc cref="IExportBody.Check"/>
    int Check();

    /// <summary>The export's work on the live <paramref name="target"/>, counted in by the skeleton for the call.</summary>
    int Run(T target);
}

/// <summary>
/// The skeleton of every export, written once: check the arguments, find the handle's object and count the call in
/// (so a concurrent close cannot close it under the call), run the body, count out, and turn any exception into a
/// status with the thread's last error: no exception ever crosses the C ABI. The fork gate is not here: the exported
/// C function (src/Xmem.Native/Gate/exports.g.c) enters it before the runtime is entered, and leaves it after.
/// An export is one line naming its skeleton and its body, e.g.
/// <c>=&gt; Export.OnPool(pool, new CountOp(metaIndex, outCount, CountKind.AddRef));</c>.
/// Every method here is generic over the body struct, hence specialised for each export, with the body's Check and
/// Run inlined (docs/c-abi.md, rule 6, gives the instructions per call).
/// </summary>
internal static unsafe class Export
{
    /// <summary>An export on no handle.</summary>
    internal static int Run<TBody>(TBody body)
        where TBody : struct, IExportBody => Call(new PlainCall<TBody>(body));

    /// <summary>The skeleton: the checks, the handle's object counted in, the body, counted out, and any
    /// exception turned into a status. <typeparamref name="TCall"/> says how its kind of handle is found and counted
    /// (ExportCalls.cs); none of its members has an exception handler, so all of them inline here.</summary>
    internal static int Call<TCall>(TCall call)
        where TCall : struct, IExportCall
    {
        try
        {
            int rc = call.Check();
            if (rc != 0 || !call.Enter(out rc))
            {
                return rc;
            }

            try
            {
                return call.Run();
            }
            finally
            {
                call.Leave();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    /// <summary>An export on a pool handle that never sleeps: the pool's close waits for it (no count; see
    /// <see cref="CountedTarget"/>).</summary>
    internal static int OnPool<TBody>(ulong pool, TBody body)
        where TBody : struct, IExportBody<PoolHandle> => Call(new PoolCall<TBody>(pool, body));

    /// <summary>An export on a pool handle that may sleep (it steps out of the fork gate meanwhile): the pool is
    /// counted in for the call.</summary>
    internal static int OnPoolBlocking<TBody>(ulong pool, TBody body)
        where TBody : struct, IExportBody<PoolHandle> => Call(new BlockingPoolCall<TBody>(pool, body));

    /// <summary>An export on a guard handle that needs nothing of its pool beyond the guard's own state.</summary>
    internal static int OnGuard<TBody>(ulong guard, TBody body)
        where TBody : struct, IExportBody<GuardHandle> => Call(new GuardCall<TBody>(guard, body));

    /// <summary>An export on a guard handle that works through its pool (driver calls, the slot's description; none
    /// sleeps): the pool's close waits for it, and a closed pool is XMEM_E_DISPOSED.</summary>
    internal static int OnGuardInPool<TBody>(ulong guard, TBody body)
        where TBody : struct, IExportBody<GuardHandle> => Call(new GuardInPoolCall<TBody>(guard, body));

    /// <summary>An export on a channel handle: the channel and its pool are both counted in for the call, so that
    /// neither the channel's segment nor the pool is closed under it.</summary>
    internal static int OnChannel<TBody>(ulong channel, TBody body)
        where TBody : struct, IExportBody<ChannelHandle> => Call(new ChannelCall<TBody>(channel, body));

    /// <summary>An export on a subscription handle: the subscription and its channel's pool are counted in.</summary>
    internal static int OnSubscription<TBody>(ulong subscription, TBody body)
        where TBody : struct, IExportBody<SubscriptionHandle> => Call(new SubscriptionCall<TBody>(subscription, body));

    /// <summary>An export that destroys a handle (close, release, forget): the handle leaves its table first, so of
    /// racing destroys exactly one runs the body and the others get XMEM_E_INVALID_HANDLE.</summary>
    internal static int Removing<T, TBody>(HandleTable<T> table, string kind, ulong handle, TBody body)
        where TBody : struct, IExportBody<T>
    {
        try
        {
            int rc = body.Check();
            if (rc != 0)
            {
                return rc;
            }

            return table.TryRemove(handle, out T target) ? body.Run(target) : LastError.InvalidHandle(kind, handle);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    /// <summary>0 when <paramref name="p"/> is set, else XMEM_E_INVALID_ARGUMENT naming the C parameter.</summary>
    internal static int NotNull(void* p, string name) => p is null ? LastError.NullArgument(name) : 0;

    /// <summary><see cref="NotNull(void*, string)"/> for two pointers, the first one checked first.</summary>
    internal static int NotNull(void* p, string name, void* q, string qName) =>
        p is null ? LastError.NullArgument(name) : q is null ? LastError.NullArgument(qName) : 0;

    /// <summary>The live pool behind <paramref name="pool"/>, counted in (the caller must call Exit), or null.</summary>
    internal static PoolHandle? EnterPool(ulong pool)
    {
        PoolHandle? p = HandleTables.Pools.Get(pool);
        return p is not null && p.TryEnter() ? p : null;
    }
}
