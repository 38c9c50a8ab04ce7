namespace Xmem.Tests.Pool;

/// <summary>A full pool: AcquireCpu fails at once; TryAcquireCpu and AcquireCpuAsync wait for a release by another
/// thread (the cross-process wake is in CrossProcessTests). No timing is asserted; every wait has a watchdog.</summary>
public sealed class PoolFullTests : PoolTest
{
    [Fact]
    public void AcquireCpu_WhenFull_ThrowsPoolFull()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard a = pool.AcquireCpu(8);
        using BufferGuard b = pool.AcquireCpu(8);
        var e = Assert.Throws<PoolFullException>(() => pool.AcquireCpu(8));
        Assert.Equal(XmemStatus.PoolFull, e.Status);
        Assert.Equal(1, pool.RefCount(0));
        Assert.Equal(1, pool.RefCount(1));
    }

    [Fact]
    public void TryAcquireCpu_WhenFull_ReturnsFalseAfterTheTimeout()
    {
        using BufferPool pool = NewPool(1);
        using BufferGuard a = pool.AcquireCpu(8);
        Assert.False(pool.TryAcquireCpu(8, TimeSpan.FromMilliseconds(50), out BufferGuard? g));
        Assert.Null(g);
        Assert.False(pool.TryAcquireCpu(8, TimeSpan.Zero, out g));
        Assert.Null(g);
        Assert.Equal(1, pool.RefCount(0));
    }

    [Fact]
    public void TryAcquireCpu_with_a_spin_takes_a_slot_released_during_the_spin_without_ever_waiting_in_the_kernel()
    {
        using BufferPool pool = NewPool(1);
        pool.AcquireSpinDuration = TimeSpan.FromSeconds(5); // far longer than the release below takes
        BufferGuard held = pool.AcquireCpu(8);
        var release = new Thread(() =>
        {
            Thread.Sleep(50);
            held.Dispose();
        });
        release.Start();
        Assert.True(pool.TryAcquireCpu(8, TimeSpan.FromSeconds(30), out BufferGuard? g));
        release.Join();
        using (g)
        {
            Assert.Equal(1, pool.RefCount(g.MetaIndex));
        }

        // A spinning acquire never showed itself as a waiter: no acquire wait was counted, and no release had to wake it.
        Assert.Equal(0UL, pool.Core.Control.Counters.Read().AcquireWaits);
    }

    [Fact]
    public void TryAcquireCpu_with_a_spin_longer_than_its_timeout_still_gives_up_at_the_timeout()
    {
        using BufferPool pool = NewPool(1);
        pool.AcquireSpinDuration = TimeSpan.FromSeconds(30);
        using BufferGuard held = pool.AcquireCpu(8);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(pool.TryAcquireCpu(8, TimeSpan.FromMilliseconds(50), out BufferGuard? g));
        Assert.Null(g);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the spin ran on past the timeout: {clock.Elapsed}");
        Assert.False(pool.TryAcquireCpuRef(8, TimeSpan.Zero, out BufferRef none));
        Assert.False(none.IsValid);
    }

    [Fact]
    public void TryAcquireCpu_WithRoom_SucceedsAtOnce()
    {
        using BufferPool pool = NewPool(1);
        Assert.True(pool.TryAcquireCpu(8, TimeSpan.Zero, out BufferGuard? g));
        using (g)
        {
            Assert.Equal(0, g.MetaIndex);
            Assert.Equal(1, pool.RefCount(0));
        }
    }

    [Fact]
    public void TryAcquireCpu_NegativeTimeout_Throws()
    {
        using BufferPool pool = NewPool(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.TryAcquireCpu(8, TimeSpan.FromMilliseconds(-5), out _));
    }

    [Fact]
    public void TryAcquireCpu_WakesWhenAnotherThreadReleases()
    {
        using BufferPool pool = NewPool(1);
        BufferGuard held = pool.AcquireCpu(8);
        BufferGuard? got = null;
        bool ok = false;
        var waiter = new Thread(() => ok = pool.TryAcquireCpu(8, Timeout.InfiniteTimeSpan, out got)) { IsBackground = true };
        waiter.Start();
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the waiter to start waiting");
        held.Dispose();
        Assert.True(waiter.Join(TestChild.Watchdog), "watchdog: the waiter was not woken by the release");
        Assert.True(ok);
        using (got)
        {
            Assert.Equal(0, got!.MetaIndex);
            Assert.Equal(1, pool.RefCount(0));
        }

        Assert.Equal(0, Shm.Waiters(pool.Name));
    }

    [Fact]
    public async Task TryAcquireCpu_WakesWhenAnInFlightReferenceIsReleased()
    {
        using BufferPool pool = NewPool(1);
        int i = pool.PreallocateCpu(8, 1)[0];
        var task = Task.Run(() => pool.TryAcquireCpu(8, TestChild.Watchdog, out BufferGuard? g) ? g : null);
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the waiter to start waiting");
        pool.SetRefCount(i, 0);
        using BufferGuard? got = await task.WaitAsync(TestChild.Watchdog);
        Assert.NotNull(got);
    }

    [Fact]
    public async Task AcquireCpuAsync_WithRoom_CompletesAtOnce()
    {
        using BufferPool pool = NewPool(1);
        using BufferGuard g = await pool.AcquireCpuAsync(8);
        Assert.Equal(0, g.MetaIndex);
    }

    [Fact]
    public async Task AcquireCpuAsync_CompletesOnRelease()
    {
        using BufferPool pool = NewPool(1);
        BufferGuard held = pool.AcquireCpu(8);
        Task<BufferGuard> pending = pool.AcquireCpuAsync(16).AsTask();
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the async acquire to start waiting");
        Assert.False(pending.IsCompleted);
        held.Dispose();
        using BufferGuard got = await pending.WaitAsync(TestChild.Watchdog);
        Assert.Equal(0, got.MetaIndex);
        Assert.Equal(16, got.Size);
        Assert.Equal(1, pool.RefCount(0));
    }

    [Fact]
    public async Task AcquireCpuAsync_HonoursCancellation_AndTakesNoSlot()
    {
        using BufferPool pool = NewPool(1);
        BufferGuard held = pool.AcquireCpu(8);
        using var cts = new CancellationTokenSource();
        Task<BufferGuard> pending = pool.AcquireCpuAsync(8, cts.Token).AsTask();
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the async acquire to start waiting");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(TestChild.Watchdog));
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) == 0, "the cancelled waiter to leave");
        held.Dispose();
        Assert.Equal(0, pool.RefCount(0));
        using BufferGuard g = pool.AcquireCpu(8);
        Assert.Equal(0, g.MetaIndex);
    }

    [Fact]
    public async Task AcquireCpuAsync_AlreadyCancelledToken_WhenFull_IsCancelled()
    {
        using BufferPool pool = NewPool(1);
        using BufferGuard held = pool.AcquireCpu(8);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pool.AcquireCpuAsync(8, cts.Token).AsTask().WaitAsync(TestChild.Watchdog));
        Assert.Equal(1, pool.RefCount(0));
    }

    [Fact]
    public async Task ManyWaiters_EachGetsASlot_AsSlotsAreReleased()
    {
        const int waiters = 4;
        using BufferPool pool = NewPool(2);
        var held = new Queue<BufferGuard>([pool.AcquireCpu(8), pool.AcquireCpu(8)]);
        var got = new System.Collections.Concurrent.ConcurrentBag<BufferGuard>();
        var tasks = Enumerable.Range(0, waiters).Select(_ => Task.Factory.StartNew(() =>
        {
            if (pool.TryAcquireCpu(8, TestChild.Watchdog, out BufferGuard? g))
            {
                got.Add(g);
                Thread.Sleep(1);
                g.Dispose();
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the waiters to start waiting");
        while (held.Count > 0)
        {
            held.Dequeue().Dispose();
        }

        await Task.WhenAll(tasks).WaitAsync(TestChild.Watchdog);
        Assert.Equal(waiters, got.Count);
        Assert.Equal(0, pool.RefCount(0));
        Assert.Equal(0, pool.RefCount(1));
    }
}
