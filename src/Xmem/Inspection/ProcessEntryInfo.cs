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
