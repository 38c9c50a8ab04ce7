using System.Runtime.InteropServices;
using System.Text.Json;

namespace Xmem.Tests.Cli;

/// <summary>The <c>xmem</c> command, run as a real process: demo, ls, stat, rm, gc and the exit codes.</summary>
public sealed partial class CliTests : PoolTest
{
    private const int SIGKILL = 9;
    private const int SIGTERM = 15;
    private const int SIGSTOP = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [Fact]
    public void Demo_with_20_frames_exits_0_prints_the_figures_and_leaves_nothing_in_the_shm_directory()
    {
        using var dir = new PrivateShmDirectory();
        XmemCli.Result r = XmemCli.Run(["demo", "--frames", "20"], dir.Environment, null);

        Assert.True(r.ExitCode == 0, r.ToString());
        foreach (string figure in new[] { "frames/s", "µs per frame", "GB/s", "latency p50 µs", "latency p99 µs", "every byte checked", "(1080, 1920, 3) 'image/rgb8'" })
        {
            Assert.Contains(figure, r.Stdout, StringComparison.Ordinal);
        }

        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_json_in_queue_mode_has_every_frame_checked_exactly_once_by_one_of_two_consumers()
    {
        using var dir = new PrivateShmDirectory();
        XmemCli.Result r = XmemCli.Run(["demo", "--frames", "40", "--consumers", "2", "--size", "1M", "--json"], dir.Environment, null);

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("queue", root.GetProperty("mode").GetString());
        Assert.Equal(40, root.GetProperty("frames").GetInt32());
        Assert.Equal(2, root.GetProperty("consumers").GetInt32());
        Assert.Equal(40, root.GetProperty("framesChecked").GetInt64());
        Assert.Equal(40L * (1 << 20), root.GetProperty("bytesVerified").GetInt64());
        JsonElement[] each = root.GetProperty("perConsumer").EnumerateArray().ToArray();
        Assert.Equal(2, each.Length);
        Assert.Equal(40, each.Sum(c => c.GetProperty("frames").GetInt32()));
        Assert.True(root.GetProperty("framesPerSecond").GetDouble() > 0);
        double p50 = root.GetProperty("latencyP50Microseconds").GetDouble();
        Assert.True(p50 > 0 && p50 <= root.GetProperty("latencyP99Microseconds").GetDouble(), r.Stdout);
        Assert.True(root.GetProperty("poolRemoved").GetBoolean());
        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_fanout_has_every_consumer_check_every_frame()
    {
        using var dir = new PrivateShmDirectory();
        XmemCli.Result r = XmemCli.Run(["demo", "--fanout", "--frames", "30", "--consumers", "3", "--size", "320x240x3", "--json"], dir.Environment, null);

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("fanout", root.GetProperty("mode").GetString());
        Assert.Equal([240L, 320, 3], root.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal("image/rgb8", root.GetProperty("contentType").GetString());
        Assert.Equal(3 * 30, root.GetProperty("framesChecked").GetInt64());
        Assert.Equal(3L * 30 * 320 * 240 * 3, root.GetProperty("bytesVerified").GetInt64());
        Assert.All(root.GetProperty("perConsumer").EnumerateArray(), c => Assert.Equal(30, c.GetProperty("frames").GetInt32()));
        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_whose_consumer_is_killed_fails_with_exit_1_and_leaves_nothing()
    {
        using var dir = new PrivateShmDirectory();
        const string name = "cli-demo-consumer-killed";
        using XmemCli.Running demo = XmemCli.Start(["demo", "--frames", "100000000", "--size", "64K", "--consumers", "2", "--name", name], dir.Environment);
        int[] pids = AttachedPids(name, dir, atLeast: 3);
        int consumer = pids.First(p => p != demo.Process.Id);

        Assert.Equal(0, Kill(consumer, SIGKILL));
        Assert.True(demo.Process.WaitForExit(TestChild.Watchdog), "watchdog: the demo did not stop after its consumer was killed");

        Assert.Equal(1, demo.Process.ExitCode);
        Assert.Empty(dir.Entries());
    }

    [PythonDemoFact]
    public void Demo_with_a_python_consumer_checks_every_frame_as_a_numpy_array()
    {
        using var dir = new PrivateShmDirectory();
        XmemCli.Result r = XmemCli.Run(["demo", "--python", "--consumers", "2", "--frames", "30", "--json"], dir.Environment, null);

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal(30, root.GetProperty("framesChecked").GetInt64());
        JsonElement py = root.GetProperty("perConsumer").EnumerateArray().Single(c => c.GetProperty("runtime").GetString() == "python");
        Assert.Contains("(1080, 1920, 3)", py.GetProperty("view").GetString(), StringComparison.Ordinal);
        Assert.Empty(dir.Entries());
    }

    [PythonDemoFact]
    public void Demo_fanout_with_all_consumers_in_python_checks_every_frame_in_each()
    {
        using var dir = new PrivateShmDirectory();
        XmemCli.Result r = XmemCli.Run(["demo", "--python", "all", "--fanout", "--consumers", "2", "--frames", "20", "--size", "64x48x3", "--json"], dir.Environment, null);

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(2 * 20, doc.RootElement.GetProperty("framesChecked").GetInt64());
        Assert.All(doc.RootElement.GetProperty("perConsumer").EnumerateArray(), c => Assert.Equal("python", c.GetProperty("runtime").GetString()));
        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_python_without_the_native_library_fails_with_one_line_that_says_to_build_it()
    {
        using var dir = new PrivateShmDirectory();
        var environment = new Dictionary<string, string>(dir.Environment) { ["XMEM_LIBRARY"] = Path.Combine(dir.Dir, "no-such-libxmem.so") };

        XmemCli.Result r = XmemCli.Run(["demo", "--python", "--frames", "5"], environment, null);

        Assert.True(r.ExitCode == 1, r.ToString());
        string line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("scripts/build-native.sh", line, StringComparison.Ordinal);
        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_stopped_by_SIGTERM_removes_its_pool_and_exits_143()
    {
        using var dir = new PrivateShmDirectory();
        const string name = "cli-demo-term";
        using XmemCli.Running demo = XmemCli.Start(["demo", "--frames", "100000000", "--size", "64K", "--name", name], dir.Environment);
        _ = AttachedPids(name, dir, atLeast: 2);

        Assert.Equal(0, Kill(demo.Process.Id, SIGTERM));
        Assert.True(demo.Process.WaitForExit(TestChild.Watchdog), "watchdog: the demo did not stop after SIGTERM");

        Assert.Equal(128 + SIGTERM, demo.Process.ExitCode);
        Assert.Empty(dir.Entries());
    }

    [Fact]
    public void Demo_whose_producer_is_killed_is_removed_by_its_last_consumer()
    {
        using var dir = new PrivateShmDirectory();
        const string name = "cli-demo-orphaned";
        using XmemCli.Running demo = XmemCli.Start(["demo", "--frames", "100000000", "--size", "64K", "--consumers", "2", "--name", name], dir.Environment);
        _ = AttachedPids(name, dir, atLeast: 3);

        Assert.Equal(0, Kill(demo.Process.Id, SIGKILL));

        Shm.WaitUntil(() => dir.Entries().Length == 0, "the consumers removed the pool of their dead producer");
    }

    [Fact]
    public void Ls_json_lists_a_pool_created_by_the_test()
    {
        string name = NewName("cli-ls");
        using BufferPool pool = BufferPool.Create(name, capacity: 6);
        using BufferGuard guard = pool.AcquireCpu(10_000);

        XmemCli.Result r = XmemCli.Run("ls", "--json");

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement p = doc.RootElement.GetProperty("pools").EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        Assert.Equal("live", p.GetProperty("status").GetString());
        Assert.Equal(6, p.GetProperty("capacity").GetInt32());
        Assert.Equal(1, p.GetProperty("slotsInUse").GetInt32());
        Assert.Equal(10_000, p.GetProperty("liveBytes").GetInt64());
        Assert.Equal(1, p.GetProperty("attachedProcesses").GetInt32());
        Assert.False(p.GetProperty("persistent").GetBoolean());
    }

    [Fact]
    public void Stat_json_shows_slots_counts_holders_and_references_in_flight()
    {
        string name = NewName("cli-stat");
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        using BufferGuard guard = pool.AcquireCpu(4096);
        _ = pool.AddRef(guard.MetaIndex); // count 2: one held by this process's guard, one in flight

        XmemCli.Result r = XmemCli.Run("stat", name, "--json");

        Assert.True(r.ExitCode == 0, r.ToString());
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        JsonElement slot = doc.RootElement.GetProperty("slots").EnumerateArray().Single(s => s.GetProperty("index").GetInt32() == guard.MetaIndex);
        Assert.Equal("live", slot.GetProperty("state").GetString());
        Assert.Equal(4096, slot.GetProperty("size").GetInt64());
        Assert.Equal(2, slot.GetProperty("count").GetInt32());
        Assert.Equal(1, slot.GetProperty("inFlight").GetInt32());
        JsonElement holder = Assert.Single(slot.GetProperty("holders").EnumerateArray());
        Assert.Equal(Environment.ProcessId, holder.GetProperty("pid").GetInt32());
        Assert.Equal(1, holder.GetProperty("count").GetInt32());
        JsonElement me = doc.RootElement.GetProperty("processes").EnumerateArray().Single(e => e.GetProperty("pid").GetInt32() == Environment.ProcessId);
        Assert.True(me.GetProperty("alive").GetBoolean());
        Assert.Equal(1, me.GetProperty("references").GetInt32());
        Assert.Equal(4, doc.RootElement.GetProperty("summary").GetProperty("capacity").GetInt32());

        Assert.Equal(1, pool.Release(guard.MetaIndex));
    }

    [Fact]
    public void Rm_removes_the_pool_and_all_its_segments()
    {
        string name = NewName("cli-rm");
        using (BufferPool pool = BufferPool.Create(name, capacity: 2, persistent: true))
        {
            _ = pool.PreallocateCpu(8192, 2);
        }

        Assert.NotEmpty(Shm.EntriesOf(name));

        XmemCli.Result r = XmemCli.Run("rm", name);

        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.False(BufferPool.Exists(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Fact]
    public void Rm_of_a_missing_pool_exits_1_with_one_line_that_says_what_to_do()
    {
        XmemCli.Result r = XmemCli.Run("rm", NewName("cli-missing"));

        Assert.Equal(1, r.ExitCode);
        string line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("xmem ls", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("frobnicate")]
    [InlineData("demo --frames 0")]
    [InlineData("demo --size lots")]
    [InlineData("demo --depth 3")]
    [InlineData("demo --python some")]
    [InlineData("demo --fanout --consumers 17")]
    [InlineData("stat")]
    [InlineData("stat bad/name")]
    public void Usage_errors_exit_2(string commandLine)
    {
        XmemCli.Result r = XmemCli.Run(commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries));

        Assert.True(r.ExitCode == 2, r.ToString());
    }

    [Fact]
    public void Gc_removes_a_pool_whose_processes_were_killed()
    {
        using var dir = new PrivateShmDirectory();
        const string name = "cli-gc-victim";
        using XmemCli.Running demo = XmemCli.Start(["demo", "--frames", "100000000", "--size", "64K", "--capacity", "4", "--name", name], dir.Environment);
        int[] pids = AttachedPids(name, dir, atLeast: 2);

        // Stop all first, so that no survivor sees the others die and cleans up; then kill them.
        foreach (int pid in pids)
        {
            Assert.Equal(0, Kill(pid, SIGSTOP));
        }

        foreach (int pid in pids)
        {
            Assert.Equal(0, Kill(pid, SIGKILL));
        }

        Assert.True(demo.Process.WaitForExit(TestChild.Watchdog), "watchdog: the killed demo did not exit");
        Shm.WaitUntil(() => Pool(XmemCli.Run(["ls", "--json"], dir.Environment, null), name)?.GetProperty("status").GetString() == "stale", "the pool turned stale");

        XmemCli.Result gc = XmemCli.Run(["gc", "--json"], dir.Environment, null);

        Assert.True(gc.ExitCode == 0, gc.ToString());
        using JsonDocument doc = JsonDocument.Parse(gc.Stdout);
        Assert.Contains(doc.RootElement.GetProperty("actions").EnumerateArray(), a => a.GetProperty("pool").GetString() == name && a.GetProperty("action").GetString() == "removed-stale-pool");
        Assert.Empty(dir.Entries());
    }

    /// <summary>Waits until the pool has at least <paramref name="atLeast"/> live attached processes; their pids.</summary>
    private static int[] AttachedPids(string name, PrivateShmDirectory dir, int atLeast)
    {
        int[] pids = [];
        Shm.WaitUntil(
            () =>
            {
                XmemCli.Result r = XmemCli.Run(["stat", name, "--json"], dir.Environment, null);
                if (r.ExitCode != 0)
                {
                    return false;
                }

                using JsonDocument doc = JsonDocument.Parse(r.Stdout);
                pids = doc.RootElement.GetProperty("processes").EnumerateArray()
                    .Where(e => e.GetProperty("alive").GetBoolean() && e.GetProperty("state").GetString() == "active")
                    .Select(e => e.GetProperty("pid").GetInt32()).ToArray();
                return pids.Length >= atLeast;
            },
            $"{atLeast} processes attached to '{name}'");
        return pids;
    }

    private static JsonElement? Pool(XmemCli.Result ls, string name)
    {
        Assert.True(ls.ExitCode == 0, ls.ToString());
        using JsonDocument doc = JsonDocument.Parse(ls.Stdout);
        foreach (JsonElement p in doc.RootElement.GetProperty("pools").EnumerateArray())
        {
            if (p.GetProperty("name").GetString() == name)
            {
                return p.Clone();
            }
        }

        return null;
    }

    /// <summary>A directory of its own (XMEM_SHM_DIR for the CLI processes), on tmpfs when /dev/shm exists, so that a
    /// test can check that nothing at all is left in it.</summary>
    private sealed class PrivateShmDirectory : IDisposable
    {
        public PrivateShmDirectory()
        {
            string parent = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
            Dir = Path.Combine(parent, $"xmem-cli-test-{System.Environment.ProcessId}-{Guid.NewGuid():N}");
            Directory.CreateDirectory(Dir);
            Environment = new Dictionary<string, string> { ["XMEM_SHM_DIR"] = Dir };
        }

        public string Dir { get; }

        /// <summary>The environment that points the CLI at this directory.</summary>
        public IReadOnlyDictionary<string, string> Environment { get; }

        public string[] Entries() => Directory.EnumerateFileSystemEntries(Dir).Select(e => Path.GetFileName(e)).ToArray();

        public void Dispose() => Directory.Delete(Dir, recursive: true);
    }
}

/// <summary>A fact that needs a Python consumer for the demo: the built native library (scripts/build-native.sh),
/// /usr/bin/python3 with numpy, and python/examples/consumer.py; skipped, saying which is missing, otherwise.</summary>
public sealed class PythonDemoFactAttribute : FactAttribute
{
    public PythonDemoFactAttribute()
    {
        string lib = Path.Combine(BuildPaths.RepoRoot, "artifacts", "native", "libxmem.so");
        string script = Path.Combine(BuildPaths.RepoRoot, "python", "examples", "consumer.py");
        if (!File.Exists(lib))
        {
            Skip = $"needs the native library {lib}: run scripts/build-native.sh.";
        }
        else if (!File.Exists(script))
        {
            Skip = $"needs {script}.";
        }
        else if (!HasNumpy())
        {
            Skip = "needs /usr/bin/python3 with numpy.";
        }
    }

    private static bool HasNumpy()
    {
        if (!File.Exists("/usr/bin/python3"))
        {
            return false;
        }

        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3", ["-c", "import numpy"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        return p.WaitForExit(30_000) && p.ExitCode == 0;
    }
}
