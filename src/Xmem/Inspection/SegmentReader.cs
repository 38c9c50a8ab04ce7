using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Xmem.Interop;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>
/// Reads a segment without mapping or attaching to it: a read-only descriptor and pread(2), so every value is a private
/// copy (a writer cannot change it while it is being checked) and a segment truncated under our feet gives a short
/// read instead of the SIGBUS a mapping would raise. The descriptor also answers liveness queries (F_OFD_GETLK needs
/// no write access), and is opened with open(2) directly because .NET's own file opening takes an flock.
/// </summary>
internal sealed class SegmentReader : IDisposable
{
    private readonly SafeFd _fd;
    private readonly SafeFileHandle _io;

    private SegmentReader(SafeFd fd, string objectName)
    {
        FileSize = SegmentFile.SizeOf(fd, objectName);
        Access = SegmentFile.AccessOf(fd, objectName);
        _fd = fd;
        _io = new SafeFileHandle(fd.Fd, ownsHandle: false); // last: nothing after it can throw and leave it undisposed
    }

    /// <summary>The file's size when it was opened.</summary>
    internal long FileSize { get; }

    /// <summary>The file's owner, group and permission bits, from the kernel: what a pool's segments really get (the
    /// header's Mode field is writable by every member and is never shown or used).</summary>
    internal SegmentAccess Access { get; }

    /// <summary>Opens the object read-only; null when it does not exist. Throws PoolPermissionException and other
    /// OS errors from the error table.</summary>
    internal static SegmentReader? TryOpen(string objectName)
    {
#pragma warning disable CA2000 // ownership passes to the reader, which disposes it; the catch disposes it when the reader is not made
        SafeFd? fd = SegmentFile.TryOpen(objectName, writable: false);
#pragma warning restore CA2000
        if (fd is null)
        {
            return null;
        }

        try
        {
            return new SegmentReader(fd, objectName);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Copies bytes from <paramref name="offset"/> into <paramref name="destination"/>; returns how many
    /// were read (fewer at the end of the file).</summary>
    internal int Read(Span<byte> destination, long offset)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(_io, destination[total..], offset + total);
            if (n <= 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    /// <summary>Reads unmanaged values; returns how many whole values were read.</summary>
    internal int Read<T>(Span<T> destination, long offset) where T : unmanaged
    {
        int bytes = Read(MemoryMarshal.AsBytes(destination), offset);
        return bytes / System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    }

    /// <summary>True when another open file description holds a lock on the byte (cannot tell counts as held).</summary>
    internal bool IsLockedByOther(long offset) => Libc.IsByteLockedByOther(_fd.Fd, offset);

    public void Dispose()
    {
        _io.Dispose();
        _fd.Dispose();
    }
}
