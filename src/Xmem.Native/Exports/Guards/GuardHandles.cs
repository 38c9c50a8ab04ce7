using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Guard handles: putting a new guard in the table (every export that hands out a guard), releasing one
/// against a concurrent pool close, and the one status for a guard whose pool was closed.</summary>
internal static unsafe class GuardHandles
{
    /// <summary>Puts a new guard in the table and fills the out-parameters; disposes the guard when that fails.</summary>
    internal static int Register(BufferGuard guard, PoolHandle owner, ulong* outGuard, BufferInfo* outInfo) =>
        Register(new BufferRef(guard), owner, outGuard, outInfo);

    /// <summary>Puts a new reference (a pooled guard's, from the pool's allocation-free paths) in the table and fills
    /// the out-parameters; releases the reference when that fails.</summary>
    internal static int Register(BufferRef reference, PoolHandle owner, ulong* outGuard, BufferInfo* outInfo)
    {
        try
        {
            BufferInfo.Fill(outInfo, reference); // just taken, not yet in the table: nobody else can end it
            *outGuard = HandleTables.Guards.Add(new GuardHandle(reference, owner));
            return 0;
        }
        catch
        {
            reference.Dispose();
            throw;
        }
    }

    /// <summary>Releases the reference of a guard already removed from the table. It needs no count on the pool
    /// handle: the pool orders a guard's release against its own close (<c>DetachGate</c>: either the close waits for
    /// the release, or the release leaves the reference to the close's release of all holdings), and what the release
    /// touches after that (its mapping and control-segment leases, a CUDA lease) outlives the close by design. A
    /// count here would be two more atomic operations on every release.</summary>
    internal static void Release(GuardHandle g) => g.Ref.Dispose();

    /// <summary>XMEM_E_DISPOSED for a call that needs the guard's pool after that pool was closed.</summary>
    internal static int PoolClosed(GuardHandle g) =>
        LastError.Set(XmemStatus.Disposed, $"pool '{g.Owner.Pool.Name}' was closed, which released the guard on slot {g.Ref.Guard.MetaIndex}; take a new guard after opening the pool again.");
}
