using System.Diagnostics;
using Xmem.Inspection;

namespace Xmem.Cli.Top;

/// <summary>
/// Takes the samples of <c>xmem top</c>: reads every pool (<see cref="PoolInspector"/>, read-only, without attaching)
/// and turns the counters into rates against the previous reading of the same pool instance and channel. Counters
/// are numbers to show: a counter that went down (a pool made again, a damaged segment) gives a rate of 0, never a
/// negative one. A channel is the bottleneck when it was full in this reading and in the previous one.
/// </summary>
internal sealed class TopSampler
{
    private readonly Dictionary<(string Pool, ulong Instance), Reading> _previous = [];
    private long _previousAt;

    private sealed record Reading(long Acquires, Dictionary<string, ChannelInfo> Channels, HashSet<string> Full);

    /// <summary>Reads every pool now; rates are over the time since the previous call (0 on the first).</summary>
    internal TopSample Sample()
    {
        long now = Stopwatch.GetTimestamp();
        double seconds = _previousAt == 0 ? 0 : Stopwatch.GetElapsedTime(_previousAt, now).TotalSeconds;
        _previousAt = now;
        var pools = new List<TopPool>();
        var seen = new HashSet<(string, ulong)>();
        foreach (PoolSummary listed in PoolInspector.ListPools())
        {
            pools.Add(SamplePool(listed, seconds, seen));
        }

        foreach (var key in _previous.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            _previous.Remove(key);
        }

        return new TopSample { Time = DateTimeOffset.Now, IntervalSeconds = seconds, Directory = SharedMemoryDirectory.Path, Pools = pools };
    }

    private TopPool SamplePool(PoolSummary listed, double seconds, HashSet<(string, ulong)> seen)
    {
        PoolDetails d;
        try
        {
            d = listed.Status is PoolStatus.Live or PoolStatus.Stale ? PoolInspector.Inspect(listed.Name) : new PoolDetails { Summary = listed, Slots = [], Processes = [] };
        }
        catch (PoolNotFoundException)
        {
            d = new PoolDetails { Summary = listed with { Status = PoolStatus.Removing }, Slots = [], Processes = [] };
        }

        PoolSummary p = d.Summary;
        var key = (p.Name, p.InstanceId);
        _ = seen.Add(key);
        _previous.TryGetValue(key, out Reading? before);
        var channels = new List<TopChannel>();
        var byName = new Dictionary<string, ChannelInfo>(StringComparer.Ordinal);
        var full = new HashSet<string>(StringComparer.Ordinal);
        foreach (ChannelInfo c in d.Channels)
        {
            byName[c.Name] = c;
            bool isFull = c.Problem is null && c.Capacity > 0 && c.Depth >= c.Capacity;
            if (isFull)
            {
                full.Add(c.Name);
            }

            ChannelInfo? b = null;
            before?.Channels.TryGetValue(c.Name, out b);
            channels.Add(new TopChannel
            {
                Name = c.Name,
                Mode = c.Mode,
                Capacity = c.Capacity,
                Subscribers = c.Subscribers,
                Depth = c.Depth,
                Sent = c.Sent,
                Received = c.Received,
                SendsPerSecond = Rate(c.Sent, b?.Sent, seconds),
                ReceivesPerSecond = Rate(c.Received, b?.Received, seconds),
                BlockedSenders = c.BlockedSenders,
                BlockedReceivers = c.BlockedReceivers,
                SendWaits = c.SendWaits,
                ReceiveWaits = c.ReceiveWaits,
                SendBlockedSeconds = c.SendBlockedNs / 1e9,
                SendBlockedPerSecond = Rate(c.SendBlockedNs, b?.SendBlockedNs, seconds) / 1e9,
                Full = isFull,
                Bottleneck = isFull && before is not null && before.Full.Contains(c.Name),
                Problem = c.Problem,
            });
        }

        _previous[key] = new Reading(p.Acquires, byName, full);
        return new TopPool
        {
            Name = p.Name,
            Status = p.Status,
            Problem = p.Problem,
            Capacity = p.Capacity,
            SlotsInUse = p.SlotsInUse,
            LiveBytes = p.LiveBytes,
            MemoryBytes = p.MemoryBytes,
            Acquires = p.Acquires,
            AcquiresPerSecond = Rate(p.Acquires, before?.Acquires, seconds),
            AcquireWaits = p.AcquireWaits,
            Recoveries = p.Recoveries,
            OrphansRemoved = p.OrphansRemoved,
            Processes = [.. d.Processes.Where(e => e.Alive || e.State == "active").Select(e => new TopProcess(e.Pid, e.Command, e.Alive))],
            Channels = channels,
        };
    }

    /// <summary>Per second over <paramref name="seconds"/>; 0 without a previous reading or when the counter went down.</summary>
    private static double Rate(long now, long? before, double seconds) =>
        before is { } b && seconds > 0 && now >= b ? (now - b) / seconds : 0;
}
