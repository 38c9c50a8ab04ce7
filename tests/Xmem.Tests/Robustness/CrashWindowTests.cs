using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>
/// A process that dies inside an attributed change (docs/layout.md, "Slot protocol": lock, journal, holding, publish
/// while locked, clear the journal, unlock) leaves one of four states on the slot. Each test forges exactly one of
/// them for a dead process-table entry (Active, holdings segment present, liveness lock not held: dead) and lets
/// recovery run; afterwards the count must equal the references that live processes really hold.
/// <list type="bullet">
/// <item>journal, word == JournalWord: died before publishing; the holding may be new, JournalHoldings is the truth.</item>
/// <item>journal, word != JournalWord: died after publishing while still locked; word and holding are both new.</item>
/// <item>no journal, word is the old word locked: died right after the lock; nothing was done.</item>
/// <item>no journal, word is the new word locked: died right before the unlock; everything was done.</item>
/// </list>
/// </summary>
public sealed unsafe class CrashWindowTests : PoolTest
{
    private const int DeadEntry = 1;
    private const int DeadTag = DeadEntry + 1;

    /// <summary>What the dead process left on slot 0 and in its holdings segment.</summary>
    private readonly record struct DeadState(ulong Word, ulong Holding, uint JournalOwner, ulong JournalWord, ulong JournalHoldings);

    /// <summary>Makes entry <see cref="DeadEntry"/> look like a process that attached and died (Active, holdings
    /// segment present, liveness lock not held) and leaves slot 0 as <paramref name="state"/> says.</summary>
    private static void ForgeDead(string name, DeadState state)
    {
        using var seg = RawSegment.Open(Shm.ControlPath(name));
        var h = (PoolHeader*)seg.Base;
        int cap = h->Capacity;
        var e = (ProcessEntry*)(seg.Base + LayoutConstants.ProcessTableOffset + (DeadEntry * LayoutConstants.ProcessEntrySize));
        var slot = (SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(cap));

        using (var fs = new FileStream(HoldingsPath(name, h->InstanceId), FileMode.CreateNew, FileAccess.ReadWrite))
        {
            fs.SetLength(Math.Max(8L * cap, 4096));
            fs.Write(BitConverter.GetBytes(state.Holding));
        }

        // The pool's mode (0600), as the dead member's own segment would have: recovery reads only the pool's files.
        File.SetUnixFileMode(HoldingsPath(name, h->InstanceId), UnixFileMode.UserRead | UnixFileMode.UserWrite);

        e->Pid = 999_999;
        e->Incarnation = 1;
        slot->JournalHoldings = state.JournalHoldings;
        slot->JournalWord = state.JournalWord;
        slot->JournalOwner = state.JournalOwner;
        Volatile.Write(ref slot->Word, state.Word);
        Volatile.Write(ref e->State, LayoutConstants.ProcessActive);
    }

    private static string HoldingsPath(string name, ulong instance) =>
        Path.Combine(Shm.Directory, $"{LayoutConstants.ObjectPrefix}{name}.{instance:x16}.p{DeadEntry}");

    private static ulong Locked(ulong w) => SlotWord.WithOwner(w, DeadTag);

    /// <summary>The dead process held the only reference (count 1, held by nobody else) and was disposing its guard.
    /// Returns the pool (count 1 on slot 0, no holding of its own), the slot's unlocked word and generation.</summary>
    private (BufferPool Pool, ulong Word, uint Gen) PoolWithOneReferenceHeldByNobody(string name)
    {
        BufferPool pool = BufferPool.Create(name, capacity: 4);
        using (BufferGuard g = pool.AcquireCpu(64))
        {
            Assert.Equal(0, g.MetaIndex);
            g.Forget(); // count 1, held by nobody: becomes the dead process's reference below
        }

        ulong w = Shm.SlotWordOf(name, 4, 0);
        return (pool, w, SlotWord.Gen(w));
    }

    private static void AssertRecovered(BufferPool pool, string name, int expectedCount)
    {
        Assert.Equal(1, pool.ReclaimDeadProcesses());
        ulong w = Shm.SlotWordOf(name, 4, 0);
        Assert.Equal(0, SlotWord.Owner(w));
        Assert.Equal(expectedCount, pool.RefCount(0));
        Assert.Equal(expectedCount == 0 ? SlotWord.Free : SlotWord.Live, SlotWord.State(w));
        Assert.Equal(0u, (uint)Shm.ReadControl(name, LayoutConstants.SlotTableOffset(4) + 40, 4)); // JournalOwner
        Assert.Equal(LayoutConstants.ProcessFree, (uint)Shm.ReadControl(name, LayoutConstants.ProcessTableOffset + (DeadEntry * LayoutConstants.ProcessEntrySize), 4));
        Assert.DoesNotContain(Shm.EntriesOf(name), f => f.EndsWith($".p{DeadEntry}", StringComparison.Ordinal));
        Assert.Equal(0, pool.ReclaimDeadProcesses()); // nothing left to do: recovery is not repeated
    }

    // ------------------------------------------------------------------ release of the last reference (1 → Free)

    /// <summary>Died after publishing Free while still locked: the release happened; the slot must be Free.</summary>
    [Fact]
    public void Release_death_after_publish_while_locked_frees_the_slot()
    {
        string name = NewName("relpub");
        (BufferPool pool, ulong w, uint gen) = PoolWithOneReferenceHeldByNobody(name);
        using (pool)
        {
            ForgeDead(name, new DeadState(
                Word: Locked(SlotWord.Make(0, SlotWord.Free, 0, gen)),
                Holding: Holding.Make(gen, 0),
                JournalOwner: DeadTag,
                JournalWord: Locked(w),
                JournalHoldings: Holding.Make(gen, 1)));
            AssertRecovered(pool, name, expectedCount: 0);
        }
    }

    /// <summary>Died before publishing, the holding already 0: the journal puts the holding back, and recovery then
    /// releases it — the slot must be Free (before the fix it stayed Live with count 1, held by nobody).</summary>
    [Fact]
    public void Release_death_before_publish_frees_the_slot()
    {
        string name = NewName("relnopub");
        (BufferPool pool, ulong w, uint gen) = PoolWithOneReferenceHeldByNobody(name);
        using (pool)
        {
            ForgeDead(name, new DeadState(
                Word: Locked(w),
                Holding: Holding.Make(gen, 0),
                JournalOwner: DeadTag,
                JournalWord: Locked(w),
                JournalHoldings: Holding.Make(gen, 1)));
            AssertRecovered(pool, name, expectedCount: 0);
        }
    }

    /// <summary>Died right after locking (no journal, nothing written): recovery releases the holding.</summary>
    [Fact]
    public void Release_death_right_after_lock_without_journal_frees_the_slot()
    {
        string name = NewName("relnojournal0");
        (BufferPool pool, ulong w, uint gen) = PoolWithOneReferenceHeldByNobody(name);
        using (pool)
        {
            ForgeDead(name, new DeadState(Locked(w), Holding.Make(gen, 1), JournalOwner: 0, JournalWord: 0, JournalHoldings: 0));
            AssertRecovered(pool, name, expectedCount: 0);
        }
    }

    /// <summary>Died right before the unlock (journal cleared, Free published): the slot must be Free.</summary>
    [Fact]
    public void Release_death_right_before_unlock_without_journal_frees_the_slot()
    {
        string name = NewName("relnojournal1");
        (BufferPool pool, _, uint gen) = PoolWithOneReferenceHeldByNobody(name);
        using (pool)
        {
            ForgeDead(name, new DeadState(Locked(SlotWord.Make(0, SlotWord.Free, 0, gen)), Holding.Make(gen, 0), JournalOwner: 0, JournalWord: 0, JournalHoldings: 0));
            AssertRecovered(pool, name, expectedCount: 0);
        }
    }

    // ------------------------------------------------------------------ get of a second reference (1 → 2)

    /// <summary>The dead process was taking a second reference (Get) to slot 0, which this live process holds.</summary>
    private void GetVariant(string tag, Func<ulong, uint, DeadState> state)
    {
        string name = NewName(tag);
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        BufferGuard mine = pool.AcquireCpu(64); // count 1, held by this (live) process
        ulong w = Shm.SlotWordOf(name, 4, 0);
        ForgeDead(name, state(w, SlotWord.Gen(w)));
        AssertRecovered(pool, name, expectedCount: 1);
        Assert.True(mine.IsValid);
        mine.Dispose();
        Assert.Equal(0, pool.RefCount(0));
    }

    /// <summary>Died after publishing count 2 while locked: its holding of 1 is kept, then released → 1.</summary>
    [Fact]
    public void Get_death_after_publish_while_locked_leaves_the_live_reference() =>
        GetVariant("getpub", (w, gen) => new DeadState(
            Word: Locked(SlotWord.Make(2, SlotWord.Live, 0, gen)),
            Holding: Holding.Make(gen, 1),
            JournalOwner: DeadTag,
            JournalWord: Locked(w),
            JournalHoldings: Holding.Make(gen, 0)));

    /// <summary>Died before publishing, holding already 1: the journal puts 0 back, the count stays 1 (before the fix
    /// recovery released the unpublished reference and freed a slot a live process held).</summary>
    [Fact]
    public void Get_death_before_publish_does_not_steal_the_live_reference() =>
        GetVariant("getnopub", (w, gen) => new DeadState(
            Word: Locked(w),
            Holding: Holding.Make(gen, 1),
            JournalOwner: DeadTag,
            JournalWord: Locked(w),
            JournalHoldings: Holding.Make(gen, 0)));

    /// <summary>Died right after locking (no journal): nothing happened.</summary>
    [Fact]
    public void Get_death_right_after_lock_without_journal_leaves_the_live_reference() =>
        GetVariant("getnojournal0", (w, gen) => new DeadState(Locked(w), Holding.Make(gen, 0), JournalOwner: 0, JournalWord: 0, JournalHoldings: 0));

    /// <summary>Died right before the unlock (everything done): its reference is released → 1.</summary>
    [Fact]
    public void Get_death_right_before_unlock_without_journal_leaves_the_live_reference() =>
        GetVariant("getnojournal1", (_, gen) => new DeadState(Locked(SlotWord.Make(2, SlotWord.Live, 0, gen)), Holding.Make(gen, 1), JournalOwner: 0, JournalWord: 0, JournalHoldings: 0));
}
