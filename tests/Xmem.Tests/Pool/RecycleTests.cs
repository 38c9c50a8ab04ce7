using System.Runtime.CompilerServices;

namespace Xmem.Tests.Pool;

/// <summary>A slot whose count reaches 0 is recycled, keeping its memory for the next acquire that fits; Trim gives
/// that memory back.</summary>
public sealed class RecycleTests : PoolTest
{
    [Fact]
    public void ReleasedSlot_IsReused_WithItsMemory_AndNoNewSegment()
    {
        using BufferPool pool = NewPool(4);
        int index;
        using (BufferGuard g = pool.AcquireCpu(1000))
        {
            index = g.MetaIndex;
            g.Span.Fill(0x5A);
        }

        Assert.Equal(0, pool.RefCount(index));
        string[] before = Shm.DataSegmentsOf(pool.Name);
        Assert.Single(before);

        using BufferGuard again = pool.AcquireCpu(500); // fits the kept memory
        Assert.Equal(index, again.MetaIndex);
        Assert.Equal(500, again.Size);
        Assert.True(again.ReadOnlySpan.IndexOfAnyExcept((byte)0x5A) < 0, "the kept memory's bytes are visible again");
        Assert.Equal(before, Shm.DataSegmentsOf(pool.Name));
    }

    [Fact]
    public void RecycledByAnotherInstance_SameBytesVisibleThroughCpuPointer()
    {
        using BufferPool a = NewPool(2);
        using BufferPool b = BufferPool.Open(a.Name);
        int index;
        using (BufferGuard g = a.AcquireCpu(64))
        {
            index = g.MetaIndex;
            g.Span.Fill(9);
        }

        using BufferGuard h = b.AcquireCpu(64);
        Assert.Equal(index, h.MetaIndex);
        unsafe
        {
            Assert.Equal(9, *(byte*)h.CpuPointer);
            Assert.Equal(9, ((byte*)h.CpuPointer)[63]);
        }

        Assert.Single(Shm.DataSegmentsOf(a.Name));
    }

    [Fact]
    public void AcquireLargerThanKeptMemory_PrefersASlotThatFits()
    {
        using BufferPool pool = NewPool(4);
        int[] idx = pool.PreallocateCpu(100, 2);          // slots 0 and 1, one page each
        using (BufferGuard big = pool.AcquireCpu(20_000))  // slot 2, five pages
        {
            Assert.Equal(2, big.MetaIndex);
        }

        pool.SetRefCount(idx[0], 0);
        pool.SetRefCount(idx[1], 0);
        using BufferGuard g = pool.AcquireCpu(16_000);
        Assert.Equal(2, g.MetaIndex);                      // the one whose memory fits, not the lowest
        using BufferGuard small = pool.AcquireCpu(10);
        Assert.Equal(0, small.MetaIndex);
    }

    [Fact]
    public void Acquire_TakesTheFreeSlotReleasedLongestAgo_NotTheOneJustReleased()
    {
        // A pipeline's shape: each buffer is released before the next acquire. All four slots have memory that fits,
        // so each acquire takes the slot after the last one taken (next fit), which is the one released longest ago.
        using BufferPool pool = NewPool(4);
        var made = new BufferGuard[4];
        for (int i = 0; i < 4; i++)
        {
            made[i] = pool.AcquireCpu(1000);
        }

        foreach (BufferGuard g in made)
        {
            g.Dispose();
        }

        var taken = new List<int>();
        for (int i = 0; i < 8; i++)
        {
            using BufferGuard g = pool.AcquireCpu(1000);
            taken.Add(g.MetaIndex);
        }

        Assert.Equal(4, Shm.DataSegmentsOf(pool.Name).Length);
        for (int i = 1; i < taken.Count; i++)
        {
            Assert.Equal((taken[i - 1] + 1) % 4, taken[i]); // never the slot just given back
        }
    }

    [Fact]
    public void Acquire_MakesNoMoreBuffersThanAreInFlight_InALargePool()
    {
        // The next fit looks ahead only over slots that have memory: a pool of 64 used with two buffers in flight
        // keeps using those two (and their two data segments), never making a third.
        using BufferPool pool = NewPool(64);
        BufferGuard a = pool.AcquireCpu(4096);
        BufferGuard b = pool.AcquireCpu(4096);
        var seen = new HashSet<int> { a.MetaIndex, b.MetaIndex };
        for (int i = 0; i < 100; i++)
        {
            a.Dispose();
            a = b;
            b = pool.AcquireCpu(4096);
            seen.Add(b.MetaIndex);
        }

        a.Dispose();
        b.Dispose();
        Assert.Equal(2, seen.Count);
        Assert.Equal(2, Shm.DataSegmentsOf(pool.Name).Length);
    }

    [Fact]
    public void AcquireLargerThanAnyKeptMemory_ReplacesTheSegment()
    {
        using BufferPool pool = NewPool(1);
        pool.AcquireCpu(100).Dispose();
        string[] old = Shm.DataSegmentsOf(pool.Name);
        using BufferGuard g = pool.AcquireCpu(100_000);
        string[] now = Shm.DataSegmentsOf(pool.Name);
        Assert.Single(now);
        Assert.NotEqual(old, now);
        g.Span[99_999] = 1;
    }

    [Fact]
    public void Trim_DropsTheMemoryOfFreeSlotsOnly()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard kept = pool.AcquireCpu(10);
        pool.AcquireCpu(10).Dispose();
        pool.AcquireCpu(5000).Dispose(); // slot 1's page is too small: slot 2 gets two fresh pages
        Assert.Equal(3, Shm.DataSegmentsOf(pool.Name).Length);
        long freed = pool.Trim();
        Assert.True(freed >= 4096 + 8192, $"Trim gave back {freed} bytes");
        Assert.Single(Shm.DataSegmentsOf(pool.Name));
        Assert.Equal(1, pool.RefCount(kept.MetaIndex));
        kept.Span[0] = 3;
        Assert.Equal(0, pool.Trim());

        // Trimmed slots are still free and get fresh memory.
        using BufferGuard g = pool.AcquireCpu(10);
        Assert.Equal(1, g.MetaIndex);
        Assert.Equal(2, Shm.DataSegmentsOf(pool.Name).Length);
    }

    [Fact]
    public void Trim_ByAnotherInstance_DoesNotBreakThisInstancesCachedMapping()
    {
        using BufferPool a = NewPool(2);
        using BufferPool b = BufferPool.Open(a.Name);
        a.AcquireCpu(100).Dispose(); // a has slot 0 mapped
        Assert.True(b.Trim() > 0);
        Assert.Empty(Shm.DataSegmentsOf(a.Name));
        using BufferGuard g = a.AcquireCpu(100);
        g.Span.Fill(4);
        using BufferGuard r = b.Get(g.MetaIndex);
        Assert.Equal(4, r.ReadOnlySpan[99]);
    }

    [Fact]
    public void GuardCollectedWithoutDispose_ReleasesItsReference()
    {
        using BufferPool pool = NewPool(2);
        int index = AcquireAndDrop(pool);
        Shm.WaitUntil(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return pool.RefCount(index) == 0;
        }, "the dropped guard's finalizer releasing its reference");
        using BufferGuard again = pool.AcquireCpu(8);
        Assert.Equal(index, again.MetaIndex);
    }

    [Fact]
    public void GetGuardCollectedWithoutDispose_ReleasesOnlyItsOwnReference()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard owner = pool.AcquireCpu(8);
        GetAndDrop(pool, owner.MetaIndex);
        Shm.WaitUntil(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return pool.RefCount(owner.MetaIndex) == 1;
        }, "the dropped Get guard's finalizer releasing its reference");
        Assert.True(owner.IsValid);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int AcquireAndDrop(BufferPool pool)
    {
        BufferGuard g = pool.AcquireCpu(8);
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
        return g.MetaIndex;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void GetAndDrop(BufferPool pool, int index)
    {
        BufferGuard g = pool.Get(index);
        Assert.Equal(2, pool.RefCount(g.MetaIndex));
    }
}
