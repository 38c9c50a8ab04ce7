namespace Xmem.Tests.Channels;

/// <summary>Channels within one process: ownership moves, backpressure, timeouts, fan-out.</summary>
public sealed class ChannelTests : PoolTest
{
    [Fact]
    public void A_send_moves_the_reference_and_a_receive_takes_it_over()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q", depth: 4);
        BufferGuard g = pool.AcquireCpu(32);
        g.Span[5] = 99;
        int s = g.MetaIndex;
        ch.Send(g);
        Assert.False(g.IsValid);
        Assert.Equal(1, pool.RefCount(s)); // owned by the channel now
        Assert.Equal(1, ch.Count);
        using (BufferGuard r = ch.Receive())
        {
            Assert.Equal(s, r.MetaIndex);
            Assert.True(r.IsReadOnly);
            Assert.Equal(99, r.ReadOnlySpan[5]);
            Assert.Equal(1, pool.RefCount(s));
        }

        Assert.Equal(0, pool.RefCount(s));
        Assert.Equal(0, ch.Count);
    }

    [Fact]
    public void Receive_can_ask_for_write_access()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q");
        ch.Send(pool.AcquireCpu(8));
        using BufferGuard r = ch.Receive(writable: true);
        r.Span[0] = 1;
        r.SetDescription(null, 3);
    }

    [Fact]
    public void Messages_come_out_in_order()
    {
        using BufferPool pool = NewPool(capacity: 16);
        using BufferChannel ch = pool.Channel("q", depth: 8);
        for (int i = 0; i < 8; i++)
        {
            BufferGuard g = pool.AcquireCpu(8);
            g.SetDescription(null, (ulong)i);
            ch.Send(g);
        }

        for (int i = 0; i < 8; i++)
        {
            using BufferGuard r = ch.Receive();
            Assert.Equal((ulong)i, r.Description!.Value.Seq);
        }
    }

    [Fact]
    public void A_full_channel_fails_a_try_send_and_leaves_the_guard_with_the_caller()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q", depth: 2);
        ch.Send(pool.AcquireCpu(8));
        ch.Send(pool.AcquireCpu(8));
        using BufferGuard third = pool.AcquireCpu(8);
        Assert.False(ch.TrySend(third, TimeSpan.Zero));
        Assert.False(ch.TrySend(third, TimeSpan.FromMilliseconds(30)));
        Assert.True(third.IsValid);
        Assert.Equal(1, pool.RefCount(third.MetaIndex));
        ch.Receive().Dispose();
        Assert.True(ch.TrySend(third, TimeSpan.Zero));
        Assert.False(third.IsValid);
        ch.Receive().Dispose();
        ch.Receive().Dispose();
    }

    [Fact]
    public async Task A_blocked_sender_is_woken_by_a_receive()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q", depth: 1);
        ch.Send(pool.AcquireCpu(8));
        BufferGuard second = pool.AcquireCpu(8);
        var sender = Task.Run(() => ch.Send(second));
        await Task.Delay(50);
        Assert.False(sender.IsCompleted);
        ch.Receive().Dispose();
        await sender.WaitAsync(TestChild.Watchdog);
        ch.Receive().Dispose();
    }

    [Fact]
    public async Task An_empty_channel_times_out_and_a_blocked_receiver_is_woken_by_a_send()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q");
        Assert.False(ch.TryReceive(TimeSpan.Zero, out _));
        Assert.False(ch.TryReceive(TimeSpan.FromMilliseconds(30), out _));
        var receiver = Task.Run(() => ch.Receive());
        await Task.Delay(50);
        Assert.False(receiver.IsCompleted);
        ch.Send(pool.AcquireCpu(8));
        (await receiver.WaitAsync(TestChild.Watchdog)).Dispose();
    }

    [Fact]
    public async Task ReceiveAsync_completes_on_a_send_and_can_be_cancelled()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q");
        Task<BufferGuard> pending = ch.ReceiveAsync().AsTask();
        ch.Send(pool.AcquireCpu(8));
        using (BufferGuard g = await pending.WaitAsync(TestChild.Watchdog))
        {
            Assert.True(g.IsValid);
        }

        using var cts = new CancellationTokenSource(50);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ch.ReceiveAsync(cts.Token).AsTask().WaitAsync(TestChild.Watchdog));
    }

    [Fact]
    public void A_spent_guard_cannot_be_sent_again()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("q");
        BufferGuard g = pool.AcquireCpu(8);
        ch.Send(g);
        Assert.Throws<BufferGuardInvalidException>(() => ch.Send(g));
        g.Dispose(); // no effect: the channel owns the reference
        Assert.Equal(1, pool.RefCount(0));
        ch.Receive().Dispose();
        Assert.Equal(0, pool.RefCount(0));
    }

    [Fact]
    public void Opening_twice_shares_the_queue_and_mismatched_parameters_are_refused()
    {
        using BufferPool pool = NewPool();
        using BufferChannel a = pool.Channel("q", depth: 4);
        using BufferChannel b = pool.Channel("q", depth: 4);
        a.Send(pool.AcquireCpu(8));
        b.Receive().Dispose();
        Assert.Throws<ArgumentException>(() => pool.Channel("q", depth: 8));
        Assert.Throws<ArgumentException>(() => pool.Channel("q", depth: 4, ChannelMode.FanOut));
        Assert.Throws<InvalidNameException>(() => pool.Channel("bad/name"));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Channel("x", depth: 3));
        Assert.Throws<InvalidOperationException>(() => a.Subscribe());
    }

    [Fact]
    public void Fan_out_gives_every_subscriber_its_own_reference()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("f", depth: 4, ChannelMode.FanOut);
        using ChannelSubscription s1 = ch.Subscribe();
        using ChannelSubscription s2 = ch.Subscribe();
        BufferGuard g = pool.AcquireCpu(8);
        g.Span[0] = 7;
        int s = g.MetaIndex;
        ch.Send(g);
        Assert.Equal(2, pool.RefCount(s));
        BufferGuard a = s1.Receive();
        BufferGuard b = s2.Receive();
        Assert.Equal(s, a.MetaIndex);
        Assert.Equal(s, b.MetaIndex);
        Assert.Equal(7, b.ReadOnlySpan[0]);
        a.Dispose();
        Assert.Equal(1, pool.RefCount(s));
        b.Dispose();
        Assert.Equal(0, pool.RefCount(s));
        Assert.Throws<InvalidOperationException>(() => ch.Receive());
    }

    [Fact]
    public void Fan_out_with_no_subscriber_releases_the_buffer_and_a_leaver_gives_back_what_waited()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("f", depth: 4, ChannelMode.FanOut);
        ch.Send(pool.AcquireCpu(8));
        Assert.Equal(0, pool.RefCount(0));
        ChannelSubscription sub = ch.Subscribe();
        ch.Send(pool.AcquireCpu(8));
        ch.Send(pool.AcquireCpu(8));
        Assert.Equal(2, sub.Count);
        sub.Dispose();
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }
    }
}
