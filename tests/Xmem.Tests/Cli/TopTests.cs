using System.Globalization;
using System.Text.Json;

namespace Xmem.Tests.Cli;

/// <summary><c>xmem top --once --json</c> and <c>xmem stat</c> against a known pipeline running in other processes:
/// a producer that sent 14 buffers into a channel of depth 4 and waits to send its 15th, a taker that took 10 of them
/// and stopped, and a receiver waiting on a channel nobody sends to. Every figure the test checks follows from what
/// the processes did, not from timing. The live view is tested in a real terminal by scripts/test-top.sh.</summary>
public sealed class TopTests : PoolTest
{
    private const int Depth = 4, Taken = 10, Produced = 20;

    /// <summary>The pipeline beside the test; disposing kills its processes.</summary>
    private sealed class Pipeline : IDisposable
    {
        public required TestChild Producer { get; init; }
        public required TestChild Taker { get; init; }
        public required TestChild Idle { get; init; }

        public void Dispose()
        {
            Producer.Dispose();
            Taker.Dispose();
            Idle.Dispose();
        }
    }

    internal static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);

    /// <summary>Starts the pipeline on <paramref name="pool"/> and waits until the taker took its 10.</summary>
    private static Pipeline StartPipeline(string pool)
    {
        var p = new Pipeline
        {
            Producer = TestChild.Start("channel-produce", pool, "frames", Num(Depth), "1", Num(Produced)),
            Taker = TestChild.Start("channel-take", pool, "frames", Num(Depth), Num(Taken)),
            Idle = TestChild.Start("channel-take", pool, "idle", Num(Depth), "1"),
        };
        try
        {
            _ = p.Producer.Expect("ready");
            _ = p.Taker.Expect("ready");
            _ = p.Idle.Expect("ready");
            Assert.Equal(Num(Taken), p.Taker.Expect("took"));
            return p;
        }
        catch
        {
            p.Dispose();
            throw;
        }
    }

    /// <summary>Runs <c>xmem top --once --json</c> until the pool's "frames" channel shows the producer stuck (14 sent,
    /// one blocked sender) and the idle receiver waiting; returns that sample's pool (a watchdog, never a timing assert).</summary>
    private static (JsonDocument Doc, JsonElement Pool) WaitForStalledPipeline(string pool)
    {
        long end = Environment.TickCount64 + (long)TestChild.Watchdog.TotalMilliseconds;
        string last = "";
        while (Environment.TickCount64 < end)
        {
            XmemCli.Result r = XmemCli.Run(["top", "--once", "--json", "--interval", "0.3"]);
            Assert.True(r.ExitCode == 0, r.ToString());
            last = r.Stdout;
            JsonDocument doc = JsonDocument.Parse(r.Stdout);
            JsonElement? found = doc.RootElement.GetProperty("pools").EnumerateArray().Cast<JsonElement?>().FirstOrDefault(e => e!.Value.GetProperty("name").GetString() == pool);
            if (found is { } p && Channel(p, "frames") is { } f && Channel(p, "idle") is { } idle
                && f.GetProperty("sent").GetInt64() == Depth + Taken && f.GetProperty("blockedSenders").GetInt32() == 1
                && idle.GetProperty("blockedReceivers").GetInt32() == 1 && f.GetProperty("bottleneck").GetBoolean())
            {
                return (doc, p);
            }

            doc.Dispose();
        }

        throw new TimeoutException($"watchdog: xmem top never showed pool {pool} stalled as expected; last sample:\n{last}");
    }

    private static JsonElement? Channel(JsonElement pool, string name) =>
        pool.GetProperty("channels").EnumerateArray().Cast<JsonElement?>().FirstOrDefault(c => c!.Value.GetProperty("name").GetString() == name);

    [Fact]
    public void Top_once_json_shows_the_counters_depth_blocked_stages_and_bottleneck_of_a_pipeline_in_other_processes()
    {
        using BufferPool pool = NewPool(capacity: 32);
        using Pipeline pipe = StartPipeline(pool.Name);
        (JsonDocument doc, JsonElement p) = WaitForStalledPipeline(pool.Name);
        using (doc)
        {
            Assert.True(doc.RootElement.GetProperty("intervalSeconds").GetDouble() > 0);
            Assert.Equal("live", p.GetProperty("status").GetString());
            Assert.Equal(32, p.GetProperty("capacity").GetInt32());
            Assert.Equal(Depth + Taken + 1, p.GetProperty("acquires").GetInt64()); // the 15th buffer waits in the producer's Send
            Assert.Equal(Depth + 1, p.GetProperty("slotsInUse").GetInt32());      // 4 in the channel, 1 in the producer
            Assert.Equal(0, p.GetProperty("acquireWaits").GetInt64());
            Assert.Equal(0, p.GetProperty("recoveries").GetInt64());
            var pids = p.GetProperty("processes").EnumerateArray().Select(e => e.GetProperty("pid").GetInt32()).ToHashSet();
            Assert.Superset(new HashSet<int> { Environment.ProcessId, pipe.Producer.Pid, pipe.Taker.Pid, pipe.Idle.Pid }, pids);
            Assert.All(p.GetProperty("processes").EnumerateArray(), e => Assert.False(string.IsNullOrEmpty(e.GetProperty("command").GetString())));

            JsonElement frames = Channel(p, "frames")!.Value;
            Assert.Equal("queue", frames.GetProperty("mode").GetString());
            Assert.Equal(Depth, frames.GetProperty("capacity").GetInt32());
            Assert.Equal(Depth, frames.GetProperty("depth").GetInt32());
            Assert.Equal(Depth + Taken, frames.GetProperty("sent").GetInt64());
            Assert.Equal(Taken, frames.GetProperty("received").GetInt64());
            Assert.True(frames.GetProperty("full").GetBoolean());
            Assert.Equal(0, frames.GetProperty("blockedReceivers").GetInt32());
            Assert.True(frames.GetProperty("sendWaits").GetInt64() >= 1);
            Assert.True(frames.GetProperty("sendBlockedSeconds").GetDouble() > 0);
            Assert.True(frames.GetProperty("sendBlockedPerSecond").GetDouble() > 0); // the producer's wait shows while it lasts
            Assert.Equal(0, frames.GetProperty("sendsPerSecond").GetDouble()); // stalled: nothing moved between the two readings
            Assert.Equal(0, frames.GetProperty("receivesPerSecond").GetDouble());

            JsonElement idle = Channel(p, "idle")!.Value;
            Assert.Equal(0, idle.GetProperty("depth").GetInt32());
            Assert.Equal(0, idle.GetProperty("sent").GetInt64());
            Assert.Equal(1, idle.GetProperty("blockedReceivers").GetInt32());
            Assert.Equal(0, idle.GetProperty("blockedSenders").GetInt32());
            Assert.True(idle.GetProperty("receiveWaits").GetInt64() >= 1);
            Assert.False(idle.GetProperty("bottleneck").GetBoolean());
        }
    }

    [Fact]
    public void Stat_shows_the_same_per_channel_figures_as_a_table_and_as_json()
    {
        using BufferPool pool = NewPool(capacity: 32);
        using Pipeline pipe = StartPipeline(pool.Name);
        WaitForStalledPipeline(pool.Name).Doc.Dispose();

        XmemCli.Result json = XmemCli.Run(["stat", pool.Name, "--json"]);
        Assert.True(json.ExitCode == 0, json.ToString());
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        Assert.Equal(Depth + Taken + 1, doc.RootElement.GetProperty("summary").GetProperty("acquires").GetInt64());
        JsonElement frames = doc.RootElement.GetProperty("channels").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "frames");
        Assert.Equal((Depth, Depth + Taken, (long)Taken, 1), (frames.GetProperty("depth").GetInt32(), frames.GetProperty("sent").GetInt64(), frames.GetProperty("received").GetInt64(), frames.GetProperty("blockedSenders").GetInt32()));

        XmemCli.Result table = XmemCli.Run(["stat", pool.Name]);
        Assert.True(table.ExitCode == 0, table.ToString());
        string row = table.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("frames", StringComparison.Ordinal));
        string[] cells = row.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["frames", "queue", "4/4", "14", "10", "1", "0"], cells[..7]);
        Assert.Contains("15 acquires", table.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Top_json_without_once_is_a_usage_error_and_top_without_a_terminal_says_what_to_use()
    {
        XmemCli.Result r = XmemCli.Run(["top", "--json"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--once", r.Stderr, StringComparison.Ordinal);

        XmemCli.Result noTerminal = XmemCli.Run(["top"]);
        Assert.Equal(2, noTerminal.ExitCode);
        Assert.Contains("xmem top --once --json", noTerminal.Stderr, StringComparison.Ordinal);
    }
}
