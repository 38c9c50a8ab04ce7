namespace Xmem.Inspection;

/// <summary>One entry of a pool's process table (<c>xmem stat</c>).</summary>
public sealed record ProcessEntryInfo
{
    /// <summary>The entry's index (0..255).</summary>
    public required int Entry { get; init; }

    /// <summary>Process id recorded in the entry.</summary>
    public required int Pid { get; init; }

    /// <summary>Command name recorded in the entry (at most 15 bytes).</summary>
    public required string Command { get; init; }

    /// <summary>"active", "free" (alive but still registering), or "invalid" for an unknown state value.</summary>
    public required string State { get; init; }

    /// <summary>True while the entry's liveness lock is held (the process is alive); false when it died without
    /// detaching. A liveness that cannot be asked counts as alive.</summary>
    public required bool Alive { get; init; }

    /// <summary>References this process holds, summed over the slots (from its holdings segment).</summary>
    public int References { get; init; }

    /// <summary>Futex waiters this process has announced (blocked in an acquire).</summary>
    public int Waiters { get; init; }
}

/// <summary>A pool with its slots and processes (<c>xmem stat</c>).</summary>
public sealed record PoolDetails
{
    /// <summary>The same figures as <c>xmem ls</c>.</summary>
    public required PoolSummary Summary { get; init; }

    /// <summary>The slots asked for (by default those not free or holding memory), in index order.</summary>
    public required IReadOnlyList<SlotInfo> Slots { get; init; }

    /// <summary>Process-table entries that are in use or whose liveness lock is held.</summary>
    public required IReadOnlyList<ProcessEntryInfo> Processes { get; init; }
}

/// <summary>A segment file in the shared-memory directory that belongs to no existing pool instance: left by a pool
/// removed while a process was still using it, or by a crash during removal.</summary>
public sealed record OrphanSegment
{
    /// <summary>The file's name.</summary>
    public required string Name { get; init; }

    /// <summary>Its full path.</summary>
    public required string Path { get; init; }

    /// <summary>The pool name its name carries.</summary>
    public required string PoolName { get; init; }

    /// <summary>Its size in bytes.</summary>
    public long Bytes { get; init; }
}
