using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// Removing a pool (docs/layout.md, "Removal"): explicit removal, removal of a stale pool (no live process, not
/// persistent), and a creator's abandonment of a pool it named but could not finish. Removers exclude each other with
/// the removal lock (an OFD lock, dropped by the kernel when its holder dies). The commit point is the one store of
/// State = Removed: before it an opener may still attach (and a stale-remover that sees it alive gives up); after it
/// openers fail and any remover that finds the pool finishes the unlinking.
/// </summary>
internal static unsafe class PoolRemoval
{
    /// <summary>Removes a pool and all its segments, live or not (<c>BufferPool.Remove</c>). False when there was
    /// no such pool.</summary>
    internal static bool Remove(string bare)
    {
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        if (fd is null)
        {
            return false;
        }

        // Removers exclude each other through the removal lock; one that holds it for long is waited on at most 2 s.
        long deadline = Environment.TickCount64 + 2000;
        bool locked;
        while (!(locked = Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte)) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(1);
        }

        List<string> denied;
        bool unlinked;
        try
        {
            ulong instance = MarkRemoved(fd, obj);
            denied = RemoveInstanceSegments(bare, instance, SegmentFile.AccessOf(fd, obj));
            unlinked = SegmentFile.Unlink(obj);
        }
        finally
        {
            if (locked)
            {
                Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
            }
        }

        if (denied.Count > 0)
        {
            throw new PoolPermissionException(DescribeDenied(bare, denied), Errno.EPERM);
        }

        return unlinked;
    }

    /// <summary>A creator that fails after naming its pool removes it as a remover would (under the removal lock,
    /// Removed before anything is unlinked), and unlinks the name only while it still names this instance.</summary>
    internal static void AbandonUnfinished(ControlSegment control)
    {
        SafeFd fd = control.Fd;
        if (!Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte))
        {
            return; // another remover has it: the pool is unfinished and nobody is in it, so that remover removes it
        }

        try
        {
            bool ours = control.NameStillNamesThisInstance();
            Volatile.Write(ref control.Header->State, LayoutConstants.PoolStateRemoved);
            _ = RemoveInstanceSegments(control.Bare, control.Instance, control.Access);
            if (ours)
            {
                _ = SegmentFile.Unlink(control.ObjectName);
            }
        }
        finally
        {
            Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
        }
    }

    /// <summary>Removes the pool at <paramref name="bare"/> when no live process is attached and it is not
    /// persistent. Returns true when removed (or gone already).</summary>
    internal static bool TryRemoveStale(string bare) => TryRemoveStale(bare, out _);

    /// <summary>As <see cref="TryRemoveStale(string)"/>; <paramref name="busy"/> tells that another remover held the
    /// removal lock, so the verdict is still open (theirs will follow).</summary>
    internal static bool TryRemoveStale(string bare, out bool busy)
    {
        busy = false;
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        if (fd is null)
        {
            return true;
        }

        if (!Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte))
        {
            busy = true;
            return false; // someone else is removing or replacing it
        }

        try
        {
            return RemoveStaleLocked(bare, obj, fd);
        }
        finally
        {
            Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
        }
    }

    private static bool RemoveStaleLocked(string bare, string obj, SafeFd fd)
    {
        long size = SegmentFile.SizeOf(fd, obj);
        if (size < LayoutConstants.HeaderSize)
        {
            if (ProcessRegistry.HasLiveProcess(fd))
            {
                return false; // no file of this version (its name is given to a sized file): leave it to its owner
            }

            _ = SegmentFile.Unlink(obj);
            return true;
        }

        using MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: true, PoolName.PathOf(obj));
        return RemoveStaleMapped(bare, obj, fd, (PoolHeader*)r.Address, SegmentFile.AccessOf(fd, obj));
    }

    /// <summary>The last process of a pool, detaching: removes it as <see cref="TryRemoveStale(string, out bool)"/>
    /// would, through its own descriptor and mapping rather than by opening the name again. Nothing is done when
    /// another remover holds the removal lock (its verdict follows), or when the name no longer names this instance
    /// (it was removed, and perhaps given to a new pool).</summary>
    internal static bool TryRemoveOwn(ControlSegment control)
    {
        SafeFd fd = control.Fd;
        if (!Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte))
        {
            return false;
        }

        try
        {
            // Under the removal lock nobody else unlinks this file's name, so a name that names it now still will.
            return control.NameStillNamesThisInstance()
                && RemoveStaleMapped(control.Bare, control.ObjectName, fd, control.Header, control.Access);
        }
        finally
        {
            Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
        }
    }

    /// <summary>With the removal lock of the control segment open at <paramref name="fd"/> held and its header mapped
    /// at <paramref name="h"/>: the stale removal's verdict and, when stale, the removal.</summary>
    private static bool RemoveStaleMapped(string bare, string obj, SafeFd fd, PoolHeader* h, SegmentAccess access)
    {
        bool ours = h->Magic == LayoutConstants.Magic;
        if (ours && Volatile.Read(ref h->State) == LayoutConstants.PoolStateRemoved)
        {
            // A remover died after the commit point: finish its job, whoever is still attached.
            _ = RemoveInstanceSegments(bare, h->InstanceId, access);
            _ = SegmentFile.Unlink(obj);
            return true;
        }

        if (ours && Volatile.Read(ref h->State) == LayoutConstants.PoolStateInitializing)
        {
            // Its creator locked entry 0 before naming it and publishes Ready while holding that lock: alive, it
            // is still writing it (and its State must not be touched); dead, nobody ever attached (Open refuses
            // an unfinished pool without a live creator), so it is removed at once.
            if (ProcessRegistry.HasLiveProcess(fd))
            {
                return false;
            }

            Volatile.Write(ref h->State, LayoutConstants.PoolStateRemoved);
            _ = RemoveInstanceSegments(bare, h->InstanceId, access);
            _ = SegmentFile.Unlink(obj);
            return true;
        }

        if (ours && (h->Flags & LayoutConstants.PoolFlagPersistent) != 0 && Volatile.Read(ref h->State) == LayoutConstants.PoolStateReady)
        {
            return false;
        }

        // Removing is published before the liveness checks, and an opener locks its entry before it reads the
        // state: either we see the opener alive, or the opener sees Removing (docs/layout.md, "Removal").
        if (ours)
        {
            _ = Interlocked.Exchange(ref h->State, LayoutConstants.PoolStateRemoving);
        }

        if (ProcessRegistry.HasLiveProcess(fd))
        {
            if (ours)
            {
                // A Removing found here was left by a remover that died (we hold the removal lock): put Ready.
                Volatile.Write(ref h->State, LayoutConstants.PoolStateReady);
            }

            return false;
        }

        // The commit point: from here on an opener fails cleanly and a remover that finds the pool finishes the
        // job, so a remover killed while unlinking never leaves a half-removed pool that looks usable.
        if (ours)
        {
            Volatile.Write(ref h->State, LayoutConstants.PoolStateRemoved);
        }

        // Segments it cannot unlink (other members' files) are left for `xmem gc` run by their owner or root,
        // which reports any it cannot remove either.
        _ = RemoveInstanceSegments(bare, ours ? h->InstanceId : 0, access);

        // While we hold the removal lock nobody else unlinks this name, so it still names this file.
        _ = SegmentFile.Unlink(obj);
        return true;
    }

    /// <summary>A look without any lock or write: the pool at <paramref name="bare"/> has this layout's header, is not
    /// persistent, and no process-table entry is alive. <see cref="TryRemoveStale(string, out bool)"/> decides.</summary>
    internal static bool LooksStale(string bare)
    {
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: false);
        if (fd is null || SegmentFile.SizeOf(fd, obj) < LayoutConstants.HeaderSize)
        {
            return false;
        }

        using (MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: false, PoolName.PathOf(obj)))
        {
            var h = (PoolHeader*)r.Address;
            if (h->Magic != LayoutConstants.Magic || h->LayoutVersion != LayoutConstants.LayoutVersion
                || (Volatile.Read(ref h->Flags) & LayoutConstants.PoolFlagPersistent) != 0)
            {
                return false;
            }
        }

        return !ProcessRegistry.HasLiveProcess(fd);
    }

    /// <summary>The report of a removal that left segments the kernel would not let this process unlink.</summary>
    private static string DescribeDenied(string bare, List<string> denied)
    {
        string first = string.Join(", ", denied.Take(4));
        string more = denied.Count > 4 ? $" and {denied.Count - 4} more" : "";
        return $"pool '{bare}' was removed, but {denied.Count} of its segments could not be unlinked ({first}{more}): they were made by other users, and in {SharedMemoryDirectory.Path} (a sticky directory) only a file's owner or root may remove it. Run `xmem gc` as their owner or as root.";
    }

    /// <summary>Publishes State = Removed (the commit point of a removal: from here on openers fail and any remover
    /// finishes the job) and returns the instance id; 0 when the segment is no pool of ours.</summary>
    private static ulong MarkRemoved(SafeFd fd, string obj)
    {
        if (SegmentFile.SizeOf(fd, obj) < LayoutConstants.HeaderSize)
        {
            return 0;
        }

        using MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: true, PoolName.PathOf(obj));
        var h = (PoolHeader*)r.Address;
        if (h->Magic != LayoutConstants.Magic)
        {
            return 0;
        }

        Interlocked.Exchange(ref h->State, LayoutConstants.PoolStateRemoved);
        return h->InstanceId;
    }

    /// <summary>Unlinks the data and holdings segments of one pool instance (instance 0: of every instance). Only
    /// the pool's own files (its group and mode, <paramref name="access"/>) are unlinked, never a stranger's; returns
    /// the pool's files that the kernel would not let this process unlink (made by another member).</summary>
    private static List<string> RemoveInstanceSegments(string bare, ulong instance, SegmentAccess access)
    {
        var denied = new List<string>();
        string dir = SharedMemoryDirectory.Path;
        string prefix = instance == 0 ? SegmentNames.PoolPrefix(bare) : SegmentNames.InstancePrefix(bare, instance);
        try
        {
            foreach (string path in Directory.EnumerateFiles(dir))
            {
                // Filtered here rather than by a search pattern, whose "name.*" would match "name" itself.
                string file = Path.GetFileName(path);
                if (!file.StartsWith(prefix, StringComparison.Ordinal) || (instance == 0 && !(SegmentNames.TryParse(file, bare, out SegmentName n) && n.Kind != SegmentKind.Control)))
                {
                    continue; // not ours, or another pool whose name merely starts with this one's
                }

                if (SegmentFile.OwnershipOf(file, access, out _) == SegmentOwnership.Pool && SegmentFile.TryUnlink(file) == UnlinkOutcome.Denied)
                {
                    denied.Add(file);
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return denied;
    }
}
