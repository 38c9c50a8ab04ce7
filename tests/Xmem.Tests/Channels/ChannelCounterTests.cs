using Xmem.Inspection;

namespace Xmem.Tests.Channels;

/// <summary>The counters in shared memory (docs/layout.md, "PoolHeader" and "ChannelHeader", Counters), read from
/// outside as <c>xmem stat</c> reads them: what each counts, that a poll waits for nothing, that a waiting sender or
/// receiver shows while it waits and only then, and that a process killed while blocked is not shown blocked.</summary>
public sealed class ChannelCounterTests : PoolTest
{
    private static ChannelInfo ChannelOf(BufferPool pool, string channel) =>
        PoolInspector.Inspect(pool.Name).Channels.Single(c => c.Name == channel);

    [Fact]
    public void Sends_and_receives_are_counted_and_polls_of_a_full_or_empty_channel_count_no_wait()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using BufferChannel ch = pool.Channel("c", depth: 2);
        ch.Send(pool.AcquireCpu(64));
        ch.Send(pool.AcquireCpu(64));
        using (BufferGuard third = pool.AcquireCpu(64))
        {
            Assert.False(ch.TrySend(third, TimeSpan.Zero));
        }

        ChannelInfo full = ChannelOf(pool, "c");
        Assert.Equal((2L, 0L, 2, 2, 0L, 0), (full.Sent, full.Received, full.Depth, full.Capacity, full.SendWaits, full.BlockedSenders));
        Assert.Equal(3, PoolInspector.Summarize(pool.Name).Acquires);

        for (int i = 0; i < 2; i++)
        {
            using BufferGuard g = ch.Receive();
        }

        Assert.False(ch.TryReceive(TimeSpan.Zero, out _));
        ChannelInfo empty = ChannelOf(pool, "c");
        Assert.Equal((2L, 2L, 0, 0L, 0L, 0), (empty.Sent, empty.Received, empty.Depth, empty.SendWaits, empty.ReceiveWaits, empty.BlockedReceivers));
    }

    [Fact]
    public void A_send_waiting_for_room_shows_as_one_blocked_sender_until_it_gets_room_and_its_wait_is_timed()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using BufferChannel ch = pool.Channel("c", depth: 1);
        ch.Send(pool.AcquireCpu(64));
        BufferGuard second = pool.AcquireCpu(64);
        var send = new BackgroundCall<bool>(() =>
        {
            ch.Send(second);
            return true;
        });
        Shm.WaitUntil(() => ChannelOf(pool, "c").BlockedSenders == 1, "the waiting send shown as a blocked sender");
        Assert.Equal(1, ChannelOf(pool, "c").SendWaits);

        using (BufferGuard first = ch.Receive())
        {
        }

        Assert.True(send.Join());
        ChannelInfo after = ChannelOf(pool, "c");
        Assert.Equal((0, 1L, 2L, 1L), (after.BlockedSenders, after.SendWaits, after.Sent, after.Received));
        Assert.True(after.SendBlockedNs > 0);
        using BufferGuard last = ch.Receive();
    }

    [Fact]
    public void A_receive_waiting_for_a_message_shows_as_one_blocked_receiver_until_one_comes()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using BufferChannel ch = pool.Channel("c", depth: 4);
        var receive = new BackgroundCall<BufferGuard>(() => ch.Receive());
        Shm.WaitUntil(() => ChannelOf(pool, "c").BlockedReceivers == 1, "the waiting receive shown as a blocked receiver");
        ch.Send(pool.AcquireCpu(64));
        using BufferGuard got = receive.Join();
        ChannelInfo after = ChannelOf(pool, "c");
        Assert.Equal((0, 1L, 1L), (after.BlockedReceivers, after.ReceiveWaits, after.Received));
    }

    [Fact]
    public void A_process_killed_while_blocked_on_a_full_channel_is_not_shown_blocked_and_its_recovery_is_counted()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using BufferChannel ch = pool.Channel("c", depth: 2);
        using var producer = TestChild.Start("channel-produce", pool.Name, "c", "2", "1", "5");
        _ = producer.Expect("ready");
        Shm.WaitUntil(() => ChannelOf(pool, "c").BlockedSenders == 1, "the producer blocked on the full channel");

        producer.KillHard(); // its bit stays set in the channel: the dead entry must not count
        Assert.Equal(0, ChannelOf(pool, "c").BlockedSenders);
        Assert.True(pool.ReclaimDeadProcesses() >= 1);
        PoolSummary s = PoolInspector.Summarize(pool.Name);
        Assert.Equal((3L, 1L), (s.Acquires, s.Recoveries));
        Assert.Equal(0, ChannelOf(pool, "c").BlockedSenders);
        for (int i = 0; i < 2; i++)
        {
            using BufferGuard g = ch.Receive();
        }
    }

    /// <summary>The 32 bytes of BlockedSenders (ChannelHeader offset 160) as the segment holds them.</summary>
    private static byte[] BlockedSenderBits(string pool, string channel)
    {
        ulong instance = Shm.ReadControl(pool, 32, 8); // PoolHeader.InstanceId
        byte[] header = File.ReadAllBytes(Path.Combine(Shm.Directory, $"{Xmem.Layout.LayoutConstants.ObjectPrefix}{pool}.{instance:x16}.c{channel}"));
        return header[160..192];
    }

    [Fact]
    public void A_dead_senders_bit_is_not_shown_for_the_next_owner_of_its_entry_and_goes_when_that_owner_opens_the_channel()
    {
        using BufferPool pool = NewPool(capacity: 16);
        using BufferChannel ch = pool.Channel("c", depth: 8);
        using (var producer = TestChild.Start("channel-produce", pool.Name, "c", "8", "1", "10"))
        {
            _ = producer.Expect("ready");
            Shm.WaitUntil(() => ChannelOf(pool, "c").BlockedSenders == 1, "the producer blocked on the full channel");
            producer.KillHard();
        }

        Assert.Contains(BlockedSenderBits(pool.Name, "c"), b => b != 0); // the dead producer's bit, left set

        // The next process to attach lands on the dead entry (the lowest free lock), recovers it and lives there.
        using var next = TestChild.Start("session", pool.Name);
        _ = next.Expect("ready");
        Assert.Equal(0, ChannelOf(pool, "c").BlockedSenders); // alive, but with no thread waiting in a channel

        Assert.Equal("ok", next.Ask("channel c")); // its first open of the channel clears its entry's bits
        Assert.All(BlockedSenderBits(pool.Name, "c"), b => Assert.Equal(0, b));
        Assert.Equal(1, PoolInspector.Summarize(pool.Name).Recoveries);
        for (int i = 0; i < 8; i++)
        {
            using BufferGuard g = ch.Receive();
        }
    }

    [Fact]
    public void An_acquire_that_finds_the_pool_full_counts_one_wait()
    {
        using BufferPool pool = NewPool(capacity: 1);
        using BufferGuard only = pool.AcquireCpu(64);
        Assert.False(pool.TryAcquireCpu(64, TimeSpan.FromMilliseconds(20), out _));
        PoolSummary s = PoolInspector.Summarize(pool.Name);
        Assert.Equal((1L, 1L), (s.Acquires, s.AcquireWaits));
    }
}
