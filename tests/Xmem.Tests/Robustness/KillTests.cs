using System.Diagnostics;
using Xmem.Layout;
using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// "No leaks, whatever happens": processes that use a pool at full speed are killed with SIGKILL at random moments,
/// hundreds of times, and afterwards every slot comes back (docs/layout.md, "Crash rules"; "What every port must
/// test": a process killed with SIGKILL at random moments loses no slot).
/// </summary>
public sealed partial class KillTests(ITestOutputHelper output) : PoolTest
{
    private const int Capacity = 8;
    private const int Victims = 2;
    private const int TargetKills = 300;

    /// <summary>Bounds the run on a slow machine; the figures say how many kills it reached.</summary>
    private static readonly TimeSpan KillPhase = TimeSpan.FromSeconds(75);

    /// <summary>
    /// Two children loop acquire / Get / GetMut / Dispose on random slots of an 8-slot pool (so it is often full, and
    /// they wait, reclaim and recover each other), stamping and checking data, and now and then detach (guards still
    /// held) and attach again (robust-killloop). The test kills one
    /// after a random 0–20 ms and starts another, about 300 times; one kill in four lands 0–20 ms after a new child
    /// started opening the pool, inside attach and attach-time recovery. Then this process reclaims the dead and the
    /// pool must be whole: every slot Free with count 0, unlocked and without journal, no waiter counted, no entry but
    /// this process's, no segment but the control segment, this process's holdings and memory that a slot records;
    /// every slot can be acquired again (which repairs lost hints) and then every hint is set; Trim leaves only the
    /// control segment and this process's holdings.
    /// </summary>
    [Fact]
    public void Hundreds_of_SIGKILLs_at_random_moments_lose_no_buffer()
    {
        string name = NewName("kill");
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        var tally = new VictimTally();
        int kills = 0, attachKills = 0, started = 0, registeredAtEnd = -1;
        var clock = Stopwatch.StartNew();
        using BufferPool pool = BufferPool.Create(name, Capacity);
        var children = new TestChild?[Victims];
        try
        {
            for (int i = 0; i < Victims; i++)
            {
                children[i] = StartVictim(name, rng.Next(), ref started);
                _ = children[i]!.Expect("opening");
                _ = children[i]!.Expect("looping");
            }

            while (kills < TargetKills && clock.Elapsed < KillPhase)
            {
                int v = rng.Next(Victims);
                Thread.Sleep(rng.Next(0, 21));
                tally.Add(Kill(children[v]!));
                children[v] = null;
                kills++;

                children[v] = StartVictim(name, rng.Next(), ref started);
                _ = children[v]!.Expect("opening");
                if (rng.Next(4) == 0)
                {
                    // Inside Open: attach, attach-time recovery of a dead entry, registration.
                    Thread.Sleep(rng.Next(0, 21));
                    tally.Add(Kill(children[v]!));
                    children[v] = null;
                    kills++;
                    attachKills++;
                    children[v] = StartVictim(name, rng.Next(), ref started);
                    _ = children[v]!.Expect("opening");
                }

                _ = children[v]!.Expect("looping");
            }
        }
        finally
        {
            // Stop every victim before killing any, so that no survivor sees the others die and reclaims them; the
            // entries left registered then are exactly what this process must reclaim below. (A victim may be
            // stopped between a detach and its reattach, holding no entry at all; then there is less to reclaim.)
            foreach (TestChild? c in children)
            {
                if (c is not null)
                {
                    _ = Signal(c.Pid, SIGSTOP);
                }
            }

            registeredAtEnd = RegisteredEntriesOtherThan(name, pool.ProcessEntryIndex);
            foreach (TestChild? c in children)
            {
                if (c is not null)
                {
                    tally.Add(Kill(c));
                    kills++;
                }
            }
        }

        TimeSpan killPhase = clock.Elapsed;

        // This process is the only one left: it reclaims every dead entry, exactly those still registered above.
        int reclaimed = pool.ReclaimDeadProcesses();
        PoolAudit audit = PoolAudit.Of(name, liveEntries: 0);

        // Every slot comes back: all of them can be acquired at once (the full scan repairs any lost hint).
        var guards = new List<BufferGuard>();
        for (int i = 0; i < Capacity; i++)
        {
            guards.Add(pool.AcquireCpu(100));
        }

        Assert.Equal(Enumerable.Range(0, Capacity), guards.Select(g => g.MetaIndex).Order());
        guards.ForEach(g => g.Dispose());
        bool hintsSet = PoolAudit.AllHintsSet(name);
        _ = pool.Trim();
        string[] left = Shm.EntriesOf(name);
        string[] expectedLeft = [.. new[] { LayoutConstants.ObjectPrefix + name, HoldingsOfEntry0(name) }.Order(StringComparer.Ordinal)];

        string figures = RobustnessFigures.Record("kill",
            ("kills", kills), ("attach_kills", attachKills), ("children", started), ("seconds", Math.Round(killPhase.TotalSeconds, 1)),
            ("victim_operations_at_least", tally.Operations), ("victim_reattaches", tally.Reattaches),
            ("reclaimed_at_end", reclaimed), ("registered_at_end", registeredAtEnd), ("buffers_lost", audit.SlotsNotFree), ("hints_lost", audit.HintsLost),
            ("orphan_segments", audit.OrphanDataSegments), ("violations", tally.Violations.Count), ("seed", seed));
        output.WriteLine(figures);
        foreach (string p in audit.Problems)
        {
            output.WriteLine("problem: " + p);
        }

        Assert.True(tally.Violations.Count == 0, $"{tally.Violations.Count} data checks failed (seed {seed}):\n{string.Join('\n', tally.Violations.Take(20))}");
        Assert.True(audit.Problems.Count == 0, $"after {kills} kills and reclaiming the dead, the pool is not whole (seed {seed}):\n{string.Join('\n', audit.Problems)}");
        Assert.True(reclaimed == registeredAtEnd, $"the last victims' {registeredAtEnd} registered entries must have been reclaimed by this process, reclaimed {reclaimed}");
        Assert.True(hintsSet, "every slot was acquired and released again, yet a hint is clear");
        Assert.Equal(expectedLeft, left);
    }

    private static TestChild StartVictim(string name, int seed, ref int started)
    {
        started++;
        return TestChild.Start("robust-killloop", name, seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>What the victims reported: broken data checks, operations done (to the 1024 below), reattaches.</summary>
    private sealed class VictimTally
    {
        public List<string> Violations { get; } = [];

        public long Operations { get; private set; }

        public int Reattaches { get; private set; }

        public void Add(VictimTally one)
        {
            Violations.AddRange(one.Violations);
            Operations += one.Operations;
            Reattaches += one.Reattaches;
        }

        public void Read(string line)
        {
            if (line.StartsWith("violation", StringComparison.Ordinal))
            {
                Violations.Add(line);
            }
            else if (line.StartsWith("progress ", StringComparison.Ordinal))
            {
                Operations = long.Parse(line[9..], System.Globalization.CultureInfo.InvariantCulture);
            }
            else if (line == "reattaching")
            {
                Reattaches++;
            }
        }
    }

    /// <summary>SIGKILL, then reads what the victim wrote up to the end of its stdout.</summary>
    private static VictimTally Kill(TestChild child)
    {
        var tally = new VictimTally();
        using (child)
        {
            child.KillHard();
            while (true)
            {
                try
                {
                    tally.Read(child.ReadLine(TimeSpan.FromSeconds(30)));
                }
                catch (InvalidOperationException)
                {
                    break; // end of its stdout
                }
            }
        }

        return tally;
    }

    private const int SIGSTOP = 19;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Signal(int pid, int signal);

    /// <summary>Process entries whose State is not Free, other than <paramref name="mine"/>.</summary>
    private static int RegisteredEntriesOtherThan(string name, int mine) =>
        Enumerable.Range(0, LayoutConstants.MaxProcesses).Count(i => i != mine
            && Shm.ReadControl(name, LayoutConstants.ProcessTableOffset + ((long)i * LayoutConstants.ProcessEntrySize), 4) != 0);

    private static string HoldingsOfEntry0(string name) =>
        $"{LayoutConstants.ObjectPrefix}{name}.{Shm.ReadControl(name, 32, 8):x16}.p0";
}
