namespace Xmem.Inspection;

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
