namespace Xmem.SharedMemory;

/// <summary>
/// The group and permission bits that every segment of a pool carries: those of the pool's control segment as the
/// kernel reports them (fstat of its descriptor), never a field of shared memory, which any member can write. The
/// creator of a segment gives it this group and mode (fchown, fchmod) whoever it is, so every member can open what
/// any other member made.
/// </summary>
/// <remarks>
/// It also tells the pool's own files from a stranger's: a file whose group is not the pool's group could only have
/// been made by a process outside the group (chown to a group needs membership), so the pool never uses, reuses or
/// unlinks it. The mode is only the permission bits (0777): set-id and sticky bits are never copied.
/// </remarks>
internal readonly record struct SegmentAccess(uint Uid, uint Gid, uint Mode)
{
    /// <summary>True when the mode lets every user read and write (o+rw): then there is no stranger, so the group
    /// does not matter and a user outside it may make segments (it cannot fchown them to a group it is not in).</summary>
    internal bool WorldShared => (Mode & 0x6) == 0x6;

    /// <summary>True when a file with this group and mode can be one of the pool's own segments.</summary>
    internal bool Admits(uint gid, uint mode) => (gid == Gid || WorldShared) && (mode & 0xFFF) == Mode;

    public override string ToString() => $"group {Gid}, mode {Convert.ToString(Mode, 8).PadLeft(4, '0')}";
}

/// <summary>What a removal of one segment name did.</summary>
internal enum UnlinkOutcome
{
    /// <summary>The name was removed.</summary>
    Removed,

    /// <summary>There was no such name.</summary>
    Missing,

    /// <summary>The kernel refused (EACCES/EPERM): in a sticky directory such as /dev/shm only a file's owner (or
    /// root) may remove it, so a segment made by another member stays until its owner or root removes it.</summary>
    Denied,

    /// <summary>Another error (EBUSY, EROFS, ...).</summary>
    Failed,
}

/// <summary>What the file at a segment's name is.</summary>
internal enum SegmentOwnership
{
    /// <summary>No file of that name.</summary>
    Missing,

    /// <summary>A regular file with the pool's group and mode: one of the pool's segments (or one being made).</summary>
    Pool,

    /// <summary>Anything else (another group or mode, a symbolic link, a directory): made by a stranger; never used,
    /// reused or unlinked by the pool.</summary>
    Foreign,
}
