namespace Xmem.Native.Handles;

/// <summary>A pool behind a C handle. <see cref="BufferPool.Dispose"/> must not race other calls on the pool, hence
/// the count of users (see <see cref="CountedTarget"/>).</summary>
internal sealed class PoolHandle(BufferPool pool) : CountedTarget
{
    internal BufferPool Pool { get; } = pool;

    /// <summary>Waits until a dispose that has started is finished.</summary>
    internal void WaitDisposed() => WaitClosed();

    /// <summary>The handle was closed: refuse new calls and wake the blocked ones (they fail with "disposed"), so
    /// the last of them out disposes the pool promptly.</summary>
    internal void BeginClose()
    {
        RefuseNewCalls();
        Pool.BeginClose();
    }

    protected override void Close() => Pool.Dispose();
}
