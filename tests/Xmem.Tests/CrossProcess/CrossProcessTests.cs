using System.Globalization;
using Xmem.Layout;
using Xmem.Tests.Shared;

namespace Xmem.Tests.CrossProcess;

/// <summary>The pool shared by real processes (Xmem.TestChild): bytes, counts, futex wake-ups and crash recovery.</summary>
public sealed class CrossProcessTests : PoolTest
{
    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>"g3 5" → ("g3", 5).</summary>
    private static (string Guard, int Index) GuardAndIndex(string answer)
    {
        string[] w = answer.Split(' ');
        return (w[0], Int(w[1]));
    }

    [Fact]
    public void ChildWrites_ParentReadsTheSameBytes()
    {
        using BufferPool pool = NewPool(4);
        const int size = 3 * 4096 + 17;
        int index;
        using (TestChild child = TestChild.Start("session", pool.Name))
        {
            child.Expect("ready");
            (string g, index) = GuardAndIndex(child.AskOk($"acquire {size}"));
            child.AskOk($"fill {g} 11");
            child.AskOk($"forget {g}");  // the reference outlives the child, in flight
            child.AskOk("exit");
            Assert.Equal(0, child.WaitForExit());
        }

        Assert.Equal(1, pool.RefCount(index));
        using (BufferGuard r = pool.Get(index))
        {
            Assert.Equal(size, r.Size);
            Assert.Equal(-1, BytePattern.FirstMismatch(r.ReadOnlySpan, 11));
        }

        Assert.Equal(0, pool.Release(index));
    }

    [Fact]
    public void ParentWrites_ChildReadsTheSameBytes_AndWritesBack()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard g = pool.AcquireCpu(10_000);
        BytePattern.Fill(g.Span, 3);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        string r = child.AskOk($"get {g.MetaIndex}");
        Assert.Equal("ok", child.Ask($"verify {r} 3"));
        Assert.StartsWith("mismatch", child.Ask($"verify {r} 4"));
        Assert.StartsWith($"error {typeof(BufferReadOnlyException).FullName}", child.Ask($"fill {r} 5"));
        string w = child.AskOk($"getmut {g.MetaIndex}");
        child.AskOk($"fill {w} 5");
        Assert.Equal(-1, BytePattern.FirstMismatch(g.ReadOnlySpan, 5));
        Assert.Equal(3, pool.RefCount(g.MetaIndex));
        child.AskOk($"dispose {r}");
        child.AskOk($"dispose {w}");
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public void CountsChangedInOneProcess_AreSeenInTheOther()
    {
        using BufferPool pool = NewPool(4);
        int i = pool.PreallocateCpu(64, 1)[0];
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        Assert.Equal("2", child.AskOk($"addref {i}"));
        Assert.Equal(2, pool.RefCount(i));
        Assert.Equal(3, pool.AddRef(i));
        Assert.Equal("3", child.AskOk($"refcount {i}"));
        child.AskOk($"set {i} 7");
        Assert.Equal(7, pool.RefCount(i));
        string g = child.AskOk($"get {i}");
        Assert.Equal(8, pool.RefCount(i));
        Assert.Equal(7, pool.Release(i));
        Assert.Equal("6", child.AskOk($"release {i}"));
        child.AskOk($"dispose {g}");
        Assert.Equal(5, pool.RefCount(i));
        pool.SetRefCount(i, 0);
        Assert.Equal("0", child.AskOk($"refcount {i}"));
        Assert.StartsWith($"error {typeof(SlotNotLiveException).FullName}", child.Ask($"get {i}"));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public void ChildDetaching_ReleasesItsGuards_NotItsInFlightReferences()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard mine = pool.AcquireCpu(8);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        child.AskOk($"get {mine.MetaIndex}");
        child.AskOk($"get {mine.MetaIndex}");
        child.AskOk($"addref {mine.MetaIndex}");
        Assert.Equal(4, pool.RefCount(mine.MetaIndex));
        child.AskOk("exit");                      // Dispose without disposing the guards
        Assert.Equal(0, child.WaitForExit());
        Assert.Equal(2, pool.RefCount(mine.MetaIndex));
        Assert.Equal(1, pool.Release(mine.MetaIndex));
    }

    [Fact]
    public void BlockedTryAcquireInAChild_WakesWhenTheParentReleases()
    {
        using BufferPool pool = NewPool(1);
        BufferGuard held = pool.AcquireCpu(8);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        child.Send($"tryacquire 8 {(int)TestChild.Watchdog.TotalMilliseconds}");
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the child to wait for a slot");
        held.Dispose();
        (string g, int index) = GuardAndIndex(child.Expect("ok"));
        Assert.Equal(0, index);
        Assert.Equal(1, pool.RefCount(0));
        child.AskOk($"dispose {g}");
        Assert.Equal(0, pool.RefCount(0));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public unsafe void A_release_moves_the_free_epoch_only_while_a_process_waits_for_a_slot()
    {
        using BufferPool pool = NewPool(1);
        uint* epoch = &pool.Core.Control.Header->FreeEpoch;
        uint before = Volatile.Read(ref *epoch);
        for (int i = 0; i < 100; i++)
        {
            pool.AcquireCpu(8).Dispose();
        }

        Assert.Equal(before, Volatile.Read(ref *epoch)); // nobody waits: a release writes nothing to the header

        BufferGuard held = pool.AcquireCpu(8);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        child.Send($"tryacquire 8 {(int)TestChild.Watchdog.TotalMilliseconds}");
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the child to wait for a slot");
        held.Dispose(); // the child sleeps on the epoch: this release must move it and wake the child
        (string g, int index) = GuardAndIndex(child.Expect("ok"));
        Assert.Equal(0, index);
        Assert.NotEqual(before, Volatile.Read(ref *epoch));
        child.AskOk($"dispose {g}");
        Assert.Equal(0, pool.RefCount(0));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public void BlockedTryAcquireInTheParent_WakesWhenAChildReleases()
    {
        using BufferPool pool = NewPool(1);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        (string g, _) = GuardAndIndex(child.AskOk("acquire 8"));
        BufferGuard? got = null;
        var waiter = new BackgroundCall<bool>(() => pool.TryAcquireCpu(8, TestChild.Watchdog, out got));
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the parent's waiter to wait for a slot");
        child.AskOk($"dispose {g}");
        Assert.True(waiter.Join());
        using (got)
        {
            Assert.Equal(0, got!.MetaIndex);
        }

        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [Fact]
    public void TryAcquireInAChild_TimesOut_WhenNobodyReleases()
    {
        using BufferPool pool = NewPool(1);
        using BufferGuard held = pool.AcquireCpu(8);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        Assert.Equal("timeout", child.Ask("tryacquire 8 100"));
        Assert.StartsWith($"error {typeof(PoolFullException).FullName}", child.Ask("acquire 8"));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
        Assert.Equal(1, pool.RefCount(0));
    }

    [Fact]
    public void ChildKilledHoldingGuards_GivesTheSlotsBack_ToTheNextProcessThatAttaches()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard mine = pool.AcquireCpu(8);
        int inFlight = pool.PreallocateCpu(8, 1)[0];
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        (_, int a) = GuardAndIndex(child.AskOk("acquire 100"));
        (_, int b) = GuardAndIndex(child.AskOk("acquire 100"));
        child.AskOk($"get {mine.MetaIndex}");
        child.AskOk($"get {inFlight}");
        child.AskOk($"addref {inFlight}");  // in flight: survives the child
        Assert.Equal(2, pool.RefCount(mine.MetaIndex));
        Assert.Equal(3, pool.RefCount(inFlight));
        child.KillHard();

        // Nothing reclaims until a process attaches (or finds the pool full).
        using (BufferPool attacher = BufferPool.Open(pool.Name))
        {
            Assert.Equal(0, pool.RefCount(a));
            Assert.Equal(0, pool.RefCount(b));
            Assert.Equal(1, pool.RefCount(mine.MetaIndex));
            Assert.Equal(2, pool.RefCount(inFlight));
        }

        pool.SetRefCount(inFlight, 0);
        using BufferGuard x = pool.AcquireCpu(8);
        using BufferGuard y = pool.AcquireCpu(8);
        using BufferGuard z = pool.AcquireCpu(8);
        Assert.Equal(4, new[] { mine.MetaIndex, x.MetaIndex, y.MetaIndex, z.MetaIndex }.Distinct().Count());
    }

    [Fact]
    public void HoldingsSegment_IsMadeAtTheFirstReference_AndAProcessKilledBeforeItIsRecoveredAsHoldingNothing()
    {
        using BufferPool pool = NewPool(2);
        string holdings(int entry) => SegmentNamesOf(pool.Name, entry);

        // A process that only attaches makes no holdings segment; its first reference makes it.
        using (TestChild looker = TestChild.Start("session", pool.Name))
        {
            looker.Expect("ready");
            Assert.DoesNotContain(holdings(1), Shm.EntriesOf(pool.Name));
            looker.AskOk("acquire 64");
            Assert.Contains(holdings(1), Shm.EntriesOf(pool.Name));
            looker.AskOk("exit");
            Assert.Equal(0, looker.WaitForExit());
        }

        Assert.DoesNotContain(holdings(1), Shm.EntriesOf(pool.Name)); // its detach unlinked it

        // Killed after attaching and before holding anything: its entry is recovered, nothing is released, and every
        // slot is still free for the others.
        using (TestChild idle = TestChild.Start("session", pool.Name))
        {
            idle.Expect("ready");
            idle.KillHard();
        }

        Assert.Equal(1, pool.RecoverDeadProcesses());
        Assert.DoesNotContain(holdings(1), Shm.EntriesOf(pool.Name));
        using BufferGuard a = pool.AcquireCpu(8);
        using BufferGuard b = pool.AcquireCpu(8);
        Assert.NotEqual(a.MetaIndex, b.MetaIndex);
    }

    /// <summary>The holdings segment name of process entry <paramref name="entry"/> of the pool named
    /// <paramref name="bare"/>.</summary>
    private static string SegmentNamesOf(string bare, int entry) =>
        Xmem.SharedMemory.SegmentNames.Holdings(bare, Shm.ReadControl(bare, 32, 8), entry); // PoolHeader.InstanceId

    [Fact]
    public void ChildKilledHoldingEverySlot_AFullPoolReclaimsThem()
    {
        using BufferPool pool = NewPool(3);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        for (int k = 0; k < 3; k++)
        {
            child.AskOk("acquire 64");
        }

        Assert.Throws<PoolFullException>(() => pool.AcquireCpu(8)); // the holder is alive: really full
        child.KillHard();
        var guards = new List<BufferGuard>();
        for (int k = 0; k < 3; k++)
        {
            guards.Add(pool.AcquireCpu(8)); // a full pool looks for dead holders
        }

        Assert.Equal([0, 1, 2], guards.Select(g => g.MetaIndex).Order());
        guards.ForEach(g => g.Dispose());
    }

    [Fact]
    public void ChildKilled_WhileTheParentWaits_TheWaiterGetsTheSlot()
    {
        using BufferPool pool = NewPool(1);
        using TestChild child = TestChild.Start("session", pool.Name);
        child.Expect("ready");
        child.AskOk("acquire 64");
        BufferGuard? got = null;
        var waiter = new BackgroundCall<bool>(() => pool.TryAcquireCpu(8, TestChild.Watchdog, out got));
        Shm.WaitUntil(() => Shm.Waiters(pool.Name) > 0, "the waiter to wait");
        child.KillHard();
        Assert.True(waiter.Join(), "the waiter never got the dead child's slot");
        got!.Dispose();
    }

    [Fact]
    public void CreatorKilled_PoolIsStale_CreateTakesTheNameOver()
    {
        string name = NewName();
        using (TestChild creator = TestChild.Start("session", "--create", name, "4"))
        {
            creator.Expect("ready");
            creator.AskOk("acquire 5000");
            creator.KillHard();
        }

        Assert.True(BufferPool.Exists(name));
        using BufferPool pool = BufferPool.Create(name, 2);
        Assert.Equal(2, pool.Capacity);
        // The dead instance's segments went with it: only this pool's control segment remains (its holdings segment
        // is made before the first reference it holds).
        Assert.Empty(Shm.DataSegmentsOf(name));
        Assert.Equal([LayoutConstants.ObjectPrefix + name], Shm.EntriesOf(name));
        using (pool.AcquireCpu(16))
        {
            Assert.Equal(2, Shm.EntriesOf(name).Length - Shm.DataSegmentsOf(name).Length); // control and holdings
        }
    }

    [Fact]
    public void CreatorKilled_AnotherProcessStillAttached_KeepsThePoolAlive()
    {
        string name = NewName();
        using TestChild creator = TestChild.Start("session", "--create", name, "4");
        creator.Expect("ready");
        using BufferPool pool = BufferPool.Open(name);
        (string _, int i) = GuardAndIndex(creator.AskOk("acquire 64"));
        creator.KillHard();
        Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, 4));
        using BufferPool other = BufferPool.Open(name); // recovers the creator's entry
        Assert.Equal(0, pool.RefCount(i));
    }

    [RootFact]
    public void Mode0600_PoolOfAnotherUser_IsRefusedWithPoolPermission()
    {
        Users.EnsureOtherUser();
        using BufferPool pool = NewPool(2);
        using TestChild child = TestChild.Start("open", [pool.Name], runAsUser: Users.OtherUser);
        string line = child.ReadLine();
        Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", line);
        Assert.NotEqual(0, child.WaitForExit());
    }

    [RootFact]
    public void Mode0660_PoolIsUsableByTheGroup()
    {
        Users.EnsureOtherUser();
        using BufferPool pool = NewPool(2, mode: 0x1B0);
        using BufferGuard g = pool.AcquireCpu(4096);
        BytePattern.Fill(g.Span, 21);
        using TestChild child = TestChild.Start("session", [pool.Name], runAsUser: Users.OtherUser, runAsGroup: "root");
        child.Expect("ready");
        string r = child.AskOk($"get {g.MetaIndex}");
        Assert.Equal("ok", child.Ask($"verify {r} 21"));
        (string w, int j) = GuardAndIndex(child.AskOk("acquire 100"));
        child.AskOk($"fill {w} 22");
        using (BufferGuard mine = pool.Get(j))
        {
            Assert.Equal(-1, BytePattern.FirstMismatch(mine.ReadOnlySpan, 22));
        }

        child.AskOk($"dispose {w}");
        child.AskOk($"dispose {r}");
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
        child.AskOk("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    [RootFact]
    public void Mode0660_PoolIsRefusedToOtherUsersOutsideTheGroup()
    {
        Users.EnsureOtherUser();
        using BufferPool pool = NewPool(2, mode: 0x1B0);
        using TestChild child = TestChild.Start("open", [pool.Name], runAsUser: Users.OtherUser);
        Assert.StartsWith($"error {typeof(PoolPermissionException).FullName}", child.ReadLine());
        Assert.NotEqual(0, child.WaitForExit());
    }
}
