namespace Xmem.Tests.Robustness;

/// <summary>
/// No stale pool outlives the next xmem process (docs/layout.md, "Removal"): the first Create or Open of any pool in
/// a process removes every pool that is not persistent and has no live process; persistent pools and pools in use stay.
/// The suite turns the sweep off for itself and its children (XmemTestFramework), since many tests look
/// at a stale pool before removing it; these tests turn it on again in the fresh process they start.
/// </summary>
public sealed class StalePoolSweepTests : PoolTest
{
    private static readonly Dictionary<string, string?> SweepOn = new() { ["XMEM_STALE_SWEEP"] = null };

    private static string[] KilledWithBuffers(string name, string persistence)
    {
        using (TestChild creator = TestChild.Start("robust-create", name, "4", persistence, "2", "1"))
        {
            _ = creator.Expect("creating");
            _ = creator.Expect("ready");
            creator.KillHard();
        }

        string[] left = Shm.EntriesOf(name);
        Assert.True(left.Length >= 4, $"expected the dead pool's control, holdings and data segments, found {string.Join(", ", left)}");
        return left;
    }

    [Fact]
    public void The_first_Create_of_another_pool_in_a_process_removes_a_pool_whose_processes_were_all_killed()
    {
        string dead = NewName("sweepdead");
        string keptPersistent = NewName("sweeppersistent");
        _ = KilledWithBuffers(dead, "transient");
        string[] persistentLeft = KilledWithBuffers(keptPersistent, "persistent");
        string other = NewName("sweepother");
        using BufferPool inUse = BufferPool.Create(NewName("sweepinuse"), capacity: 2);

        using (TestChild next = TestChild.Start("robust-create", [other, "4", "transient", "0", "0"], environment: SweepOn))
        {
            _ = next.Expect("creating");
            _ = next.Expect("ready");
            Assert.Empty(Shm.EntriesOf(dead));
            Assert.Equal(persistentLeft, Shm.EntriesOf(keptPersistent)); // persistent: kept, untouched
            Assert.True(BufferPool.Exists(inUse.Name)); // in use by this process
            next.Send("exit");
            Assert.Equal(0, next.WaitForExit());
        }

        Assert.True(BufferPool.Remove(keptPersistent));
    }

    [Fact]
    public void The_first_Open_of_another_pool_in_a_process_removes_a_pool_whose_processes_were_all_killed()
    {
        string dead = NewName("sweepdeadopen");
        _ = KilledWithBuffers(dead, "transient");
        using BufferPool target = BufferPool.Create(NewName("sweeptarget"), capacity: 2);
        using (TestChild next = TestChild.Start("open", [target.Name], environment: SweepOn))
        {
            Assert.Equal("opened 2", next.ReadLine());
            Assert.Equal(0, next.WaitForExit());
        }

        Assert.Empty(Shm.EntriesOf(dead));
    }
}
