using System.Runtime.InteropServices;
using Xmem.Errors;
using Xmem.Interop;

namespace Xmem.SharedMemory;

/// <summary>Creating, opening, sizing and removing the files behind segments (open(2) in the shm directory,
/// which is what shm_open does, but with a configurable directory).</summary>
internal static class SegmentFile
{
    /// <summary>Creates a new object exclusively with exactly <paramref name="mode"/>. Throws PoolExistsException on EEXIST.</summary>
    internal static SafeFd CreateExclusive(string objectName, uint mode)
    {
        string path = PoolName.PathOf(objectName);
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, mode);
        if (fd < 0)
        {
            ThrowHelper.ThrowOsError("create shared-memory object", Marshal.GetLastPInvokeError(), path);
        }

        var handle = new SafeFd(fd);
        if (Libc.FChmod(fd, mode) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            _ = Libc.Unlink(path);
            ThrowHelper.ThrowOsError("fchmod", errno, path);
        }

        return handle;
    }

    /// <summary>Creates a new segment of a pool exclusively, with the pool's group and mode
    /// (<paramref name="access"/>, from the control segment's fstat): open(2) gives a new file the creator's own
    /// group, which the pool's other members may not be in, and narrows the mode by the umask. Returns null on
    /// EEXIST (the caller decides what the existing file is). A failure unlinks the half-made file and throws.</summary>
    internal static SafeFd? TryCreateExclusive(string objectName, SegmentAccess access)
    {
        string path = PoolName.PathOf(objectName);
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, access.Mode);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.EEXIST)
            {
                return null;
            }

            ThrowHelper.ThrowOsError("create shared-memory object", errno, path);
        }

        var handle = new SafeFd(fd);
        // The group first: fchown by a non-root caller may clear mode bits, fchmod then sets exactly the pool's.
        if (Libc.FChown(fd, uint.MaxValue, access.Gid) != 0 && !(access.WorldShared && Marshal.GetLastPInvokeError() == Errno.EPERM))
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            _ = Libc.Unlink(path);
            throw new PoolPermissionException($"could not give '{path}' the pool's group {access.Gid} (fchown: errno {errno}): this process is not a member of the group that owns the pool's control segment. Run it as a member of group {access.Gid} (see `id`, `newgrp`), or create the pool with a group every user of it is in.", errno);
        }

        if (Libc.FChmod(fd, access.Mode) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            _ = Libc.Unlink(path);
            ThrowHelper.ThrowOsError("fchmod", errno, path);
        }

        return handle;
    }

    /// <summary>True when this process can surely give the files it makes the pool's group (root, a world-shared pool,
    /// or a member of the group: effective or supplementary), asked of the kernel's credentials without making a file.
    /// False means only that it may not: the caller then finds out by making one (a capability such as CAP_CHOWN may
    /// still allow it).</summary>
    internal static unsafe bool SurelyCanGiveGroup(SegmentAccess access)
    {
        if (access.WorldShared || Libc.GetEUid() == 0 || Libc.GetEGid() == access.Gid)
        {
            return true;
        }

        Span<uint> groups = stackalloc uint[256];
        fixed (uint* p = groups)
        {
            int n = Libc.GetGroups(groups.Length, p);
            return n > 0 && groups[..n].Contains(access.Gid); // -1 (more than 256 groups, or an error): not sure
        }
    }

    /// <summary>Creates an unnamed object (O_TMPFILE) in the shared-memory directory with exactly
    /// <paramref name="mode"/>; <see cref="Publish"/> names it. A process that dies before that leaves nothing.</summary>
    internal static SafeFd CreateUnnamed(uint mode)
    {
        string dir = SharedMemoryDirectory.Path;
        int fd = Libc.Open(dir, Libc.O_RDWR | Libc.O_TMPFILE | Libc.O_CLOEXEC, mode);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.EOPNOTSUPP or Errno.EISDIR or Errno.EINVAL)
            {
                throw new XmemException(XmemStatus.OsError, $"create an unnamed file in '{dir}' (O_TMPFILE) failed: the file system does not support it. Point XMEM_SHM_DIR at a tmpfs (or ext4, xfs, btrfs) directory, or unset it to use /dev/shm.", errno);
            }

            ThrowHelper.ThrowOsError("create shared-memory object", errno, dir);
        }

        var handle = new SafeFd(fd);
        if (Libc.FChmod(fd, mode) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            ThrowHelper.ThrowOsError("fchmod", errno, dir);
        }

        return handle;
    }

    /// <summary>The owner, group and permission bits of an open segment, from the kernel (statx on the descriptor).</summary>
    internal static SegmentAccess AccessOf(SafeFd fd, string objectName) => AccessOf(fd, objectName, out _);

    /// <summary>As <see cref="AccessOf(SafeFd, string)"/>, and which file it is (the same system call).</summary>
    internal static SegmentAccess AccessOf(SafeFd fd, string objectName, out FileIdentity identity) =>
        AccessOf(fd, objectName, out identity, out _);

    /// <summary>As <see cref="AccessOf(SafeFd, string, out FileIdentity)"/>, and the file's current size in bytes
    /// (the same system call: an open needs no lseek as well).</summary>
    internal static SegmentAccess AccessOf(SafeFd fd, string objectName, out FileIdentity identity, out long size)
    {
        if (Libc.Statx(fd.Fd, "", Libc.AT_EMPTY_PATH, Libc.STATX_MODE | Libc.STATX_UID | Libc.STATX_GID | Libc.STATX_INO | Libc.STATX_SIZE, out Libc.StatX st) != 0)
        {
            ThrowHelper.ThrowOsError("fstat", Marshal.GetLastPInvokeError(), PoolName.PathOf(objectName));
        }

        identity = new FileIdentity(st.DevMajor, st.DevMinor, st.Ino);
        size = SizeField(st);
        return new SegmentAccess(st.Uid, st.Gid, st.Mode & 0x1FFu);
    }

    /// <summary>True when the name <paramref name="objectName"/> refers to the file <paramref name="identity"/> (one
    /// statx of the name, not following a symbolic link); false when it names nothing or another file, or cannot be
    /// looked at.</summary>
    internal static bool NameRefersTo(string objectName, FileIdentity identity)
    {
        if (Libc.Statx(Libc.AT_FDCWD, PoolName.PathOf(objectName), Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_INO, out Libc.StatX st) != 0)
        {
            return false;
        }

        return new FileIdentity(st.DevMajor, st.DevMinor, st.Ino) == identity;
    }

    /// <summary>True when an open segment is a regular file with the pool's group and mode (see <see cref="SegmentAccess"/>).</summary>
    internal static bool IsPoolFile(SafeFd fd, SegmentAccess access, string objectName) => IsPoolFile(fd, access, objectName, out _);

    /// <summary>As <see cref="IsPoolFile(SafeFd, SegmentAccess, string)"/>, and the file's current size in bytes (the
    /// same system call: a caller that checks the size next needs no lseek).</summary>
    internal static bool IsPoolFile(SafeFd fd, SegmentAccess access, string objectName, out long size)
    {
        if (Libc.Statx(fd.Fd, "", Libc.AT_EMPTY_PATH, Libc.STATX_TYPE | Libc.STATX_MODE | Libc.STATX_GID | Libc.STATX_SIZE, out Libc.StatX st) != 0)
        {
            ThrowHelper.ThrowOsError("fstat", Marshal.GetLastPInvokeError(), PoolName.PathOf(objectName));
        }

        size = SizeField(st);
        return (st.Mode & Libc.S_IFMT) == Libc.S_IFREG && access.Admits(st.Gid, st.Mode);
    }

    /// <summary>The kernel's size of the file (at most 2^63 - 1 on Linux); 0, too small for any segment, when the
    /// kernel did not fill it in.</summary>
    private static long SizeField(in Libc.StatX st) =>
        (st.Mask & Libc.STATX_SIZE) != 0 && st.Size <= long.MaxValue ? (long)st.Size : 0;

    /// <summary>What the name holds, without following a symbolic link. "Cannot tell" (any error but ENOENT) is
    /// Foreign: the pool then leaves the name alone.</summary>
    internal static SegmentOwnership OwnershipOf(string objectName, SegmentAccess access, out uint ownerUid)
    {
        ownerUid = uint.MaxValue;
        if (Libc.Statx(Libc.AT_FDCWD, PoolName.PathOf(objectName), Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_TYPE | Libc.STATX_MODE | Libc.STATX_UID | Libc.STATX_GID, out Libc.StatX st) != 0)
        {
            return Marshal.GetLastPInvokeError() == Errno.ENOENT ? SegmentOwnership.Missing : SegmentOwnership.Foreign;
        }

        ownerUid = st.Uid;
        return (st.Mode & Libc.S_IFMT) == Libc.S_IFREG && access.Admits(st.Gid, st.Mode) ? SegmentOwnership.Pool : SegmentOwnership.Foreign;
    }

    /// <summary>Removes a name, saying what happened (a removal the kernel refuses is reported, not ignored).</summary>
    internal static UnlinkOutcome TryUnlink(string objectName)
    {
        if (Libc.Unlink(PoolName.PathOf(objectName)) == 0)
        {
            return UnlinkOutcome.Removed;
        }

        return Marshal.GetLastPInvokeError() switch
        {
            Errno.ENOENT => UnlinkOutcome.Missing,
            Errno.EACCES or Errno.EPERM => UnlinkOutcome.Denied,
            _ => UnlinkOutcome.Failed,
        };
    }

    /// <summary>Gives an unnamed object from <see cref="CreateUnnamed"/> its name, atomically and never replacing an
    /// existing object: true when named, false when the name exists already (EEXIST).</summary>
    internal static bool Publish(SafeFd fd, string objectName)
    {
        string path = PoolName.PathOf(objectName);
        if (Libc.LinkAt(Libc.AT_FDCWD, $"/proc/self/fd/{fd.Fd}", Libc.AT_FDCWD, path, Libc.AT_SYMLINK_FOLLOW) == 0)
        {
            return true;
        }

        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.EEXIST)
        {
            return false;
        }

        if (errno == Errno.ENOENT && !Directory.Exists("/proc/self/fd"))
        {
            throw new XmemException(XmemStatus.OsError, $"name a shared-memory object (linkat) failed on '{path}': /proc is not mounted, and xmem names a new pool through /proc/self/fd. Mount /proc (mount -t proc proc /proc).", errno);
        }

        ThrowHelper.ThrowOsError("name a shared-memory object (linkat)", errno, path);
        return false;
    }

    /// <summary>Opens an existing object, or returns null when there is none (ENOENT).</summary>
    internal static SafeFd? TryOpen(string objectName, bool writable)
    {
        string path = PoolName.PathOf(objectName);
        int fd = Libc.Open(path, (writable ? Libc.O_RDWR : Libc.O_RDONLY) | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.ENOENT)
            {
                return null;
            }

            ThrowHelper.ThrowOsError("open shared-memory object", errno, path);
        }

        return new SafeFd(fd);
    }

    /// <summary>Sets the size of an empty file (just made, or truncated to 0) and, when <paramref name="reserve"/>,
    /// reserves every page now so that a full file system fails here with an out-of-space error instead of a SIGBUS on
    /// first touch. Reserving extends an empty file to <paramref name="size"/> by itself, so it is one system call
    /// (posix_fallocate), with ftruncate only where the file system cannot reserve.</summary>
    internal static void Size(SafeFd fd, long size, bool reserve, string objectName)
    {
        if (reserve)
        {
            int rc = Libc.PosixFallocate(fd.Fd, 0, size);
            if (rc == 0)
            {
                return;
            }

            if (rc != Errno.EOPNOTSUPP && rc != Errno.EINVAL)
            {
                ThrowHelper.ThrowOsError("posix_fallocate", rc, PoolName.PathOf(objectName));
            }
        }

        if (Libc.FTruncate(fd.Fd, size) != 0)
        {
            ThrowHelper.ThrowOsError("ftruncate", Marshal.GetLastPInvokeError(), PoolName.PathOf(objectName));
        }
    }

    /// <summary>The object's current size in bytes.</summary>
    internal static long SizeOf(SafeFd fd, string objectName)
    {
        long size = Libc.LSeek(fd.Fd, 0, Libc.SEEK_END);
        if (size < 0)
        {
            ThrowHelper.ThrowOsError("lseek", Marshal.GetLastPInvokeError(), PoolName.PathOf(objectName));
        }

        return size;
    }

    /// <summary>Gives the object <paramref name="existing"/> the name <paramref name="objectName"/> as well, atomically
    /// and only if that name is free: true when it was linked, false when the name exists already.</summary>
    internal static bool TryLink(string existing, string objectName)
    {
        string path = PoolName.PathOf(objectName);
        if (Libc.Link(PoolName.PathOf(existing), path) == 0)
        {
            return true;
        }

        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.EEXIST)
        {
            return false;
        }

        ThrowHelper.ThrowOsError("link shared-memory object", errno, path);
        return false;
    }

    /// <summary>Removes the object's name; true when it existed. Mappings stay valid until unmapped.</summary>
    internal static bool Unlink(string objectName) => Libc.Unlink(PoolName.PathOf(objectName)) == 0;
}
