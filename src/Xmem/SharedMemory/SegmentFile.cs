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

    /// <summary>Sets the size and, when <paramref name="reserve"/>, reserves every page now so that a full file
    /// system fails here with an out-of-space error instead of a SIGBUS on first touch.</summary>
    internal static void Size(SafeFd fd, long size, bool reserve, string objectName)
    {
        if (Libc.FTruncate(fd.Fd, size) != 0)
        {
            ThrowHelper.ThrowOsError("ftruncate", Marshal.GetLastPInvokeError(), PoolName.PathOf(objectName));
        }

        if (reserve)
        {
            int rc = Libc.PosixFallocate(fd.Fd, 0, size);
            if (rc != 0 && rc != Errno.EOPNOTSUPP && rc != Errno.EINVAL)
            {
                ThrowHelper.ThrowOsError("posix_fallocate", rc, PoolName.PathOf(objectName));
            }
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

    /// <summary>Removes the object's name; true when it existed. Mappings stay valid until unmapped.</summary>
    internal static bool Unlink(string objectName) => Libc.Unlink(PoolName.PathOf(objectName)) == 0;
}
