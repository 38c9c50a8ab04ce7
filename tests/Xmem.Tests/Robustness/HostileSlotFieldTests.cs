using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>
/// A peer with write access damages the Size field of a live slot that this process has already mapped (so Get and
/// Receive take the fast path, with the mapping cached): every path must refuse the value as a corrupt segment, change
/// no count and keep no holding, never hand out a guard with a size outside 1..DataCapacity.
/// </summary>
public sealed unsafe class HostileSlotFieldTests : PoolTest
{
    private static void WriteSize(string name, int capacity, int slot, long size)
    {
        using var seg = RawSegment.Open(Shm.ControlPath(name));
        var r = (SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(capacity) + ((long)slot * LayoutConstants.SlotSize));
        Volatile.Write(ref r->Size, size);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    [InlineData(4097L)] // past the slot's DataCapacity (one page) and its mapping
    [InlineData(long.MaxValue)]
    public void Get_OfAMappedSlotWithAForgedSize_IsACorruptSegmentAndChangesNothing(long forged)
    {
        using BufferPool pool = NewPool(capacity: 4);
        using BufferGuard first = pool.AcquireCpu(100); // maps the slot in this process: later Gets hit the cache
        int s = first.MetaIndex;
        WriteSize(pool.Name, 4, s, forged);

        var e = Assert.Throws<CorruptSegmentException>(() => pool.Get(s));
        Assert.Contains($"slot {s}", e.Message, StringComparison.Ordinal);
        Assert.Throws<CorruptSegmentException>(() => pool.GetMut(s));
        Assert.Equal(1, pool.RefCount(s)); // only the acquirer's reference: the refused Gets changed no count

        WriteSize(pool.Name, 4, s, 100); // repaired: the slot is usable again
        using BufferGuard again = pool.Get(s);
        Assert.Equal(100, again.Size);
        Assert.Equal(2, pool.RefCount(s));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-7L)]
    [InlineData(8193L)]
    public void Receive_OfAMappedSlotWithAForgedSize_IsACorruptSegmentAndDropsTheReference(long forged)
    {
        using BufferPool pool = NewPool(capacity: 4);
        using BufferChannel ch = pool.Channel("frames", depth: 4);
        BufferGuard g = pool.AcquireCpu(5000);
        int s = g.MetaIndex;
        ch.Send(g);
        WriteSize(pool.Name, 4, s, forged);

        Assert.Throws<CorruptSegmentException>(() => ch.TryReceive(TimeSpan.FromSeconds(5), out _));
        Assert.Equal(0, pool.RefCount(s)); // the message's reference was taken over and released, not leaked
        Assert.Equal(0, ch.Count);
    }
}
