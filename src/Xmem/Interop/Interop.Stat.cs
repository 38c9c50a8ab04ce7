using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    internal const int AT_SYMLINK_NOFOLLOW = 0x100;
    internal const int AT_EMPTY_PATH = 0x1000;
    internal const uint STATX_TYPE = 0x1;
    internal const uint STATX_MODE = 0x2;
    internal const uint STATX_UID = 0x8;
    internal const uint STATX_GID = 0x10;
    internal const uint STATX_INO = 0x100;
    internal const uint STATX_SIZE = 0x200;
    internal const uint S_IFMT = 0xF000;
    internal const uint S_IFREG = 0x8000;

    /// <summary>The fields of <c>struct statx</c> (256 bytes, the same on every architecture, unlike
    /// <c>struct stat</c>) that xmem reads; the rest is padding.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    internal struct StatX
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Ino;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(136)] public uint DevMajor;  // always filled in
        [FieldOffset(140)] public uint DevMinor;
    }

    /// <summary>statx(2): with <see cref="AT_EMPTY_PATH"/> and an empty path it describes the descriptor itself
    /// (the kernel's owner, group and mode: never a field another process can write). 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Statx(int dirfd, string path, int flags, uint mask, out StatX buf);

    /// <summary>fchown(2); <c>uint.MaxValue</c> (-1) leaves the owner or group as it is. 0, or -1 with errno set
    /// (EPERM when the caller is not a member of the group).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "fchown", SetLastError = true)]
    internal static partial int FChown(int fd, uint owner, uint group);
}
