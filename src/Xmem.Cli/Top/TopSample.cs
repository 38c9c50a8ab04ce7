using Xmem.Inspection;

namespace Xmem.Cli.Top;

/// <summary>One sample of <c>xmem top</c>: every pool in the shared-memory directory with its rates over the last
/// interval (<c>xmem top --once --json</c> prints one).</summary>
internal sealed record TopSample
{
    /// <summary>When the sample was taken.</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>Seconds between this reading and the one the rates are computed from.</summary>
    public required double IntervalSeconds { get; init; }

    /// <summary>The shared-memory directory looked at.</summary>
    public required string Directory { get; init; }

    public required IReadOnlyList<TopPool> Pools { get; init; }
}

/// <summary>A pool in a <see cref="TopSample"/>.</summary>
internal sealed record TopPool
{
    public required string Name { get; init; }
    public required PoolStatus Status { get; init; }
    public string? Problem { get; init; }
    public int Capacity { get; init; }
    public int SlotsInUse { get; init; }
    public long LiveBytes { get; init; }
    public long MemoryBytes { get; init; }
    public long Acquires { get; init; }
    public double AcquiresPerSecond { get; init; }
    public long AcquireWaits { get; init; }
    public long Recoveries { get; init; }
    public long OrphansRemoved { get; init; }
    public IReadOnlyList<TopProcess> Processes { get; init; } = [];
    public IReadOnlyList<TopChannel> Channels { get; init; } = [];
}

/// <summary>An attached process of a pool.</summary>
internal sealed record TopProcess(int Pid, string Command, bool Alive);

/// <summary>A channel in a <see cref="TopSample"/>: counters, their rates over the interval, and whether it is the
/// pipeline's bottleneck (its depth stayed at its maximum: its receivers are the slowest stage).</summary>
internal sealed record TopChannel
{
    public required string Name { get; init; }
    public string? Mode { get; init; }
    public int Capacity { get; init; }
    public int Subscribers { get; init; }
    public int Depth { get; init; }
    public long Sent { get; init; }
    public long Received { get; init; }
    public double SendsPerSecond { get; init; }
    public double ReceivesPerSecond { get; init; }
    public int BlockedSenders { get; init; }
    public int BlockedReceivers { get; init; }
    public long SendWaits { get; init; }
    public long ReceiveWaits { get; init; }
    public double SendBlockedSeconds { get; init; }

    /// <summary>Fraction of the interval that senders spent waiting for room (summed over senders: 2.0 = two senders
    /// waited all the time).</summary>
    public double SendBlockedPerSecond { get; init; }

    /// <summary>Depth = capacity in this reading.</summary>
    public bool Full { get; init; }

    /// <summary>Full in this reading and the ones before it over at least one interval: the slowest stage is this
    /// channel's receivers.</summary>
    public bool Bottleneck { get; init; }

    public string? Problem { get; init; }
}
