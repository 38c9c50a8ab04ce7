using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>View-lease exports (xmem.h, "view leases"): a lease keeps a CPU buffer's mapping alive for a view,
/// independently of the guard (see <see cref="LeaseHandles"/>).</summary>
internal static unsafe class LeaseExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_lease_view")]
    internal static int GuardLeaseView(ulong guard, ulong* outLease, nint* outPtr, long* outSize) =>
        Export.OnGuard(guard, new LeaseView(outLease, outPtr, outSize));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_lease_release")]
    internal static int LeaseRelease(ulong lease) => Export.Removing(HandleTables.Leases, "lease", lease, default(Release));

    private readonly struct LeaseView(ulong* outLease, nint* outPtr, long* outSize) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outLease, "out_lease");

        public int Run(GuardHandle g)
        {
            MappingLease lease = LeaseHandles.Take(g, out int rc);
            if (rc != 0)
            {
                return rc;
            }

            *outLease = LeaseHandles.Register(lease);
            if (outPtr is not null)
            {
                *outPtr = lease.Address;
            }

            if (outSize is not null)
            {
                *outSize = lease.Length;
            }

            return 0;
        }
    }

    private readonly struct Release : IExportBody<MappingLease>
    {
        public int Check() => 0;

        public int Run(MappingLease lease)
        {
            _ = lease.Release();
            return 0;
        }
    }
}
