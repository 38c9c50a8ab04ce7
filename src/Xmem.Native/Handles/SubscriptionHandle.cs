namespace Xmem.Native.Handles;

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
