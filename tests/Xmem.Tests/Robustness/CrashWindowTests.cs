using System.IO.MemoryMappedFiles;
using Xmem.Layout;
using Xunit;

namespace Xmem.Tests.Robustness;

/// <summary>
/// A process killed between step 4 (JournalOwner = 0) and step 5 (publish the word) of an attributed change
/// (docs/layout.md, "Slot protocol") leaves: the slot word locked by its tag with the OLD count, the journal clear,
/// and its holding already at the NEW value. These tests forge exactly that state for a dead process-table entry
/// (no process holds its liveness lock, so it is dead) and let recovery run.
/// </summary>
public sealed unsafe class CrashWindowTests
{
    private static string UniqueName(string what) => $"robust-{what}-{Environment.ProcessId}-{Guid.NewGuid():N}";

    /// <summary>Maps a whole segment file read-write (the test's own view, as a hostile or dead process sees it).</summary>
    private sealed class RawSegment : IDisposable
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        internal readonly byte* Base;

        internal RawSegment(string path)
        {
            var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            _file = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            Base = p + _view.PointerOffset;
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }

    /// <summary>Makes entry <paramref name="entry"/> look like a process that attached and died (Active, holdings
    /// segment present, liveness lock not held) holding <paramref name="holding"/> of slot 0, and leaves slot 0 locked
    /// by its tag with the journal clear.</summary>
    private static void ForgeDeadBetweenStep4And5(string name, int entry, ulong holding)
    {
        string control = Path.Combine("/dev/shm", "xmem.v1." + name);
        using var seg = new RawSegment(control);
        var h = (PoolHeader*)seg.Base;
        int cap = h->Capacity;
        var e = (ProcessEntry*)(seg.Base + LayoutConstants.ProcessTableOffset + (entry * LayoutConstants.ProcessEntrySize));
        var slot = (SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(cap));

        string holdings = Path.Combine("/dev/shm", $"xmem.v1.{name}.{h->InstanceId:x16}.p{entry}");
        using (var fs = new FileStream(holdings, FileMode.CreateNew, FileAccess.ReadWrite))
        {
            fs.SetLength(Math.Max(8L * cap, 4096));
            fs.Write(BitConverter.GetBytes(holding));
        }

        e->Pid = 999_999;
        e->Incarnation = 1;
        e->State = LayoutConstants.ProcessActive;
        slot->JournalOwner = 0;
        slot->Word = SlotWord.WithOwner(slot->Word, entry + 1);
    }

    /// <summary>The dead process held the only reference and was disposing its guard: its holding is already 0 but
    /// the count 1 → Free was never published. After recovery nobody holds the buffer, so it must be Free.</summary>
    [Fact]
    public void Death_between_holding_write_and_publish_of_a_release_loses_no_buffer()
    {
        string name = UniqueName("w45rel");
        try
        {
            using var pool = BufferPool.Create(name, capacity: 4);
            using (var g = pool.AcquireCpu(64))
            {
                Assert.Equal(0, g.MetaIndex);
                g.Forget(); // count 1, held by nobody: becomes the dead process's reference below
            }

            uint gen = SlotWord.Gen(ReadWord(name));
            // Dead entry 1 held 1 reference (gen), its Dispose wrote holding 0, journal cleared, died before step 5.
            ForgeDeadBetweenStep4And5(name, entry: 1, holding: Holding.Make(gen, 0));

            Assert.Equal(1, pool.ReclaimDeadProcesses());
            Assert.Equal(0, SlotWord.Owner(ReadWord(name)));
            Assert.Equal(0, pool.RefCount(0)); // actual: 1, and no process holds it → leaked for ever
        }
        finally
        {
            _ = BufferPool.Remove(name);
        }
    }

    /// <summary>The dead process was taking a second reference (Get) to a slot the live process holds: its holding
    /// is already 1 but the count 1 → 2 was never published. Recovery must leave the live holder's reference.</summary>
    [Fact]
    public void Death_between_holding_write_and_publish_of_a_get_does_not_steal_a_live_reference()
    {
        string name = UniqueName("w45get");
        try
        {
            using var pool = BufferPool.Create(name, capacity: 4);
            using var mine = pool.AcquireCpu(64); // count 1, held by this (live) process
            uint gen = SlotWord.Gen(ReadWord(name));
            ForgeDeadBetweenStep4And5(name, entry: 1, holding: Holding.Make(gen, 1));

            Assert.Equal(1, pool.ReclaimDeadProcesses());
            Assert.Equal(1, pool.RefCount(0)); // actual: 0 — the slot is Free while this process still has a guard on it
            Assert.True(mine.IsValid);
        }
        finally
        {
            _ = BufferPool.Remove(name);
        }
    }

    private static ulong ReadWord(string name)
    {
        using var seg = new RawSegment(Path.Combine("/dev/shm", "xmem.v1." + name));
        int cap = ((PoolHeader*)seg.Base)->Capacity;
        return Volatile.Read(ref ((SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(cap)))->Word);
    }
}
