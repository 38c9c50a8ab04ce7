namespace Xmem.Channels;

/// <summary>A ring's DataEpoch as an <see cref="Core.EventWord"/>: a sleeper sets bit 0 ("a receiver sleeps") before
/// it sleeps, so that the next sender's add wakes it (docs/layout.md, "Sleeping"). A watcher leases the channel's
/// mapping while it watches, so a channel disposed meanwhile stays mapped until the watcher has let go.</summary>
internal sealed unsafe class RingDataWord(ChannelSegment segment, int ring) : Core.EventWord(&segment.Ring(ring)->DataEpoch)
{
    internal override void BeginWatch()
    {
        bool leased = false;
        segment.Region.DangerousAddRef(ref leased); // throws ObjectDisposedException once the channel is closed
    }

    internal override void EndWatch() => segment.Region.DangerousRelease();

    internal override void Sleep(uint seen, long timeoutNs) => ChannelSegment.SleepOn(Word, seen, timeoutNs);
}
