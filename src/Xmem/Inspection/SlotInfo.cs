namespace Xmem.Inspection;

/// <summary>The state a slot's word says it is in.</summary>
public enum SlotState
{
    /// <summary>No live buffer; its memory (if any) is kept for the next acquire that fits.</summary>
    Free,

    /// <summary>A process is acquiring it.</summary>
    Acquiring,

    /// <summary>Holds a live buffer.</summary>
    Live,

    /// <summary>The word or record holds values outside the layout.</summary>
    Invalid,
}

/// <summary>References to one slot held by one process (recorded in its holdings segment).</summary>
public sealed record SlotHolder
{
    /// <summary>The process-table entry.</summary>
    public required int Entry { get; init; }

    /// <summary>The process id recorded in that entry.</summary>
    public required int Pid { get; init; }

    /// <summary>References held (guards).</summary>
    public required int Count { get; init; }

    /// <summary>False when the holder died without detaching.</summary>
    public required bool Alive { get; init; }
}

/// <summary>One slot of a pool (<c>xmem stat</c>).</summary>
public sealed record SlotInfo
{
    /// <summary>The slot's index (its meta index).</summary>
    public required int Index { get; init; }

    /// <summary>Free, acquiring, live, or invalid.</summary>
    public required SlotState State { get; init; }

    /// <summary>Bytes of the live buffer (0 when free).</summary>
    public long Size { get; init; }

    /// <summary>Bytes of memory kept for this slot (its data segment), live or free.</summary>
    public long MemoryBytes { get; init; }

    /// <summary>Reference count.</summary>
    public int Count { get; init; }

    /// <summary>Generation, incremented by each acquire.</summary>
    public uint Generation { get; init; }

    /// <summary>Generation of the slot's data segment (part of its name).</summary>
    public uint MemoryGeneration { get; init; }

    /// <summary>Process-table entry that has the slot's word locked at this moment, or null.</summary>
    public int? LockedByEntry { get; init; }

    /// <summary>"cpu", "cuda" or "none".</summary>
    public required string Kind { get; init; }

    /// <summary>The processes that hold references to this generation of the slot.</summary>
    public required IReadOnlyList<SlotHolder> Holders { get; init; }

    /// <summary>References held by no process (<see cref="Count"/> minus the holders' counts): in flight between
    /// processes, set with SetRefCount/AddRef, or preallocated.</summary>
    public int InFlight { get; init; }

    /// <summary>What is inconsistent about the slot (always set when <see cref="State"/> is Invalid); otherwise null.</summary>
    public string? Problem { get; init; }
}
