using System.Runtime.InteropServices;
using Xmem.Interop;

namespace Xmem.Benchmarks.Interop;

/// <summary>
/// A small MAP_SHARED mapping of a file in /dev/shm (or $XMEM_SHM_DIR): the same kind of memory as a pool's slot
/// table, for the floors "a bare atomic on shared memory" and "a futex between two processes".
/// </summary>
internal sealed unsafe class ShmScratch : IDisposable
{
    private readonly nint _address;
    private readonly long _length;
    private readonly string _path;
    private readonly bool _owner;

    private ShmScratch(string path, nint address, long length, bool owner)
    {
        _path = path;
        _address = address;
        _length = length;
        _owner = owner;
    }

    /// <summary>Path of the backing file, to hand to another process.</summary>
    internal string Path => _path;

    /// <summary>The first mapped byte (page aligned, zero-filled at creation).</summary>
    internal byte* Pointer => (byte*)_address;

    /// <summary>Creates and maps a zeroed file of <paramref name="length"/> bytes; it is unlinked on dispose.</summary>
    internal static ShmScratch Create(string name, long length = 4096)
    {
        string path = System.IO.Path.Combine(SharedMemoryDirectory.Path, name);
        _ = Libc.Unlink(path);
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL | Libc.O_CLOEXEC, 0x180);
        if (fd < 0)
        {
            throw new IOException($"open({path}) failed with errno {Marshal.GetLastPInvokeError()}");
        }

        try
        {
            if (Libc.FTruncate(fd, length) != 0)
            {
                throw new IOException($"ftruncate({path}) failed with errno {Marshal.GetLastPInvokeError()}");
            }

            return new ShmScratch(path, MapOrThrow(fd, length, path), length, owner: true);
        }
        finally
        {
            _ = Libc.Close(fd);
        }
    }

    /// <summary>Maps an existing file made by <see cref="Create"/> in another process.</summary>
    internal static ShmScratch Open(string path, long length = 4096)
    {
        int fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new IOException($"open({path}) failed with errno {Marshal.GetLastPInvokeError()}");
        }

        try
        {
            return new ShmScratch(path, MapOrThrow(fd, length, path), length, owner: false);
        }
        finally
        {
            _ = Libc.Close(fd);
        }
    }

    private static nint MapOrThrow(int fd, long length, string path)
    {
        nint p = Libc.MMap(0, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        if (p == Libc.MapFailed)
        {
            throw new IOException($"mmap({path}) failed with errno {Marshal.GetLastPInvokeError()}");
        }

        return p;
    }

    public void Dispose()
    {
        _ = Libc.MUnmap(_address, (nuint)_length);
        if (_owner)
        {
            _ = Libc.Unlink(_path);
        }
    }
}
