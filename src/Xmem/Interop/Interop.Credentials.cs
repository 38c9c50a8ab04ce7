using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    /// <summary>geteuid(2): never fails.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "geteuid")]
    internal static partial uint GetEUid();

    /// <summary>getegid(2): never fails.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "getegid")]
    internal static partial uint GetEGid();

    /// <summary>getgroups(2): the supplementary group ids into <paramref name="list"/> (at most
    /// <paramref name="size"/>); with size 0, how many there are. -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "getgroups", SetLastError = true)]
    internal static unsafe partial int GetGroups(int size, uint* list);
}
