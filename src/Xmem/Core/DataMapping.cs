using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>This process's mapping of one generation of one slot's data segment. The pool's cache holds one lease
/// on the region; each guard holds another, so the memory stays mapped while any guard (or view) points into it.</summary>
internal sealed class DataMapping(MappedRegion region, uint memGen)
{
    internal MappedRegion Region { get; } = region;
    internal uint MemGen { get; } = memGen;
    internal nint Address => Region.Address;
    internal long Length => Region.Length;

    /// <summary>CLOCK's reference bit (<see cref="MappingCache"/>): set by every use, cleared by the eviction hand.
    /// A plain field: a lost or late store only gives the mapping one more or one less pass of the hand.</summary>
    internal bool Referenced;
}
