using Xmem.Layout;
using Xmem.Tests.Shared;
using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// When a pool goes away (docs/layout.md, "Removal"): a non-persistent pool is removed by its last detacher, whoever
/// that is, in-flight references or not; a persistent one outlives every process until it is removed by name; a pool
/// whose only process was SIGKILLed is replaced by a Create of the same name (or removed by RemoveIfStale, `xmem gc`)
/// unless it is persistent, in which case an Open recovers it. Every object of the old instance goes with it. (Open
/// against concurrent removers is in <see cref="PoolRemovalRaceTests"/>.)
/// </summary>
public sealed class PoolRemovalTests(ITestOutputHelper output) : PoolTest
{
    private static ulong InstanceOf(string name) => Shm.ReadControl(name, 32, 8);

    private static string[] ObjectsOfInstance(string name, ulong instance) =>
        Shm.EntriesOf(name).Where(f => f.StartsWith($"{LayoutConstants.ObjectPrefix}{name}.{instance:x16}.", StringComparison.Ordinal)).ToArray();

    /// <summary>The creator detaches first (the pool stays: another process uses it); the other process, which left
    /// a reference in flight, detaches last and removes every object.</summary>
    [Fact]
    public void The_last_detacher_removes_a_non_persistent_pool_even_when_it_is_not_the_creator()
    {
        string name = NewName("lastdetach");
        BufferPool pool = BufferPool.Create(name, capacity: 4);
        using TestChild child = TestChild.Start("session", name);
        _ = child.Expect("ready");
        string[] acquired = child.AskOk("acquire 5000").Split(' ');
        _ = child.AskOk($"forget {acquired[0]}"); // in flight: owned by no process, and no reason to keep the pool

        pool.Dispose();
        Assert.Contains(LayoutConstants.ObjectPrefix + name, Shm.EntriesOf(name));
        Assert.True(BufferPool.Exists(name));

        Assert.Equal("ok", child.Ask("exit"));
        Assert.Equal(0, child.WaitForExit());
        Assert.Empty(Shm.EntriesOf(name));
    }

    /// <summary>The creator is the last to detach: another process came and went; the creator's detach removes it.</summary>
    [Fact]
    public void The_creator_detaching_last_removes_a_non_persistent_pool()
    {
        string name = NewName("creatorlast");
        using (BufferPool pool = BufferPool.Create(name, capacity: 4))
        {
            using (TestChild child = TestChild.Start("session", name))
            {
                _ = child.Expect("ready");
                _ = child.AskOk("acquire 100");
                Assert.Equal("ok", child.Ask("exit"));
                Assert.Equal(0, child.WaitForExit());
            }

            Assert.True(BufferPool.Exists(name)); // the creator still uses it
            using BufferGuard g = pool.AcquireCpu(100);
        }

        Assert.Empty(Shm.EntriesOf(name));
    }

    /// <summary>A persistent pool outlives its processes with the data left in flight; it is not stale, so Create
    /// refuses the name and RemoveIfStale keeps it; a later process opens it and finds the data; only Remove ends it.</summary>
    [Fact]
    public void A_persistent_pool_stays_until_BufferPool_Remove()
    {
        string name = NewName("persistent");
        int index;
        using (TestChild creator = TestChild.Start("robust-create", name, "4", "persistent", "1", "1"))
        {
            _ = creator.Expect("creating");
            string ready = creator.Expect("ready");
            index = int.Parse(ready.Split("forgotten=")[1], System.Globalization.CultureInfo.InvariantCulture);
            creator.Send("exit");
            Assert.Equal(0, creator.WaitForExit());
        }

        Assert.True(BufferPool.Exists(name));
        Assert.False(BufferPool.RemoveIfStale(name));
        Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, capacity: 4));

        using (BufferPool pool = BufferPool.Open(name))
        {
            Assert.True(pool.IsPersistent);
            Assert.Equal(1, pool.RefCount(index)); // the in-flight reference survived every process
            using BufferGuard g = pool.Get(index);
            Assert.Equal(-1, BytePattern.FirstMismatch(g.ReadOnlySpan, index));
        }

        Assert.True(BufferPool.Exists(name)); // still persistent after this process detached too
        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
        Assert.False(BufferPool.Remove(name));
    }

    /// <summary>The only process of a non-persistent pool is killed holding buffers: its control segment, holdings
    /// and data segments stay behind. A Create of the same name replaces it: a new instance, and nothing of the old
    /// one left.</summary>
    [Fact]
    public void A_pool_whose_only_process_was_killed_is_replaced_by_Create()
    {
        string name = NewName("killedonly");
        using (TestChild creator = TestChild.Start("robust-create", name, "4", "transient", "2", "1"))
        {
            _ = creator.Expect("creating");
            _ = creator.Expect("ready");
            creator.KillHard();
        }

        ulong old = InstanceOf(name);
        Assert.NotEmpty(ObjectsOfInstance(name, old)); // holdings and data segments of the dead

        using (BufferPool pool = BufferPool.Create(name, capacity: 8))
        {
            Assert.NotEqual(old, InstanceOf(name));
            Assert.Empty(ObjectsOfInstance(name, old));
            Assert.Equal(8, pool.Capacity);
            for (int i = 0; i < pool.Capacity; i++)
            {
                Assert.Equal(0, pool.RefCount(i));
            }

            using BufferGuard g = pool.AcquireCpu(100);
            Assert.Equal(0, g.MetaIndex);
        }

        Assert.Empty(Shm.EntriesOf(name));
    }

    /// <summary>The same leftovers are removed by RemoveIfStale (what `xmem gc` runs).</summary>
    [Fact]
    public void A_pool_whose_only_process_was_killed_is_removed_by_RemoveIfStale()
    {
        string name = NewName("killedgc");
        using (TestChild creator = TestChild.Start("robust-create", name, "4", "transient", "1", "1"))
        {
            _ = creator.Expect("creating");
            _ = creator.Expect("ready");
            creator.KillHard();
        }

        Assert.NotEmpty(Shm.EntriesOf(name));
        Assert.True(BufferPool.RemoveIfStale(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    /// <summary>A persistent pool whose only process was killed is kept (Create refuses the name); an Open lands on
    /// the dead entry and gives back what its guards held, while the reference it left in flight stays.</summary>
    [Fact]
    public void A_persistent_pool_whose_only_process_was_killed_is_kept_and_recovered_by_Open()
    {
        string name = NewName("killedpersistent");
        string ready;
        using (TestChild creator = TestChild.Start("robust-create", name, "4", "persistent", "2", "1"))
        {
            _ = creator.Expect("creating");
            ready = creator.Expect("ready");
            creator.KillHard();
        }

        int[] held = ready.Split(' ')[0]["held=".Length..].Split(',').Select(int.Parse).ToArray();
        int forgotten = int.Parse(ready.Split("forgotten=")[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, capacity: 4));

        using (BufferPool pool = BufferPool.Open(name))
        {
            Assert.Equal(0, pool.ProcessEntryIndex); // the dead creator's entry, recovered
            Assert.All(held, i => Assert.Equal(0, pool.RefCount(i)));
            Assert.Equal(1, pool.RefCount(forgotten));
            Assert.Equal(0, pool.Release(forgotten));
        }

        PoolAudit audit = PoolAudit.Of(name);
        Assert.True(audit.Problems.Count == 0, string.Join("\n", audit.Problems));
        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    /// <summary>A creator killed at a random moment — before, inside or after Create (its header half-written, its
    /// pool left Initializing, or Ready with buffers) — never blocks the name: an Open either attaches or is refused
    /// with "not found" or "corrupt", and a Create of the same name then succeeds, leaving no object of the old
    /// instance.</summary>
    [Fact]
    public void A_creator_killed_at_random_moments_never_blocks_the_name()
    {
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        int rounds = 40, beforeCreate = 0, beforeReady = 0, opened = 0, refused = 0;
        for (int round = 0; round < rounds; round++)
        {
            string name = NewName("createkill");
            using (TestChild creator = TestChild.Start("robust-create", name, "8", "transient", "2", "1"))
            {
                _ = creator.Expect("creating");
                Thread.Sleep(rng.Next(0, 30));
                creator.KillHard();
            }

            bool present = BufferPool.Exists(name);
            long length = present ? new FileInfo(Shm.ControlPath(name)).Length : 0;
            if (!present)
            {
                beforeCreate++;
            }
            else if (length < LayoutConstants.HeaderSize || (uint)Shm.ReadControl(name, 12, 4) != LayoutConstants.PoolStateReady)
            {
                beforeReady++;
            }

            if (rng.Next(2) == 0)
            {
                try
                {
                    using BufferPool stale = BufferPool.Open(name);
                    opened++;
                }
                catch (Exception e) when (e is PoolNotFoundException or CorruptSegmentException)
                {
                    refused++;
                }
            }

            ulong old = BufferPool.Exists(name) && new FileInfo(Shm.ControlPath(name)).Length >= LayoutConstants.HeaderSize ? InstanceOf(name) : 0;
            using (BufferPool pool = BufferPool.Create(name, capacity: 4))
            {
                Assert.True(old == 0 || ObjectsOfInstance(name, old).Length == 0, $"round {round} (seed {seed}): objects of the old instance left: {string.Join(", ", ObjectsOfInstance(name, old))}");
                using BufferGuard g = pool.AcquireCpu(100);
                Assert.Equal(0, g.MetaIndex);
            }

            Assert.Empty(Shm.EntriesOf(name));
        }

        output.WriteLine(RobustnessFigures.Record("createkill", ("rounds", rounds), ("killed_before_create", beforeCreate), ("killed_inside_create", beforeReady), ("stale_opened", opened), ("stale_refused", refused), ("seed", seed)));
    }

    /// <summary>The last process of a non-persistent pool detaches — and so removes the pool — and is killed at a
    /// random moment of it (before, inside or after the removal). Whatever it left, an Open either attaches to a whole
    /// pool (the buffer left in flight is there, with its bytes) or is refused ("not found", "corrupt"): never a
    /// half-removed pool. A Create of the name then succeeds.</summary>
    [Fact]
    public void A_remover_killed_at_random_moments_leaves_a_whole_pool_or_none()
    {
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        int rounds = 100, gone = 0, leftReady = 0, leftRemoving = 0, opened = 0, refused = 0;
        var halfway = new List<string>();
        for (int round = 0; round < rounds; round++)
        {
            string name = NewName("removerkill");
            int index;
            using (TestChild last = TestChild.Start("robust-create", name, "4", "transient", "0", "1"))
            {
                _ = last.Expect("creating");
                index = int.Parse(last.Expect("ready").Split("forgotten=")[1], System.Globalization.CultureInfo.InvariantCulture);
                last.Send("exit");
                var spin = System.Diagnostics.Stopwatch.StartNew();
                double delayMs = rng.NextDouble() * 4;
                while (spin.Elapsed.TotalMilliseconds < delayMs)
                {
                    Thread.SpinWait(20);
                }

                last.KillHard();
            }

            if (!BufferPool.Exists(name))
            {
                gone++;
            }
            else
            {
                uint state = (uint)Shm.ReadControl(name, 12, 4);
                leftReady += state == LayoutConstants.PoolStateReady ? 1 : 0;
                leftRemoving += state == LayoutConstants.PoolStateRemoving ? 1 : 0;
                string left = string.Join(", ", Shm.EntriesOf(name));
                try
                {
                    using BufferPool pool = BufferPool.Open(name);
                    opened++;
                    try
                    {
                        using BufferGuard g = pool.Get(index);
                        Assert.Equal(-1, BytePattern.FirstMismatch(g.ReadOnlySpan, index));
                    }
                    catch (CorruptSegmentException e)
                    {
                        halfway.Add($"round {round}: the remover left state {state} and [{left}]; Open attached, then Get({index}) threw: {e.Message}");
                    }

                    pool.SetRefCount(index, 0);
                }
                catch (Exception e) when (e is PoolNotFoundException or CorruptSegmentException)
                {
                    refused++;
                }
            }

            using (BufferPool pool = BufferPool.Create(name, capacity: 4))
            {
                using BufferGuard g = pool.AcquireCpu(100);
            }

            Shm.ForceRemove(name);
        }

        output.WriteLine(RobustnessFigures.Record("removerkill", ("rounds", rounds), ("removed", gone), ("left_ready", leftReady), ("left_removing", leftRemoving),
            ("opened", opened), ("refused", refused), ("half_removed_pools_attached", halfway.Count), ("seed", seed)));
        Assert.True(halfway.Count == 0, $"Open attached to a pool its killed remover had half removed (seed {seed}):\n{string.Join("\n", halfway)}");
    }

    /// <summary>
    /// The deterministic form of the test above. A remover (the last detacher, `xmem gc`, or a Create of the same
    /// name) marks a stale pool Removing, finds no live process, unlinks every object of the instance — and is killed
    /// before it unlinks the control segment (docs/layout.md, "Removal": "unlinks every object of the instance, then
    /// the control segment"). The next opener finds Removing with no remover at work and the name still naming the
    /// instance, so it puts Ready back and attaches: to a pool whose live buffer's data segment is gone. The same
    /// section promises the opener "attaches (Ready came back) or fails cleanly with 'not found' — never half-way".
    /// </summary>
    [Fact]
    public void Open_after_a_remover_killed_between_unlinking_the_instance_and_the_control_segment_is_never_half_way()
    {
        string name = NewName("halfremoved");
        int index;
        using (TestChild creator = TestChild.Start("robust-create", name, "4", "transient", "0", "1"))
        {
            _ = creator.Expect("creating");
            index = int.Parse(creator.Expect("ready").Split("forgotten=")[1], System.Globalization.CultureInfo.InvariantCulture);
            creator.KillHard(); // a stale pool: no live process, one buffer in flight
        }

        // What the remover did before it was killed: no live process found, the commit point (State = Removed)
        // published, every object of the instance unlinked — all but the control segment (docs/layout.md, "Removal").
        ulong instance = InstanceOf(name);
        using (Microsoft.Win32.SafeHandles.SafeFileHandle h = File.OpenHandle(Shm.ControlPath(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            RandomAccess.Write(h, BitConverter.GetBytes(LayoutConstants.PoolStateRemoved), fileOffset: 12);
        }

        foreach (string f in ObjectsOfInstance(name, instance))
        {
            File.Delete(Path.Combine(Shm.Directory, f));
        }

        Assert.Equal([LayoutConstants.ObjectPrefix + name], Shm.EntriesOf(name));

        BufferPool pool;
        try
        {
            pool = BufferPool.Open(name);
        }
        catch (PoolNotFoundException)
        {
            return; // the removal was finished: clean
        }

        using (pool)
        {
            CorruptSegmentException? e = Record.Exception(() => pool.Get(index).Dispose()) as CorruptSegmentException;
            Assert.True(e is null, $"Open put Ready back and attached to a half-removed pool: slot {index} is live (count {pool.RefCount(index)}) but its memory was unlinked by the dead remover, so Get throws: {e?.Message}");
        }
    }
}
