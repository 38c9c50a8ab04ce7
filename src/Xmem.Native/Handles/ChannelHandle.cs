namespace Xmem.Native.Handles;

/// <summary>A channel behind a C handle. Closing it unmaps the channel's segment, so a close must not race a send or
/// receive on another thread: the count of users orders them (see <see cref="CountedTarget"/>). Calls also enter the
/// pool handle, so that the pool is not disposed under them either.</summary>
internal sealed class ChannelHandle(BufferChannel channel, PoolHandle owner) : CountedTarget
{
    internal BufferChannel Channel { get; } = channel;

    internal PoolHandle Owner { get; } = owner;

    protected override void Close() => Channel.Dispose();
}
