using System.Globalization;

namespace Xmem.Tests.Channels;

/// <summary>Channels between real processes: exactly-once delivery, fan-out, and processes killed with SIGKILL in
/// the middle of sends and receives.</summary>
public sealed class ChannelCrossProcessTests : PoolTest
{
    [Fact]
    public void Many_producers_and_consumers_in_several_processes_deliver_each_message_exactly_once()
    {
        const int Producers = 2, Consumers = 2, PerProducer = 1500;
        using BufferPool pool = NewPool(capacity: 64);
        using BufferChannel ch = pool.Channel("work", depth: 16);
        var consumers = Enumerable.Range(0, Consumers).Select(_ => TestChild.Start("channel-consume", pool.Name, "work", "16")).ToList();
        var producers = Enumerable.Range(1, Producers).Select(id => TestChild.Start("channel-produce", pool.Name, "work", "16", id.ToString(CultureInfo.InvariantCulture), PerProducer.ToString(CultureInfo.InvariantCulture))).ToList();
        try
        {
            foreach (TestChild c in consumers.Concat(producers))
            {
                _ = c.Expect("ready");
            }

            foreach (TestChild p in producers)
            {
                Assert.Equal(PerProducer.ToString(CultureInfo.InvariantCulture), p.Expect("sent"));
            }

            for (int i = 0; i < Consumers; i++)
            {
                BufferGuard stop = pool.AcquireCpu(8);
                stop.SetDescription(null, contentType: "stop");
                ch.Send(stop);
            }

            var all = new List<ulong>();
            foreach (TestChild c in consumers)
            {
                string[] parts = c.Expect("got").Split(' ');
                int n = int.Parse(parts[0], CultureInfo.InvariantCulture);
                if (n > 0)
                {
                    all.AddRange(parts[1].Split(',').Select(x => ulong.Parse(x, NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
                }

            }

            var expected = Enumerable.Range(1, Producers).SelectMany(id => Enumerable.Range(0, PerProducer).Select(i => ((ulong)id << 32) | (uint)i)).Order();
            Assert.Equal(expected, all.Order());

            foreach (TestChild c in consumers.Concat(producers))
            {
                c.Send("exit");
                Assert.Equal(0, c.WaitForExit());
            }

            AssertAllFree(pool);
        }
        finally
        {
            foreach (TestChild c in consumers.Concat(producers))
            {
                c.Dispose();
            }
        }
    }

    [Fact]
    public void Fan_out_delivers_every_buffer_to_every_subscriber_process()
    {
        using BufferPool pool = NewPool(capacity: 16);
        using BufferChannel ch = pool.Channel("frames", depth: 8, ChannelMode.FanOut);
        using var a = TestChild.Start("channel-subscribe", pool.Name, "frames", "20");
        using var b = TestChild.Start("channel-subscribe", pool.Name, "frames", "20");
        _ = a.Expect("ready");
        _ = b.Expect("ready");
        for (int i = 0; i < 20; i++)
        {
            Assert.True(pool.TryAcquireCpu(64, TestChild.Watchdog, out BufferGuard? g));
            g.SetDescription(null, (ulong)i);
            ch.Send(g);
        }

        string expected = string.Join(',', Enumerable.Range(0, 20));
        Assert.Equal(expected, a.Expect("got"));
        Assert.Equal(expected, b.Expect("got"));
        a.Send("exit");
        b.Send("exit");
        Assert.Equal(0, a.WaitForExit());
        Assert.Equal(0, b.WaitForExit());
        AssertAllFree(pool);
    }

    [Theory]
    [InlineData("send")]
    [InlineData("recv")]
    public void Processes_killed_in_the_middle_of_sends_and_receives_lose_nothing(string victimRole)
    {
        using BufferPool pool = NewPool(capacity: 32);
        using BufferChannel ch = pool.Channel("churn", depth: 8);
        var rng = new Random(victimRole.Length);
        for (int round = 0; round < 4; round++)
        {
            using var sender = TestChild.Start("channel-churn", pool.Name, "churn", "8", "send");
            using var receiver = TestChild.Start("channel-churn", pool.Name, "churn", "8", "recv");
            Assert.Equal("running", sender.ReadLine());
            Assert.Equal("running", receiver.ReadLine());
            Thread.Sleep(rng.Next(5, 60));
            TestChild victim = victimRole == "send" ? sender : receiver;
            TestChild other = victimRole == "send" ? receiver : sender;
            victim.KillHard();
            Thread.Sleep(rng.Next(5, 30));
            other.KillHard();
        }

        // Recovery: dead processes' guards go back (core), dead claims in the channel are repaired, then drain.
        _ = pool.RecoverDeadProcesses();
        _ = ch.RecoverDead();
        while (ch.TryReceive(TimeSpan.Zero, out BufferGuard? g))
        {
            g.Dispose();
        }

        _ = pool.RecoverDeadProcesses();
        AssertAllFree(pool);
        // The channel still works.
        ch.Send(pool.AcquireCpu(8));
        ch.Receive().Dispose();
        AssertAllFree(pool);
    }

    private static void AssertAllFree(BufferPool pool)
    {
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.True(pool.RefCount(i) == 0, $"slot {i} still has count {pool.RefCount(i)}");
        }
    }
}
