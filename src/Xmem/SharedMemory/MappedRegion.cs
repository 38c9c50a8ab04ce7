using System.Runtime.InteropServices;
using Xmem.Interop;

namespace Xmem.SharedMemory;

/// <summary>
/// One mmap'd range. SafeHandle's own reference count is the process-local lease count: every guard (and every
/// Python or C view) that points into the range holds a DangerousAddRef, so the range is unmapped only after the last
/// of them lets go — a pointer handed out never outlives its mapping.
/// </summary>
internal sealed class MappedRegion : SafeHandle
{
    private MappedRegion(nint address, long length) : base(Libc.MapFailed, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
    }

    /// <summary>Bytes mapped.</summary>
    internal long Length { get; }

    /// <summary>The first mapped byte.</summary>
    internal nint Address => handle;

    public override bool IsInvalid => handle == Libc.MapFailed || handle == 0;

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> shared, read-write or read-only.</summary>
    internal static MappedRegion Map(int fd, long length, bool writable, string pathForErrors, bool populate = false)
    {
        int prot = Libc.PROT_READ | (writable ? Libc.PROT_WRITE : 0);
        int flags = Libc.MAP_SHARED | (populate ? Libc.MAP_POPULATE : 0);
        nint p = Libc.MMap(0, (nuint)length, prot, flags, fd, 0);
        if (p == Libc.MapFailed)
        {
            Errors.ThrowHelper.ThrowOsError("mmap", Marshal.GetLastPInvokeError(), pathForErrors);
        }

        return new MappedRegion(p, length);
    }

    protected override bool ReleaseHandle() => Libc.MUnmap(handle, (nuint)Length) == 0;

    /// <summary>In a child made by fork(): replaces this process's inherited copy of the range by private zero pages
    /// at the same address. A shared mapping holds a reference to the open file description it was mapped from — the
    /// one that owns the parent's OFD locks — so while it exists the kernel keeps those locks even after the parent
    /// dies. Stale pointers into the range then read zeros (which every reader refuses as shared memory it cannot
    /// trust) instead of faulting. MAP_FIXED swaps the pages in one step; it fails only without memory, and then the
    /// range stays as it was.</summary>
    internal void ReplaceInheritedWithZeros(bool writable)
    {
        if (IsClosed || IsInvalid)
        {
            return;
        }

        int prot = Libc.PROT_READ | (writable ? Libc.PROT_WRITE : 0);
        _ = Libc.MMap(handle, (nuint)Length, prot, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_FIXED, -1, 0);
    }
}

/// <summary>An owned file descriptor: closed exactly once, never a raw int in a field.</summary>
internal sealed class SafeFd : SafeHandle
{
    internal SafeFd(int fd) : base(-1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => handle == -1;

    /// <summary>The descriptor number, valid while this handle is not closed.</summary>
    internal int Fd => (int)handle;

    protected override bool ReleaseHandle() => Libc.Close((int)handle) == 0;

    /// <summary>In a child made by fork(): closes this process's copy of an inherited descriptor, and marks the
    /// handle closed so that nothing closes the number again once it is reused. close(2) only, never an unlock: see
    /// BufferPool.AbandonInheritedPools.</summary>
    internal void CloseInheritedCopy()
    {
        if (IsClosed || IsInvalid)
        {
            return;
        }

        int fd = (int)handle;
        SetHandleAsInvalid();
        _ = Libc.Close(fd);
    }
}
