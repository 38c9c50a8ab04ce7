using Xmem.Core;
using Xmem.Errors;
using System.Runtime.CompilerServices;
using Xmem.Pool;
using Xmem.SharedMemory;

// The C ABI project (src/Xmem.Native) builds an assembly named libxmem, so that NativeAOT names the library libxmem.so.
[assembly: InternalsVisibleTo("libxmem")]

namespace Xmem
{
    public partial class BufferGuard
    {
        /// <summary>Takes a lease that keeps incarnation <paramref name="version"/>'s mapping mapped in this process until
        /// the lease is released, even after the guard is released or forgotten and the pool disposed (the C ABI's view
        /// leases and DLPack exports). A lease keeps the memory mapped, not the buffer's reference: once the guard lets
        /// go, the slot may be recycled and the bytes rewritten, but a pointer into them never dangles. The mapping and
        /// size are read between two checks of the state, so a release racing on another thread (and a reuse of this
        /// pooled guard for another reference) throws <see cref="BufferGuardInvalidException"/> instead of leasing what
        /// the guard holds now. Throws <see cref="ObjectDisposedException"/> when the pool already unmapped the memory.</summary>
        internal MappingLease LeaseMappingAt(long version)
        {
            ThrowIfInvalidAt(version);
            DataMapping? map = Volatile.Read(ref _map);
            long size = Volatile.Read(ref _size);
            ThrowIfInvalidAt(version);
            if (map is null)
            {
                ThrowIfCuda();
                ThrowHelper.ThrowGuardInvalid(); // not reached: a valid guard without a mapping is a CUDA one
            }

            // Safe against a racing Dispose of this guard or of the pool: SafeHandle's count is atomic, and a region
            // already closed refuses the lease (ObjectDisposedException) instead of handing out an unmapped address.
            map.Region.DangerousAddRefChecked();
            return new MappingLease(map.Region, map.Address, size);
        }
    }
}

namespace Xmem.Pool
{
    /// <summary>One lease on a mapped region, released at most once.</summary>
    internal sealed class MappingLease(MappedRegion region, nint address, long length)
    {
        private MappedRegion? _region = region;

        /// <summary>The first byte of the buffer.</summary>
        internal nint Address { get; } = address;

        /// <summary>The buffer's size in bytes (the mapping may be larger).</summary>
        internal long Length { get; } = length;

        /// <summary>Drops the lease; the region is unmapped when its last lease goes. Later calls do nothing.</summary>
        internal bool Release()
        {
            MappedRegion? r = Interlocked.Exchange(ref _region, null);
            r?.DangerousRelease();
            return r is not null;
        }
    }
}
