using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    internal const int PROT_READ = 0x1;
    internal const int PROT_WRITE = 0x2;
    internal const int MAP_SHARED = 0x01;
    internal const int MAP_PRIVATE = 0x02;
    internal const int MAP_FIXED = 0x10;
    internal const int MAP_ANONYMOUS = 0x20;
    internal const int MAP_POPULATE = 0x8000;

    /// <summary>MAP_FAILED is <c>(void*)-1</c>, not null.</summary>
    internal static readonly nint MapFailed = -1;

    /// <summary>mmap(2). Returns the address, or <see cref="MapFailed"/> with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint MMap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    /// <summary>munmap(2). 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int MUnmap(nint addr, nuint length);
}
