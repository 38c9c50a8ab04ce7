using Xmem.Core;
using Xmem.Errors;
using Xmem.Pool;

namespace Xmem;

// The facade's allocation-free references (BufferRef): the same acquire and gets as the guard API, with the guard
// object taken from the pool instance's cache of idle pooled guards instead of allocated (and never finalizable).
public sealed partial class BufferPool
{
    /// <summary>This instance's idle pooled guards (the objects behind <see cref="BufferRef"/>s).</summary>
    internal GuardCache Guards { get; }

    /// <summary>Like <see cref="AcquireCpu(long)"/>, as a <see cref="BufferRef"/>: no allocation once warm. Dispose
    /// it (<c>using</c>); one never disposed stays held until the pool is disposed.</summary>
    public BufferRef AcquireCpuRef(long size)
    {
        ThrowIfDisposed();
        ValidateSize(size);
        int s = _slots.Claim(new CpuSlotPicker(_core.Hints, size), reclaim: true);
        if (s < 0)
        {
            ThrowHelper.ThrowPoolFull(Bare, Capacity);
        }

        return new BufferRef(PublishCpu(s, size, attributed: true, pooled: true)!);
    }

    /// <summary>Like <see cref="TryAcquireCpu(long, TimeSpan, out BufferGuard?)"/>, as a <see cref="BufferRef"/>
    /// (<c>default</c> when none came in time).</summary>
    public bool TryAcquireCpuRef(long size, TimeSpan timeout, out BufferRef buffer)
    {
        BufferGuard? g = TryAcquireCpuCore(size, timeout, pooled: true);
        buffer = g is null ? default : new BufferRef(g);
        return g is not null;
    }

    /// <summary>Like <see cref="Get"/>, as a <see cref="BufferRef"/>: a read-only reference; the count goes up by one.</summary>
    public BufferRef GetRef(int metaIndex) => new(GetGuard(metaIndex, writable: false, pooled: true));

    /// <summary>Like <see cref="GetMut"/>, as a <see cref="BufferRef"/>: a read-write reference.</summary>
    public BufferRef GetMutRef(int metaIndex) => new(GetGuard(metaIndex, writable: true, pooled: true));
}
