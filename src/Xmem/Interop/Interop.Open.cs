using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    internal const int O_RDONLY = 0x0;
    internal const int O_RDWR = 0x2;
    internal const int O_CREAT = 0x40;
    internal const int O_EXCL = 0x80;
    internal const int O_NOFOLLOW = 0x20000;
    internal const int O_CLOEXEC = 0x80000;

    /// <summary>With O_RDWR and a directory path: an unnamed file in that directory (x86-64 and aarch64 value,
    /// __O_TMPFILE | O_DIRECTORY). A pool's control segment is made so, locked and initialised, then given its name
    /// with <see cref="LinkAt"/>: the name never points to a file that no live creator holds.</summary>
    internal const int O_TMPFILE = 0x410000;

    internal const int AT_FDCWD = -100;
    internal const int AT_SYMLINK_FOLLOW = 0x400;

    /// <summary>open(2). Returns a descriptor, or -1 with errno set. Variadic in C; the mode is passed as a
    /// plain int, which the x86-64 and aarch64 calling conventions allow for a non-floating argument.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Open(string path, int flags, uint mode);

    /// <summary>close(2). 0, or -1 with errno set (the descriptor is released either way on Linux).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    /// <summary>unlink(2). 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "unlink", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Unlink(string path);

    /// <summary>linkat(2). 0, or -1 with errno set; EEXIST when <paramref name="newPath"/> exists (never replaced).
    /// With <c>/proc/self/fd/N</c> and AT_SYMLINK_FOLLOW it names an O_TMPFILE file without CAP_DAC_READ_SEARCH.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "linkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int LinkAt(int oldDirFd, string oldPath, int newDirFd, string newPath, int flags);

    /// <summary>ftruncate(2). 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int FTruncate(int fd, long length);

    /// <summary>fchmod(2): open(2) applies the umask, so the requested mode is set explicitly after creation.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "fchmod", SetLastError = true)]
    internal static partial int FChmod(int fd, uint mode);

    /// <summary>posix_fallocate(3). Unlike most calls it returns the error number itself (0 = ok) and leaves errno alone.
    /// On tmpfs it reserves the pages now, so a full /dev/shm fails here instead of raising SIGBUS on first touch.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "posix_fallocate")]
    internal static partial int PosixFallocate(int fd, long offset, long length);

    internal const int SEEK_END = 2;

    /// <summary>lseek(2). Used with SEEK_END to read a segment's size without depending on struct stat's layout.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "lseek", SetLastError = true)]
    internal static partial long LSeek(int fd, long offset, int whence);
}
