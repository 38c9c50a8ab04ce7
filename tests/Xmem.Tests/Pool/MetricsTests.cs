using System.Diagnostics.Metrics;
using System.Globalization;

namespace Xmem.Tests.Pool;

/// <summary>The meter "Xmem" (System.Diagnostics.Metrics), read with a MeterListener in this process while a known
/// pipeline runs in other processes: the figures are the shared-memory counters the other processes wrote, reported
/// for a pool and channels this process has open, with no code of the user's.</summary>
public sealed class MetricsTests : PoolTest
{
    private const int Depth = 4, Taken = 10;

    /// <summary>The latest measurement of each instrument for pool <paramref name="pool"/>, keyed by instrument name
    /// and channel tag ("" for a pool instrument).</summary>
    private static Dictionary<(string Instrument, string Channel), double> Collect(MeterListener listener, string pool, Dictionary<(string, string), double> into)
    {
        into.Clear();
        listener.RecordObservableInstruments();
        return into;
    }

    private static MeterListener Listen(string pool, Dictionary<(string, string), double> into, List<string> published)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Xmem")
                {
                    lock (published)
                    {
                        published.Add(instrument.Name);
                    }

                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? p = null, c = "";
            foreach (KeyValuePair<string, object?> t in tags)
            {
                if (t.Key == "xmem.pool")
                {
                    p = t.Value as string;
                }
                else if (t.Key == "xmem.channel")
                {
                    c = t.Value as string ?? "";
                }
            }

            if (p == pool)
            {
                into[(instrument.Name, c)] = value;
            }
        }

        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        listener.Start();
        return listener;
    }

    [Fact]
    public void A_MeterListener_sees_the_pool_and_channel_counters_of_a_producer_and_consumer_in_other_processes()
    {
        using BufferPool pool = NewPool(capacity: 32);
        using BufferChannel frames = pool.Channel("frames", Depth);
        using BufferChannel idle = pool.Channel("idle", Depth);
        using var producer = TestChild.Start("channel-produce", pool.Name, "frames", "4", "1", "20");
        using var taker = TestChild.Start("channel-take", pool.Name, "frames", "4", Taken.ToString(CultureInfo.InvariantCulture));
        using var waiter = TestChild.Start("channel-take", pool.Name, "idle", "4", "1");
        _ = producer.Expect("ready");
        _ = taker.Expect("ready");
        _ = waiter.Expect("ready");
        Assert.Equal("10", taker.Expect("took"));

        var values = new Dictionary<(string, string), double>();
        var published = new List<string>();
        using MeterListener listener = Listen(pool.Name, values, published);
        Shm.WaitUntil(
            () =>
            {
                Collect(listener, pool.Name, values);
                return values.GetValueOrDefault(("xmem.channel.sent", "frames")) == Depth + Taken
                    && values.GetValueOrDefault(("xmem.channel.blocked_senders", "frames")) == 1
                    && values.GetValueOrDefault(("xmem.channel.blocked_receivers", "idle")) == 1;
            },
            "the meter showing the producer blocked on a full channel and the idle receiver waiting");

        // One sample more: a sample is not a snapshot (each counter is read on its own), so the one that first showed
        // the blocked bits may have read a wait count from just before the wait began. Both blocked processes stay
        // blocked, and a wait is counted before its bit is set, so this sample sees every count the bits imply.
        Collect(listener, pool.Name, values);
        Assert.Equal(1, values[("xmem.channel.blocked_senders", "frames")]);
        Assert.Equal(1, values[("xmem.channel.blocked_receivers", "idle")]);
        Assert.Equal(Depth + Taken + 1, values[("xmem.pool.acquires", "")]);
        Assert.Equal(0, values[("xmem.pool.acquire_waits", "")]);
        Assert.Equal(0, values[("xmem.pool.recoveries", "")]);
        Assert.Equal(0, values[("xmem.pool.orphans_removed", "")]);
        Assert.Equal(32, values[("xmem.pool.capacity", "")]);
        Assert.Equal(Depth + 1, values[("xmem.pool.slots_in_use", "")]);
        Assert.Equal(Taken, values[("xmem.channel.received", "frames")]);
        Assert.Equal(Depth, values[("xmem.channel.depth", "frames")]);
        Assert.Equal(Depth, values[("xmem.channel.capacity", "frames")]);
        Assert.True(values[("xmem.channel.send_waits", "frames")] >= 1);
        Assert.True(values[("xmem.channel.send_blocked_time", "frames")] > 0);
        Assert.Equal(0, values[("xmem.channel.blocked_receivers", "frames")]);
        Assert.Equal(0, values[("xmem.channel.sent", "idle")]);
        Assert.Equal(0, values[("xmem.channel.depth", "idle")]);
        Assert.True(values[("xmem.channel.receive_waits", "idle")] >= 1);
        lock (published)
        {
            Assert.Contains("xmem.channel.blocked_senders", published);
        }
    }

    [Fact]
    public void A_pool_this_process_closed_is_no_longer_reported()
    {
        var values = new Dictionary<(string, string), double>();
        string name;
        using (BufferPool pool = NewPool(capacity: 4))
        {
            name = pool.Name;
            using BufferGuard g = pool.AcquireCpu(64);
            using MeterListener listener = Listen(name, values, []);
            Collect(listener, name, values);
            Assert.Equal(1, values[("xmem.pool.acquires", "")]);
            Assert.Equal(1, values[("xmem.pool.slots_in_use", "")]);
        }

        using MeterListener after = Listen(name, values, []);
        Collect(after, name, values);
        Assert.Empty(values);
    }
}
