using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    // Open-file-description locks: owned by the open file description, not the process, so two pools opened in one
    // process do not share locks, and the kernel drops them when the last descriptor closes — on death included.
    internal const int F_OFD_GETLK = 36;
    internal const int F_OFD_SETLK = 37;

    internal const short F_RDLCK = 0;
    internal const short F_WRLCK = 1;
    internal const short F_UNLCK = 2;

    /// <summary>struct flock (x86-64 / aarch64 glibc layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Flock
    {
        internal short Type;
        internal short Whence;
        internal long Start;
        internal long Length;
        internal int Pid; // must be 0 for OFD locks
    }

    /// <summary>fcntl(2) with a struct flock argument. 0, or -1 with errno set (EAGAIN/EACCES: held by another).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "fcntl", SetLastError = true)]
    internal static unsafe partial int FcntlLock(int fd, int cmd, Flock* lockInfo);

    /// <summary>Takes a write lock on one byte without waiting. True when taken, false when another open file
    /// description holds it. Other failures throw.</summary>
    internal static unsafe bool TryLockByte(int fd, long offset)
    {
        Flock fl = new() { Type = F_WRLCK, Whence = 0, Start = offset, Length = 1 };
        if (FcntlLock(fd, F_OFD_SETLK, &fl) == 0)
        {
            return true;
        }

        int errno = Marshal.GetLastPInvokeError();
        if (errno is Errno.EAGAIN or Errno.EACCES)
        {
            return false;
        }

        throw Errors.ThrowHelper.OsError("fcntl(F_OFD_SETLK)", errno, null);
    }

    /// <summary>Drops this description's lock on one byte.</summary>
    internal static unsafe void UnlockByte(int fd, long offset)
    {
        Flock fl = new() { Type = F_UNLCK, Whence = 0, Start = offset, Length = 1 };
        _ = FcntlLock(fd, F_OFD_SETLK, &fl);
    }

    /// <summary>True when another open file description holds a lock on the byte. A failure to ask counts as held:
    /// a process whose state cannot be told is alive, never dead.</summary>
    internal static unsafe bool IsByteLockedByOther(int fd, long offset)
    {
        Flock fl = new() { Type = F_WRLCK, Whence = 0, Start = offset, Length = 1 };
        if (FcntlLock(fd, F_OFD_GETLK, &fl) != 0)
        {
            return true;
        }

        return fl.Type != F_UNLCK;
    }

    /// <summary>True when another open file description holds a lock on any byte of the range (one query for the
    /// whole range). A failure to ask counts as held.</summary>
    internal static unsafe bool IsRangeLockedByOther(int fd, long offset, long length)
    {
        Flock fl = new() { Type = F_WRLCK, Whence = 0, Start = offset, Length = length };
        if (FcntlLock(fd, F_OFD_GETLK, &fl) != 0)
        {
            return true;
        }

        return fl.Type != F_UNLCK;
    }
}
