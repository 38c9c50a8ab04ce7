namespace Xmem.Tests.Pool;

/// <summary>Disposing a pool detaches this process: its guards' references are released, and the pool goes away
/// with its last (non-persistent) process.</summary>
public sealed class PoolDisposeTests : PoolTest
{
    [Fact]
    public void Dispose_LastProcess_RemovesEverySegment()
    {
        string name;
        using (BufferPool pool = NewPool(4))
        {
            name = pool.Name;
            pool.AcquireCpu(100).Dispose();
            using BufferGuard g = pool.AcquireCpu(100);
            Assert.NotEmpty(Shm.EntriesOf(name));
        }

        Assert.Empty(Shm.EntriesOf(name));
        Assert.False(BufferPool.Exists(name));
    }

    [Fact]
    public void Dispose_NotLastProcess_KeepsThePool()
    {
        using BufferPool a = NewPool(4);
        BufferPool b = BufferPool.Open(a.Name);
        b.Dispose();
        Assert.True(BufferPool.Exists(a.Name));
        using BufferGuard g = a.AcquireCpu(8);
    }

    [Fact]
    public void Dispose_ReleasesTheReferencesOfItsLiveGuards()
    {
        using BufferPool a = NewPool(4);
        BufferPool b = BufferPool.Open(a.Name);
        BufferGuard owned = b.AcquireCpu(8);
        int i = owned.MetaIndex;
        using BufferGuard kept = a.Get(i);
        BufferGuard second = b.Get(i);
        Assert.Equal(3, a.RefCount(i));
        b.Dispose();
        Assert.Equal(1, a.RefCount(i));

        // The detached process's guards no longer own anything: disposing them changes no count.
        owned.Dispose();
        second.Dispose();
        Assert.Equal(1, a.RefCount(i));
    }

    [Fact]
    public void Dispose_GuardMemoryStaysMappedUntilTheGuardGoes()
    {
        using BufferPool a = NewPool(2);
        BufferPool b = BufferPool.Open(a.Name);
        BufferGuard g = b.AcquireCpu(4096);
        g.Span.Fill(3);
        b.Dispose();
        // Reading through a guard of a disposed pool must not fault (the mapping is leased by the guard).
        Assert.Equal(3, g.ReadOnlySpan[4095]);
        g.Dispose();
    }

    [Fact]
    public void Dispose_Twice_DoesNothing()
    {
        BufferPool pool = NewPool(2);
        pool.Dispose();
        pool.Dispose();
    }

    [Fact]
    public void AfterDispose_CallsThrowObjectDisposed()
    {
        BufferPool pool = NewPool(2);
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.AcquireCpu(8));
        Assert.Throws<ObjectDisposedException>(() => pool.TryAcquireCpu(8, TimeSpan.Zero, out _));
        Assert.Throws<ObjectDisposedException>(() => pool.PreallocateCpu(8, 1));
        Assert.Throws<ObjectDisposedException>(() => pool.Get(0));
        Assert.Throws<ObjectDisposedException>(() => pool.GetMut(0));
        Assert.Throws<ObjectDisposedException>(() => pool.AddRef(0));
        Assert.Throws<ObjectDisposedException>(() => pool.Release(0));
        Assert.Throws<ObjectDisposedException>(() => pool.SetRefCount(0, 1));
        Assert.Throws<ObjectDisposedException>(() => pool.RefCount(0));
        Assert.Throws<ObjectDisposedException>(() => pool.Trim());
        Assert.Equal(2, pool.Capacity);
    }
}
