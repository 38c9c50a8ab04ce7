namespace Xmem.Channels;

/// <summary>A ring's DataEpoch as an <see cref="Core.EventWord"/>: a sleeper sets bit 0 ("a receiver sleeps") before
/// it sleeps, so that the next sender's add wakes it (docs/layout.md, "Sleeping").</summary>
internal sealed unsafe class RingDataWord(ChannelSegment segment, int ring) : Core.EventWord(&segment.Ring(ring)->DataEpoch)
{
    internal override void Sleep(uint seen, long timeoutNs) => ChannelSegment.SleepOn(Word, seen, timeoutNs);
}
