using System.Text;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>
/// Reads the channels of one pool instance from outside (docs/layout.md, "Channels"): each segment under a channel
/// name of the instance, copied with pread (never mapped), its header validated as an opener validates it before any
/// field is used, then its counters and ring positions. Nothing read is trusted: counters are shown as they are
/// (clamped to the non-negative range of a long), a depth is clamped to the ring's size, a blocked bit counts only for
/// an entry that is alive and shows channel waiters. A segment that fails a check is listed with its problem.
/// </summary>
internal static class ChannelSnapshot
{
    /// <summary>The channels of instance <paramref name="instance"/> of pool <paramref name="bare"/>, by name.
    /// <paramref name="waiting"/> says whether process entry i is alive with a thread waiting in a channel.</summary>
    internal static List<ChannelInfo> Read(string bare, ulong instance, Func<int, bool> waiting)
    {
        string prefix = SegmentNames.InstancePrefix(bare, instance) + "c";
        var channels = new List<ChannelInfo>();
        foreach (string file in SharedMemoryDirectory.ListObjects())
        {
            if (!file.StartsWith(prefix, StringComparison.Ordinal) || !SegmentNames.IsValidChannelName(file.AsSpan(prefix.Length)))
            {
                continue;
            }

            ChannelInfo? info = ReadOne(file, file[prefix.Length..], instance, waiting);
            if (info is not null)
            {
                channels.Add(info);
            }
        }

        channels.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return channels;
    }

    /// <summary>One channel; null when its file vanished meanwhile.</summary>
    private static ChannelInfo? ReadOne(string file, string name, ulong instance, Func<int, bool> waiting)
    {
        try
        {
            using SegmentReader? r = SegmentReader.TryOpen(file);
            return r is null ? null : ReadOpen(r, name, instance, waiting);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or XmemException)
        {
            return new ChannelInfo { Name = name, Problem = e.Message };
        }
    }

    private static unsafe ChannelInfo ReadOpen(SegmentReader r, string name, ulong instance, Func<int, bool> waiting)
    {
        ChannelHeader h = default;
        if (r.FileSize < ChannelLayout.HeaderSize || r.Read(new Span<ChannelHeader>(ref h), 0) != 1)
        {
            return new ChannelInfo { Name = name, Problem = $"the segment is {r.FileSize} bytes, shorter than its header" };
        }

        int rings = h.Mode == ChannelLayout.ModeFanOut ? ChannelLayout.MaxSubscribers : 1;
        byte[] expected = Encoding.ASCII.GetBytes(name);
        if (h.Magic != ChannelLayout.Magic || h.Version != ChannelLayout.Version || h.State != ChannelLayout.StateReady
            || h.Mode > ChannelLayout.ModeFanOut || h.Depth < 1 || h.Depth > ChannelLayout.MaxDepth || (h.Depth & (h.Depth - 1)) != 0
            || h.RingCount != rings || h.PoolInstance != instance || h.SegmentSize != ChannelLayout.SegmentSize(h.Depth, rings)
            || r.FileSize < h.SegmentSize || h.NameLength != expected.Length
            || !new ReadOnlySpan<byte>(h.Name, h.NameLength).SequenceEqual(expected)) // NameLength checked first: ≤ 48
        {
            return new ChannelInfo { Name = name, Problem = "the segment does not hold a valid channel of this layout version" };
        }

        // The ring headers, each copied once; a depth outside 0..Depth (a torn or foreign pair of positions) is clamped.
        long stride = ChannelLayout.RingStride(h.Depth);
        int depth = 0, subscribers = 0;
        for (int k = 0; k < rings; k++)
        {
            RingHeader ring = default;
            if (r.Read(new Span<RingHeader>(ref ring), ChannelLayout.HeaderSize + (k * stride)) != 1)
            {
                continue;
            }

            bool active = SubscriberWord.State(ring.Subscriber) == SubscriberWord.Active;
            subscribers += active ? 1 : 0;
            if (h.Mode == ChannelLayout.ModeQueue || active)
            {
                depth = Math.Max(depth, (int)Math.Clamp((long)(ring.Tail - ring.Head), 0, h.Depth));
            }
        }

        int blockedSenders = BlockedMask.Count(h.BlockedSenders, waiting); // h is a local copy: no fixing needed
        int blockedReceivers = BlockedMask.Count(h.BlockedReceivers, waiting);
        return new ChannelInfo
        {
            Name = name,
            Mode = h.Mode == ChannelLayout.ModeFanOut ? "fanOut" : "queue",
            Capacity = h.Depth,
            Subscribers = h.Mode == ChannelLayout.ModeFanOut ? subscribers : 0,
            Depth = depth,
            Sent = Shown(h.Sent),
            Received = Shown(h.Received),
            SendWaits = Shown(h.SendWaits),
            ReceiveWaits = Shown(h.ReceiveWaits),
            SendBlockedNs = Shown(h.SendBlockedNs),
            BlockedSenders = blockedSenders,
            BlockedReceivers = blockedReceivers,
        };
    }

    /// <summary>A counter as shown: a 64-bit count beyond long's range (only a damaged segment gets there) is capped.</summary>
    internal static long Shown(ulong counter) => (long)Math.Min(counter, long.MaxValue);
}
