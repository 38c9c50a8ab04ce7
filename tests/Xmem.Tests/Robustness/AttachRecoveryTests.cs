using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>
/// Recovery done by an attaching process (docs/layout.md, "Attach": a process that lands on a dead entry recovers it
/// first) must follow the same rules as any other recoverer — in particular "Waiting on a lock": a slot locked by a
/// dead process is repaired by the waiter, never waited on until the 5 s timeout.
/// </summary>
public sealed unsafe class AttachRecoveryTests : PoolTest
{
    /// <summary>
    /// Two processes die: A (entry 1) holding a reference to slot 0, and B (entry 2) holding one too, killed right
    /// after it locked slot 0 for its next change (no journal yet: nothing was done). A new process opens the pool: it
    /// lands on A's entry (the lowest free liveness lock), and recovering A means releasing A's reference to slot 0,
    /// which is locked by dead B. It must recover B as well and open the pool.
    /// </summary>
    [Fact]
    public void Open_recovering_a_dead_entry_repairs_a_slot_locked_by_another_dead_entry()
    {
        string name = NewName("attachrecover");
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        using BufferGuard mine = pool.AcquireCpu(64); // slot 0, count 1, held by this live process (entry 0)
        Assert.Equal(0, mine.MetaIndex);

        using (TestChild a = TestChild.Start("session", name))
        using (TestChild b = TestChild.Start("session", name))
        {
            _ = a.Expect("ready");
            _ = a.AskOk("get 0"); // entry 1 holds one reference
            _ = b.Expect("ready");
            _ = b.AskOk("get 0"); // entry 2 holds one reference
            a.KillHard();
            b.KillHard();
        }

        Assert.Equal(3, pool.RefCount(0));

        // B died right after the CAS that locked slot 0 for its next change (docs/layout.md: "locked with no journal:
        // nothing was done"). Only the lock owner field differs from the real state.
        using (var seg = RawSegment.Open(Shm.ControlPath(name)))
        {
            var slot = (SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(4));
            Assert.Equal(0u, slot->JournalOwner);
            Volatile.Write(ref slot->Word, SlotWord.WithOwner(Volatile.Read(ref slot->Word), 3));
        }

        using (TestChild c = TestChild.Start("open", name))
        {
            string answer = c.ReadLine();
            int exit = c.WaitForExit();
            Assert.True(answer == "opened 4" && exit == 0, $"a process opening the pool must recover both dead entries; it answered '{answer}' (exit {exit}). stderr:\n{c.StandardError}");
        }

        Assert.Equal(1, pool.RefCount(0)); // only this process's reference is left
    }

    /// <summary>
    /// An Open that fails while attaching (here: no entry can be taken, because directories squat the holdings
    /// names of every free entry; a single squatted name is skipped) must report the error and leave a process that
    /// exits normally: the half-built pool must not be detached again at process exit through its unmapped control
    /// segment (that crashed the process, exit 134).
    /// </summary>
    [Fact]
    public void Open_that_fails_while_attaching_does_not_crash_the_process_at_exit()
    {
        string name = NewName("attachfail");
        using BufferPool pool = BufferPool.Create(name, capacity: 4); // entry 0: the child lands on entry 1
        ulong instance = Shm.ReadControl(name, 32, 8);
        string[] squats = [.. Enumerable.Range(1, LayoutConstants.MaxProcesses - 1)
            .Select(i => Path.Combine(Shm.Directory, $"{LayoutConstants.ObjectPrefix}{name}.{instance:x16}.p{i}"))];
        foreach (string squat in squats)
        {
            Directory.CreateDirectory(squat);
        }

        try
        {
            using TestChild c = TestChild.Start("open", name);
            string answer = c.ReadLine();
            int exit = c.WaitForExit();
            Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", answer, StringComparison.Ordinal);
            Assert.Contains("held by files this pool did not make", answer);
            Assert.True(exit == 70, $"the child must exit with 70 (error reported); it exited {exit}. stderr:\n{c.StandardError}");
        }
        finally
        {
            foreach (string squat in squats)
            {
                Directory.Delete(squat);
            }
        }
    }
}
