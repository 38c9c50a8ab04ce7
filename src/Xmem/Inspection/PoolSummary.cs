namespace Xmem.Inspection;

/// <summary>What an inspection found a pool's control segment to be.</summary>
public enum PoolStatus
{
    /// <summary>At least one attached process is alive.</summary>
    Live,

    /// <summary>No attached process is alive: the pool is left over (removed by <c>xmem gc</c> unless persistent).</summary>
    Stale,

    /// <summary>Its creator is still writing the header.</summary>
    Initializing,

    /// <summary>A process is removing it.</summary>
    Removing,

    /// <summary>The control segment breaks the layout (see <see cref="PoolSummary.Problem"/>).</summary>
    Corrupt,

    /// <summary>The control segment was written by an incompatible layout version of xmem.</summary>
    Incompatible,

    /// <summary>This user may not read the control segment.</summary>
    Inaccessible,
}

/// <summary>One pool as seen from outside, without attaching to it (<c>xmem ls</c>). A snapshot: while processes use
/// the pool, the counts may already have changed, and fields read at slightly different times may disagree.</summary>
public sealed record PoolSummary
{
    /// <summary>The pool's name, without the leading '/'.</summary>
    public required string Name { get; init; }

    /// <summary>Live, stale, or why it cannot be read.</summary>
    public required PoolStatus Status { get; init; }

    /// <summary>What is wrong when <see cref="Status"/> is Corrupt, Incompatible or Inaccessible; otherwise null.</summary>
    public string? Problem { get; init; }

    /// <summary>Path of the control segment.</summary>
    public required string Path { get; init; }

    /// <summary>Number of slots (0 when unreadable).</summary>
    public int Capacity { get; init; }

    /// <summary>Slots holding a live buffer (or being acquired).</summary>
    public int SlotsInUse { get; init; }

    /// <summary>Bytes of the live buffers (their requested sizes).</summary>
    public long LiveBytes { get; init; }

    /// <summary>Bytes of shared memory the slots keep (data segments, live or free), plus the control segment.</summary>
    public long MemoryBytes { get; init; }

    /// <summary>Attached processes that are alive.</summary>
    public int AttachedProcesses { get; init; }

    /// <summary>Process-table entries whose process died without detaching (their references are reclaimed by the next
    /// process that needs a slot, or by <c>xmem gc</c>).</summary>
    public int DeadProcesses { get; init; }

    /// <summary>True when the pool outlives its processes until removed.</summary>
    public bool Persistent { get; init; }

    /// <summary>Permission bits of the pool's segments: the control segment's, from the kernel (fstat).</summary>
    public int Mode { get; init; }

    /// <summary>Identifier of this incarnation of the pool (its segments' names carry it in hex).</summary>
    public ulong InstanceId { get; init; }

    /// <summary>Process id of the creator.</summary>
    public int CreatorPid { get; init; }

    /// <summary>When the pool was created, if the header says so plausibly.</summary>
    public DateTimeOffset? Created { get; init; }

    /// <summary>Slots claimed by acquires, ever (a counter: only grows).</summary>
    public long Acquires { get; init; }

    /// <summary>Acquires that found the pool full and waited for a free slot.</summary>
    public long AcquireWaits { get; init; }

    /// <summary>Entries of dead processes recovered (their references given back).</summary>
    public long Recoveries { get; init; }

    /// <summary>Orphaned data segments unlinked by recoveries.</summary>
    public long OrphansRemoved { get; init; }
}
