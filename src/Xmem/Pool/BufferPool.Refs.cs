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
        ThrowIfDisposed();
        ValidateSize(size);
        long timeoutNs = timeout == Timeout.InfiniteTimeSpan ? -1 : (long)(timeout.TotalMilliseconds * 1_000_000);
        if (timeoutNs < -1)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(timeout), timeout, "the timeout must be non-negative, or infinite to wait without limit.");
        }

        bool counted = false;
        try
        {
            int s = FreeSlotWait.Wait(_core, size, timeoutNs, CancellationToken.None, ref counted);
            buffer = s < 0 ? default : new BufferRef(PublishCpu(s, size, attributed: true, pooled: true)!);
            return s >= 0;
        }
        finally
        {
            if (counted)
            {
                _core.Blocking.Exit();
            }
        }
    }

    /// <summary>Like <see cref="Get"/>, as a <see cref="BufferRef"/>: a read-only reference; the count goes up by one.</summary>
    public BufferRef GetRef(int metaIndex) => new(GetGuard(metaIndex, writable: false, pooled: true));

    /// <summary>Like <see cref="GetMut"/>, as a <see cref="BufferRef"/>: a read-write reference.</summary>
    public BufferRef GetMutRef(int metaIndex) => new(GetGuard(metaIndex, writable: true, pooled: true));
}
