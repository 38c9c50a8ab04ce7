using Xmem.Core;

namespace Xmem;

/// <summary>An asynchronous wait for a free CPU slot, tried by the pool's FreeEpoch watcher thread
/// (<see cref="WordWatchers"/>) each time a slot is freed anywhere.</summary>
internal sealed class AcquireWait(BufferPool pool, long size, CancellationToken token) : AsyncWait<BufferGuard>(token)
{
    protected override bool TryTake(out BufferGuard result)
    {
#pragma warning disable CA2000 // ownership passes to the awaiting caller through the wait's result
        result = pool.AcquireCpuNow(size)!;
#pragma warning restore CA2000
        return result is not null;
    }
}
