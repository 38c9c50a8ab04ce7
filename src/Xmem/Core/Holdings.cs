using Xmem.Errors;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// A holdings segment (docs/layout.md, "Holdings"): one 8-byte holding (generation, count) per slot, the references a
/// process-table entry's process holds through guards. This process's own is made at attach and mapped until its pool
/// lease goes; a dead entry's is opened only for its recovery.
/// Invariants: only the entry's owner (or its recoverer, holding the entry's liveness lock) writes it, and only under
/// the slot's lock with the slot journal naming it (see <see cref="SlotTable.CommitAttributed"/>). A file of that name
/// that is not the pool's (another group or mode) is never trusted nor unlinked.
/// </summary>
internal sealed unsafe class Holdings
{
    private Holdings(MappedRegion region)
    {
        Region = region;
        Words = (ulong*)region.Address;
    }

    internal MappedRegion Region { get; }

    /// <summary>The holding of slot s is <c>Words[s]</c>.</summary>
    internal ulong* Words { get; }

    internal static string ObjectName(ControlSegment c, int entry) => PoolName.HoldingsObject(c.Bare, c.Instance, entry);

    /// <summary>Makes and maps the holdings segment of entry <paramref name="entry"/>, whose liveness lock this process
    /// holds. Null when the name is held by a file the pool did not make (the entry is then skipped: a stranger must
    /// not lock the pool's users out by pre-creating names it can see in /dev/shm). <paramref name="made"/> tells
    /// whether a new file was made (a failure after this must unlink it).</summary>
    internal static Holdings? CreateOwn(ControlSegment c, int entry, out bool made)
    {
        string obj = ObjectName(c, entry);
        using SafeFd? fd = MakeSegment(c, obj, out made);
        if (fd is null)
        {
            return null;
        }

        long bytes = Math.Max(8L * c.Capacity, LayoutConstants.PageSize);
        if (!made)
        {
            SegmentFile.Size(fd, 0, reserve: false, obj); // a reused file starts from zeros
        }

        SegmentFile.Size(fd, bytes, reserve: true, obj);
        return new Holdings(MappedRegion.Map(fd.Fd, bytes, writable: true, PoolName.PathOf(obj)));
    }

    /// <summary>An existing file of the name is a leftover of a member that died before publishing its entry (it
    /// holds nothing): unlinked and made again, or, when the kernel will not let this process unlink it (a sticky
    /// /dev/shm: only its owner may), reused — it has the pool's group and mode, so this process can write it. A file
    /// of another group or mode is a stranger's: null, the file left alone.</summary>
    private static SafeFd? MakeSegment(ControlSegment c, string obj, out bool made)
    {
        made = false;
        for (int attempt = 0; attempt < 3; attempt++)
        {
#pragma warning disable CA2000 // returned when made; null on the paths that loop or return null (the analyzer loses that across the loop)
            SafeFd? fd = SegmentFile.TryCreateExclusive(obj, c.Access);
#pragma warning restore CA2000
            if (fd is not null)
            {
                made = true;
                return fd;
            }

            if (SegmentFile.OwnershipOf(obj, c.Access, out _) == SegmentOwnership.Foreign)
            {
                return null;
            }

            if (SegmentFile.TryUnlink(obj) is UnlinkOutcome.Removed or UnlinkOutcome.Missing)
            {
                continue;
            }

#pragma warning disable CA2000 // returned when the pool's, else disposed in the finally; null on the paths that loop (the analyzer loses that across the loop)
            SafeFd? existing = TryOpenPermitted(obj, out bool denied);
#pragma warning restore CA2000
            if (existing is null)
            {
                if (denied)
                {
                    return null;
                }

                continue;
            }

            bool ours = false;
            try
            {
                ours = SegmentFile.IsPoolFile(existing, c.Access, obj);
            }
            finally
            {
                if (!ours)
                {
                    existing.Dispose(); // a stranger's file, or fstat failed: not kept
                }
            }

            if (ours)
            {
                return existing;
            }
        }

        return null;
    }

    /// <summary>Opens the file of the name read-write; null when there is none, or (<paramref name="denied"/>) when
    /// the kernel will not let this process open it.</summary>
    private static SafeFd? TryOpenPermitted(string obj, out bool denied)
    {
        denied = false;
        try
        {
            return SegmentFile.TryOpen(obj, writable: true);
        }
        catch (PoolPermissionException)
        {
            denied = true;
            return null;
        }
    }

    /// <summary>Opens and maps a dead entry's holdings segment for its recovery. Null when there is none, when it is
    /// too small to hold every slot, or when the file of that name is not the pool's (then the dead process never made
    /// its own: it would have taken another entry). <paramref name="exists"/> tells that the pool's own file is there
    /// (to be unlinked once recovered), mapped or not.</summary>
    internal static Holdings? OpenDead(ControlSegment c, int entry, out bool exists)
    {
        exists = false;
        string obj = ObjectName(c, entry);
        using SafeFd? fd = TryOpenPermitted(obj, out _);
        if (fd is null || !SegmentFile.IsPoolFile(fd, c.Access, obj, out long size))
        {
            return null;
        }

        exists = true;
        return size >= 8L * c.Capacity ? new Holdings(MappedRegion.Map(fd.Fd, 8L * c.Capacity, writable: true, PoolName.PathOf(obj))) : null;
    }
}
