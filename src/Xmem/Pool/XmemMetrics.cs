using System.Diagnostics.Metrics;
using Xmem.Channels;
using Xmem.Core;
using Xmem.Layout;

namespace Xmem.Pool;

/// <summary>
/// The <c>System.Diagnostics.Metrics</c> instruments of the meter "Xmem": the shared-memory counters (docs/layout.md,
/// "PoolHeader" and "ChannelHeader", Counters) of every pool and channel this process has open, so that
/// <c>dotnet-counters monitor --counters Xmem</c> and OpenTelemetry see them with no code of the user's. All are
/// observable: the figures live in shared memory already, and are read only when a listener collects (never on a hot
/// path). Tags: <c>xmem.pool</c> (the pool's name) and <c>xmem.channel</c> (the channel's name). A pool or channel
/// open twice in this process is reported once (by instance id). The figures are the pool's, not this process's: every
/// process that has the pool open reports the same numbers.
/// </summary>
internal static class XmemMetrics
{
    /// <summary>The meter's name.</summary>
    internal const string MeterName = "Xmem";

    internal const string PoolTag = "xmem.pool";
    internal const string ChannelTag = "xmem.channel";

    private static readonly Lazy<Meter> s_meter = new(Create);

    /// <summary>Creates the meter and its instruments once (the first pool opened in this process does).</summary>
    internal static void EnsureCreated() => _ = s_meter.Value;

    private static Meter Create()
    {
        var meter = new Meter(MeterName, typeof(XmemMetrics).Assembly.GetName().Version?.ToString());
        meter.CreateObservableCounter("xmem.pool.acquires", () => Pools(static (_, c) => (long)c.Acquires), "{acquire}", "Slots claimed by acquires");
        meter.CreateObservableCounter("xmem.pool.acquire_waits", () => Pools(static (_, c) => (long)c.AcquireWaits), "{wait}", "Acquires that found the pool full and waited");
        meter.CreateObservableCounter("xmem.pool.recoveries", () => Pools(static (_, c) => (long)c.Recoveries), "{process}", "Entries of dead processes recovered");
        meter.CreateObservableCounter("xmem.pool.orphans_removed", () => Pools(static (_, c) => (long)c.OrphansRemoved), "{segment}", "Orphaned data segments removed by recoveries");
        meter.CreateObservableGauge("xmem.pool.capacity", () => Pools(static (p, _) => p.Core.Control.Capacity), "{slot}", "Slots of the pool");
        meter.CreateObservableGauge("xmem.pool.slots_in_use", () => Pools(static (p, _) => SlotsInUse(p.Core)), "{slot}", "Slots holding a live buffer or being acquired");
        meter.CreateObservableCounter("xmem.channel.sent", () => Channels(static (_, c) => (long)c.Sent), "{message}", "Messages put into the channel");
        meter.CreateObservableCounter("xmem.channel.received", () => Channels(static (_, c) => (long)c.Received), "{message}", "Messages taken out of the channel");
        meter.CreateObservableCounter("xmem.channel.send_waits", () => Channels(static (_, c) => (long)c.SendWaits), "{wait}", "Sends that found the channel full and waited");
        meter.CreateObservableCounter("xmem.channel.receive_waits", () => Channels(static (_, c) => (long)c.ReceiveWaits), "{wait}", "Receives that found the channel empty and waited");
        meter.CreateObservableCounter("xmem.channel.send_blocked_time", () => Channels(static (_, c) => c.SendBlockedNs / 1e9), "s", "Time senders spent waiting for room");
        meter.CreateObservableGauge("xmem.channel.depth", () => Channels(static (s, _) => s.CurrentDepth()), "{message}", "Messages waiting in the channel (its fullest ring)");
        meter.CreateObservableGauge("xmem.channel.capacity", () => Channels(static (s, _) => (long)s.Depth), "{message}", "Messages each ring of the channel holds");
        meter.CreateObservableGauge("xmem.channel.blocked_senders", () => Channels(static (_, c) => (long)c.BlockedSenders), "{process}", "Processes with a sender waiting for room");
        meter.CreateObservableGauge("xmem.channel.blocked_receivers", () => Channels(static (_, c) => (long)c.BlockedReceivers), "{process}", "Processes with a receiver waiting for a message");
        return meter;
    }

    /// <summary>One measurement per open pool instance.</summary>
    private static List<Measurement<T>> Pools<T>(Func<BufferPool, PoolCounterValues, T> value)
        where T : struct
    {
        var measurements = new List<Measurement<T>>();
        var seen = new HashSet<ulong>();
        foreach (BufferPool pool in OpenPools.Snapshot())
        {
            WithLease(pool, () =>
            {
                if (seen.Add(pool.Core.Control.Instance))
                {
                    measurements.Add(new Measurement<T>(value(pool, pool.Core.Control.Counters.Read()), new KeyValuePair<string, object?>(PoolTag, pool.Core.Bare)));
                }
            });
        }

        return measurements;
    }

    /// <summary>One measurement per channel instance open in this process.</summary>
    private static List<Measurement<T>> Channels<T>(Func<ChannelSegment, ChannelCounterValues, T> value)
        where T : struct
    {
        var measurements = new List<Measurement<T>>();
        var seen = new HashSet<ulong>();
        foreach (BufferPool pool in OpenPools.Snapshot())
        {
            WithLease(pool, () =>
            {
                ProcessRegistry registry = pool.Core.Registry;
                string bare = pool.Core.Bare;
                pool.Handover.ForEachOpen((measurements, seen, value, registry, bare), static (seg, st) =>
                {
                    if (st.seen.Add(seg.InstanceId))
                    {
                        ChannelCounterValues c = seg.Counters.Read(st.registry.HasLiveChannelWaiters);
                        st.measurements.Add(new Measurement<T>(
                            st.value(seg, c),
                            new KeyValuePair<string, object?>(PoolTag, st.bare),
                            new KeyValuePair<string, object?>(ChannelTag, seg.Name)));
                    }
                });
            });
        }

        return measurements;
    }

    /// <summary>Runs <paramref name="read"/> with the pool's mappings leased, so a Dispose on another thread cannot
    /// unmap them meanwhile; a pool disposed already is skipped.</summary>
    private static void WithLease(BufferPool pool, Action read)
    {
        if (pool.IsInheritedThroughFork)
        {
            return; // inert in a forked child: its figures are the parent's to report
        }

        bool leased = false;
        try
        {
            pool.Core.Lease.DangerousAddRef(ref leased);
            read();
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile: nothing to report for it.
        }
        finally
        {
            if (leased)
            {
                pool.Core.Lease.DangerousRelease();
            }
        }
    }

    private static unsafe int SlotsInUse(PoolCore core)
    {
        int n = 0;
        for (int s = 0; s < core.Control.Capacity; s++)
        {
            uint state = SlotWord.State(core.Slots.Word(s));
            n += state is SlotWord.Live or SlotWord.Acquiring ? 1 : 0;
        }

        return n;
    }
}
