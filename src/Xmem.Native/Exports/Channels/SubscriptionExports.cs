using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Fan-out subscription exports (xmem.h, "channels"): every subscriber of a fan-out channel receives every
/// message sent after it subscribed. A subscription holds one use of its channel handle, so the ring it reads stays
/// mapped until it closes.</summary>
internal static unsafe class SubscriptionExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_subscription_receive")]
    internal static int SubscriptionReceive(ulong subscription, long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnSubscription(subscription, new Receive(timeoutNs, flags, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_subscription_close")]
    internal static int SubscriptionClose(ulong subscription) =>
        Export.Removing(HandleTables.Subscriptions, "subscription", subscription, default(Close));

    private readonly struct Receive(long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo) : IExportBody<SubscriptionHandle>
    {
        public int Check() => ChannelExports.CheckReceive(timeoutNs, flags, outGuard);

        public int Run(SubscriptionHandle s)
        {
            ChannelHandle c = s.Channel;
            bool writable = (flags & ChannelExports.ReceiveWritable) != 0;
            BufferRef r;
            if (timeoutNs < 0)
            {
                r = s.Subscription.ReceiveRef(writable);
            }
            else if (!s.Subscription.TryReceiveRef(TimeSpan.FromTicks(timeoutNs / 100), out r, writable))
            {
                return ChannelExports.NothingReceived(c.Channel.Name, timeoutNs);
            }

            return GuardHandles.Register(r, c.Owner, outGuard, outInfo);
        }
    }

    private readonly struct Close : IExportBody<SubscriptionHandle>
    {
        public int Check() => 0;

        public int Run(SubscriptionHandle s)
        {
            s.Exit(); // leaves the channel now, or when the last receive in flight returns
            return 0;
        }
    }
}
