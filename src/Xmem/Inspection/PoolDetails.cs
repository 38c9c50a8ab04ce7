namespace Xmem.Inspection;

/// <summary>A pool with its slots and processes (<c>xmem stat</c>).</summary>
public sealed record PoolDetails
{
    /// <summary>The same figures as <c>xmem ls</c>.</summary>
    public required PoolSummary Summary { get; init; }

    /// <summary>The slots asked for (by default those not free or holding memory), in index order.</summary>
    public required IReadOnlyList<SlotInfo> Slots { get; init; }

    /// <summary>Process-table entries that are in use or whose liveness lock is held.</summary>
    public required IReadOnlyList<ProcessEntryInfo> Processes { get; init; }

    /// <summary>The pool's channels with their counters, by name.</summary>
    public IReadOnlyList<ChannelInfo> Channels { get; init; } = [];
}
