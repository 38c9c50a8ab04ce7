namespace Xmem.Native.Handles;

/// <summary>The handle tables of the process.</summary>
internal static class HandleTables
{
    internal static readonly HandleTable<PoolHandle> Pools = new(HandleKind.Pool);
    internal static readonly HandleTable<GuardHandle> Guards = new(HandleKind.Guard);
    internal static readonly HandleTable<Pool.MappingLease> Leases = new(HandleKind.Lease);
    internal static readonly HandleTable<ChannelHandle> Channels = new(HandleKind.Channel);
    internal static readonly HandleTable<SubscriptionHandle> Subscriptions = new(HandleKind.Subscription);
}
