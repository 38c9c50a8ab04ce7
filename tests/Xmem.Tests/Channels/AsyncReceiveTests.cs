using System.Collections.Concurrent;
using System.Globalization;

namespace Xmem.Tests.Channels;

/// <summary>The asynchronous receives and acquires: ValueTask fast paths that allocate nothing beyond the guard, one
/// watcher thread per watched word however many waits, ReadAllAsync, closing, and cancellation that never loses a
/// buffer (against real producer processes).</summary>
public sealed class AsyncReceiveTests : PoolTest
{
    private const int Items = 64;

    [Fact]
    public void ReceiveAsync_with_a_buffer_ready_allocates_nothing_beyond_the_guard()
    {
        using BufferPool pool = NewPool(capacity: Items);
        using BufferChannel ch = pool.Channel("q", depth: Items);
        using var cts = new CancellationTokenSource(); // a token that can be cancelled: still no registration on the fast path

        // Warm up both paths (JIT, first mappings), then measure each over the same number of ready buffers.
        Fill(pool, ch, Items);
        DrainSync(ch, Items);
        Fill(pool, ch, Items);
        DrainAsync(ch, Items, cts.Token);

        Fill(pool, ch, Items);
        long sync = DrainSync(ch, Items);
        Fill(pool, ch, Items);
        long asyncBytes = DrainAsync(ch, Items, cts.Token);
        Assert.True(sync > 0, "a receive makes a guard, so the synchronous path must allocate something");
        Assert.Equal(sync, asyncBytes);
        Assert.Equal(0, pool.Core.Watchers.ThreadCount);
    }

    [Fact]
    public void AcquireCpuAsync_with_a_free_slot_allocates_nothing_beyond_the_guard()
    {
        using BufferPool pool = NewPool(capacity: Items);
        var guards = new BufferGuard[Items];
        long Measure(Func<BufferGuard> acquire)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Items; i++)
            {
                guards[i] = acquire();
            }

            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            foreach (BufferGuard g in guards)
            {
                g.Dispose();
            }

            return bytes;
        }

        _ = Measure(() => pool.AcquireCpu(64));
        _ = Measure(() => Completed(pool.AcquireCpuAsync(64)));
        long sync = Measure(() => pool.AcquireCpu(64));
        long asyncBytes = Measure(() => Completed(pool.AcquireCpuAsync(64)));
        Assert.Equal(sync, asyncBytes);
    }

    [Fact]
    public void ReadAllAsync_with_buffers_ready_allocates_nothing_per_item_beyond_the_guard()
    {
        using BufferPool pool = NewPool(capacity: 2 * Items);
        using BufferChannel ch = pool.Channel("q", depth: 2 * Items);
        Fill(pool, ch, Items);
        _ = DrainSync(ch, Items);
        Fill(pool, ch, Items);
        long sync = DrainSync(ch, Items);
        Fill(pool, ch, Items + 1);
        IAsyncEnumerator<BufferGuard> e = ch.ReadAllAsync().GetAsyncEnumerator();
        Assert.True(Completed(e.MoveNextAsync())); // the enumerator's own allocations happen here, once
        e.Current.Dispose();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Items; i++)
        {
            Assert.True(Completed(e.MoveNextAsync()));
            e.Current.Dispose();
        }

        long perItems = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(sync, perItems);
        ch.Dispose();
        Assert.False(Completed(e.MoveNextAsync())); // a disposed channel ends the enumeration
        Assert.True(e.DisposeAsync().AsTask().IsCompletedSuccessfully);
    }

    [Fact]
    public async Task ReadAllAsync_yields_each_buffer_in_order_and_ends_when_the_channel_is_disposed()
    {
        using BufferPool pool = NewPool(capacity: 16);
        BufferChannel ch = pool.Channel("q", depth: 8);
        var seen = new List<ulong>();
        Task reader = Task.Run(async () =>
        {
            await foreach (BufferGuard g in ch.ReadAllAsync())
            {
                using (g)
                {
                    seen.Add(g.Description!.Value.Seq);
                }

                if (seen.Count == 20)
                {
                    ch.Dispose();
                }
            }
        });
        for (int i = 0; i < 20; i++)
        {
            Assert.True(pool.TryAcquireCpu(8, TestChild.Watchdog, out BufferGuard? g));
            g.SetDescription(null, (ulong)i);
            ch.Send(g);
        }

        await reader.WaitAsync(TestChild.Watchdog);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (ulong)i), seen);
        AssertAllFree(pool);
    }

    [Fact]
    public async Task ReadAllAsync_of_a_subscription_ends_when_it_is_disposed_and_throws_when_cancelled()
    {
        using BufferPool pool = NewPool(capacity: 16);
        using BufferChannel ch = pool.Channel("f", depth: 8, ChannelMode.FanOut);
        ChannelSubscription sub = ch.Subscribe();
        ch.Send(pool.AcquireCpu(8));
        int n = 0;
        await foreach (BufferGuard g in sub.ReadAllAsync())
        {
            g.Dispose();
            n++;
            sub.Dispose(); // the wait for the next one ends the enumeration
        }

        Assert.Equal(1, n);
        using ChannelSubscription sub2 = ch.Subscribe();
        using var cts = new CancellationTokenSource(20);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (BufferGuard g in sub2.ReadAllAsync(cts.Token))
            {
                g.Dispose();
            }
        }).WaitAsync(TestChild.Watchdog);
        AssertAllFree(pool);
    }

    [Fact]
    public async Task Two_hundred_waiting_receives_share_one_watcher_thread_and_each_gets_one_buffer()
    {
        const int Waits = 200;
        using BufferPool pool = NewPool(capacity: Waits);
        using BufferChannel ch = pool.Channel("q", depth: 256);
        int threadsBefore = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        var pending = Enumerable.Range(0, Waits).Select(_ => ch.ReceiveAsync().AsTask()).ToList();
        Assert.Equal(Waits, pool.Core.Watchers.Count);
        Assert.Equal(1, pool.Core.Watchers.ThreadCount);
        int threadsWaiting = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        Assert.True(threadsWaiting - threadsBefore < 20, $"{Waits} waits made {threadsWaiting - threadsBefore} threads");
        for (int i = 0; i < Waits; i++)
        {
            BufferGuard g = pool.AcquireCpu(8);
            g.SetDescription(null, (ulong)i);
            ch.Send(g);
        }

        BufferGuard[] got = await Task.WhenAll(pending).WaitAsync(TestChild.Watchdog);
        Assert.Equal(Enumerable.Range(0, Waits).Select(i => (ulong)i), got.Select(g => g.Description!.Value.Seq).Order());
        foreach (BufferGuard g in got)
        {
            g.Dispose();
        }

        Shm.WaitUntil(() => pool.Core.Watchers.ThreadCount == 0, "the watcher to stop once no wait is left");
        AssertAllFree(pool);
    }

    [Fact]
    public async Task A_cancelled_receive_takes_nothing_out_of_the_channel()
    {
        using BufferPool pool = NewPool(capacity: 4);
        using BufferChannel ch = pool.Channel("q");
        using var cts = new CancellationTokenSource();
        Task<BufferGuard> pending = ch.ReceiveAsync(cts.Token).AsTask();
        Assert.False(pending.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(TestChild.Watchdog));
        Shm.WaitUntil(() => pool.Core.Watchers.ThreadCount == 0, "the watcher to stop");
        ch.Send(pool.AcquireCpu(8));
        Assert.True(ch.TryReceive(TimeSpan.Zero, out BufferGuard? g));
        g.Dispose();
        Assert.True(ch.ReceiveAsync(new CancellationToken(canceled: true)).AsTask().IsCanceled);
        AssertAllFree(pool);
    }

    [Fact]
    public async Task A_consumer_awaiting_every_frame_keeps_one_watcher_thread_which_leaves_once_idle()
    {
        using BufferPool pool = NewPool(capacity: 4);
        using BufferChannel ch = pool.Channel("paced");
        using var cts = new CancellationTokenSource(TestChild.Watchdog);
        int before = pool.Core.Watchers.StartedCount;
        await using IAsyncEnumerator<BufferGuard> frames = ch.ReadAllAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        for (int i = 0; i < 5; i++)
        {
            ValueTask<bool> next = frames.MoveNextAsync(); // nothing sent yet: the wait is queued on the watcher
            Shm.WaitUntil(() => pool.Core.Watchers.Count == 1, "the receive to wait");
            await Task.Delay(20);
            ch.Send(pool.AcquireCpu(8));
            Assert.True(await next);
            frames.Current.Dispose();
        }

        Assert.Equal(1, pool.Core.Watchers.StartedCount - before);
        Shm.WaitUntil(() => pool.Core.Watchers.ThreadCount == 0, "the idle watcher to leave");
    }

    [Fact]
    public async Task Closing_the_pool_fails_every_waiting_async_call_and_waits_for_the_watchers()
    {
        BufferPool pool = NewPool(capacity: 1);
        BufferChannel ch = pool.Channel("q");
        BufferGuard held = pool.AcquireCpu(8);
        var receives = Enumerable.Range(0, 10).Select(_ => ch.ReceiveAsync().AsTask()).ToList();
        var acquires = Enumerable.Range(0, 10).Select(_ => pool.AcquireCpuAsync(8).AsTask()).ToList();
        Assert.Equal(2, pool.Core.Watchers.ThreadCount);
        GC.KeepAlive(held);
        pool.Dispose();
        foreach (Task<BufferGuard> t in receives.Concat(acquires))
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => t.WaitAsync(TestChild.Watchdog));
        }

        Assert.Equal(0, pool.Core.Watchers.ThreadCount);
        ch.Dispose();
    }

    [Fact]
    public async Task Disposing_a_channel_or_subscription_ends_its_waiting_receives_and_its_mapping_outlives_the_watcher()
    {
        using BufferPool pool = NewPool(capacity: 4);
        BufferChannel q = pool.Channel("q");
        using BufferChannel f = pool.Channel("f", depth: 4, ChannelMode.FanOut);
        ChannelSubscription sub = f.Subscribe();
        var onQueue = Enumerable.Range(0, 5).Select(_ => q.ReceiveAsync().AsTask()).ToList();
        var onSub = Enumerable.Range(0, 5).Select(_ => sub.ReceiveAsync().AsTask()).ToList();
        Assert.Equal(2, pool.Core.Watchers.ThreadCount);
        q.Dispose(); // unmapped only once the watcher let go (it reads the ring's word)
        sub.Dispose();
        foreach (Task<BufferGuard> t in onQueue.Concat(onSub))
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => t.WaitAsync(TestChild.Watchdog));
        }

        Shm.WaitUntil(() => pool.Core.Watchers.ThreadCount == 0, "the watchers to stop");
        f.Send(pool.AcquireCpu(8)); // no subscriber left: released
        AssertAllFree(pool);
    }

    [Fact]
    public async Task Cancellation_storms_racing_sends_from_producer_processes_lose_no_buffer_and_deliver_each_once()
    {
        const int Producers = 2, PerProducer = 1500, Loops = 24, MinCancelled = 100;
        using BufferPool pool = NewPool(capacity: 64);
        using BufferChannel ch = pool.Channel("work", depth: 16);
        var producers = Enumerable.Range(1, Producers).Select(id => TestChild.Start("channel-produce", pool.Name, "work", "16", id.ToString(CultureInfo.InvariantCulture), PerProducer.ToString(CultureInfo.InvariantCulture))).ToList();
        try
        {
            foreach (TestChild p in producers)
            {
                _ = p.Expect("ready");
            }

            var got = new ConcurrentBag<ulong>();
            int cancelled = 0, producersDone = 0;
            async Task Consume(int seed)
            {
                var rng = new Random(seed);
                // Until every message is sent and none is left (a lost buffer shows as a missing sequence number), and
                // the storm has cancelled at least MinCancelled receives (on a quiet machine the producers can be done
                // before it has: the receives after that are all cancelled, against an empty channel).
                while (Volatile.Read(ref producersDone) == 0 || ch.Count > 0 || Volatile.Read(ref cancelled) <= MinCancelled)
                {
                    using var cts = new CancellationTokenSource();
                    Task<BufferGuard> receive = ch.ReceiveAsync(cts.Token).AsTask();
                    switch (rng.Next(3))
                    {
                        case 0: cts.Cancel(); break;                                 // at once, racing the watcher's attempt
                        case 1: cts.CancelAfter(TimeSpan.FromMilliseconds(rng.Next(1, 3))); break;
                        default: cts.CancelAfter(TimeSpan.FromMilliseconds(50)); break;
                    }

                    try
                    {
                        using BufferGuard g = await receive;
                        got.Add(g.Description!.Value.Seq);
                    }
                    catch (OperationCanceledException)
                    {
                        _ = Interlocked.Increment(ref cancelled);
                    }
                }
            }

            Task consumers = Task.WhenAll(Enumerable.Range(0, Loops).Select(i => Task.Run(() => Consume(i))));
            foreach (TestChild p in producers)
            {
                Assert.Equal(PerProducer.ToString(CultureInfo.InvariantCulture), p.Expect("sent"));
            }

            Volatile.Write(ref producersDone, 1);
            await consumers.WaitAsync(TestChild.Watchdog);
            var expected = Enumerable.Range(1, Producers).SelectMany(id => Enumerable.Range(0, PerProducer).Select(i => ((ulong)id << 32) | (uint)i)).Order();
            Assert.Equal(expected, got.Order());
            foreach (TestChild p in producers)
            {
                p.Send("exit");
                Assert.Equal(0, p.WaitForExit());
            }

            Assert.Equal(0, ch.Count);
            AssertAllFree(pool);
        }
        finally
        {
            foreach (TestChild p in producers)
            {
                p.Dispose();
            }
        }
    }

    [Fact]
    public async Task Cancellation_storms_of_async_acquires_lose_no_slot()
    {
        using BufferPool pool = NewPool(capacity: 3);
        using var stop = new CancellationTokenSource();
        int taken = 0, cancelled = 0;
        async Task Acquire(int seed)
        {
            var rng = new Random(seed);
            for (int i = 0; i < 150; i++)
            {
                using var cts = new CancellationTokenSource();
                Task<BufferGuard> acquire = pool.AcquireCpuAsync(64 << rng.Next(4), cts.Token).AsTask();
                if (rng.Next(2) == 0)
                {
                    cts.Cancel();
                }
                else
                {
                    cts.CancelAfter(TimeSpan.FromMilliseconds(rng.Next(1, 4)));
                }

                try
                {
                    using BufferGuard g = await acquire;
                    _ = Interlocked.Increment(ref taken);
                    await Task.Yield();
                }
                catch (OperationCanceledException)
                {
                    _ = Interlocked.Increment(ref cancelled);
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => Acquire(i)))).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(taken > 0 && cancelled > 0, $"taken {taken}, cancelled {cancelled}");
        Shm.WaitUntil(() => pool.Core.Watchers.ThreadCount == 0, "the watcher to stop");
        AssertAllFree(pool);
        Assert.Equal(0, Shm.Waiters(pool.Name));
    }

    private static void Fill(BufferPool pool, BufferChannel ch, int n)
    {
        for (int i = 0; i < n; i++)
        {
            ch.Send(pool.AcquireCpu(64));
        }
    }

    private static long DrainSync(BufferChannel ch, int n)
    {
        var guards = new BufferGuard[n];
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++)
        {
            Assert.True(ch.TryReceive(TimeSpan.Zero, out guards[i]!));
        }

        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        DisposeAll(guards);
        return bytes;
    }

    private static long DrainAsync(BufferChannel ch, int n, CancellationToken token)
    {
        var guards = new BufferGuard[n];
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++)
        {
            guards[i] = Completed(ch.ReceiveAsync(token));
        }

        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        DisposeAll(guards);
        return bytes;
    }

    /// <summary>The result of a task that must have completed synchronously (the fast path).</summary>
    private static T Completed<T>(ValueTask<T> t)
    {
        if (!t.IsCompletedSuccessfully)
        {
            throw new Xunit.Sdk.XunitException("the call did not complete at once");
        }

        return t.Result;
    }

    private static void DisposeAll(BufferGuard[] guards)
    {
        foreach (BufferGuard g in guards)
        {
            g.Dispose();
        }
    }

    private static void AssertAllFree(BufferPool pool)
    {
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.True(pool.RefCount(i) == 0, $"slot {i} still has count {pool.RefCount(i)}");
        }
    }
}
