using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>View leases: a lease keeps a CPU buffer's mapping for as long as a view (a memoryview, a DLPack tensor)
/// uses it, whatever happens meanwhile to the guard or the pool.</summary>
internal static class LeaseHandles
{
    /// <summary>A new lease on the guard's mapping; <paramref name="rc"/> is nonzero (and the result null) on failure.</summary>
    internal static MappingLease Take(GuardHandle g, out int rc)
    {
        try
        {
            if (g.Ref.IsCuda)
            {
                rc = LastError.Set(XmemStatus.InvalidArgument, $"the buffer in slot {g.Ref.MetaIndex} is CUDA device memory: it has no CPU mapping to view. Use its CUDA pointer (cuda_ptr, __cuda_array_interface__, DLPack), or copy_to_cpu().");
                return null!;
            }

            rc = 0;
            return g.Guard.LeaseMappingAt(g.Ref.Version); // this handle's reference, not whatever the guard holds now
        }
        catch (ObjectDisposedException)
        {
            rc = LastError.Set(XmemStatus.Disposed, $"pool '{g.Guard.Pool.Name}' was closed, which unmapped slot {g.Guard.MetaIndex}'s memory for new views; views taken before the close still work. Take views before closing the pool.");
            return null!;
        }
    }

    /// <summary>Puts a lease in the table; drops it when that fails.</summary>
    internal static ulong Register(MappingLease lease)
    {
        try
        {
            return HandleTables.Leases.Add(lease);
        }
        catch
        {
            _ = lease.Release();
            throw;
        }
    }
}
