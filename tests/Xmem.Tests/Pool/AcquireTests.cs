namespace Xmem.Tests.Pool;

/// <summary>AcquireCpu and PreallocateCpu: sizes, indexes, counts, failures that change nothing.</summary>
public sealed class AcquireTests : PoolTest
{
    [Fact]
    public void AcquireCpu_ReturnsReadWriteGuardWithCountOne()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard g = pool.AcquireCpu(100);
        Assert.True(g.IsValid);
        Assert.False(g.IsReadOnly);
        Assert.Equal(100, g.Size);
        Assert.Equal(100, g.Span.Length);
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
        Assert.NotEqual(0, g.CpuPointer);
    }

    [Fact]
    public void AcquireCpu_FreshPool_HandsOutIndexesInOrder()
    {
        using BufferPool pool = NewPool(5);
        var guards = Enumerable.Range(0, 5).Select(_ => pool.AcquireCpu(16)).ToList();
        Assert.Equal([0, 1, 2, 3, 4], guards.Select(g => g.MetaIndex));
        guards.ForEach(g => g.Dispose());
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    public async Task AcquireCpu_NonPositiveSize_ThrowsArgumentOutOfRange(long size)
    {
        using BufferPool pool = NewPool(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.AcquireCpu(size));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.TryAcquireCpu(size, TimeSpan.Zero, out _));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => pool.AcquireCpuAsync(size).AsTask());
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.PreallocateCpu(size, 1));
        AssertUntouched(pool);
    }

    [Theory]
    [InlineData(1L << 50)]        // 1 PiB
    [InlineData(long.MaxValue)]
    public void AcquireCpu_HugeSize_ThrowsOutOfMemory_AndChangesNothing(long size)
    {
        using BufferPool pool = NewPool(2);
        var e = Assert.Throws<XmemOutOfMemoryException>(() => pool.AcquireCpu(size));
        Assert.Equal(XmemStatus.OutOfMemory, e.Status);
        AssertUntouched(pool);
    }

    [SmallShmFact]
    public void AcquireCpu_MoreThanTheSharedMemoryDirectoryHolds_ThrowsOutOfMemory_AndChangesNothing()
    {
        long size = SmallShmFactAttribute.Limit;
        using BufferPool pool = NewPool(2);
        Assert.Throws<XmemOutOfMemoryException>(() => pool.AcquireCpu(size));
        AssertUntouched(pool);
    }

    [Fact]
    public void AcquireCpu_LargeBuffer_IsWholeAndWritable()
    {
        using BufferPool pool = NewPool(1);
        const int size = (8 << 20) + 3;
        using BufferGuard g = pool.AcquireCpu(size);
        Span<byte> s = g.Span;
        s[0] = 1;
        s[size - 1] = 2;
        Assert.Equal(2, g.ReadOnlySpan[size - 1]);
    }

    /// <summary>A failed acquire left the pool as new: no count, no memory, and the next acquire gets slot 0.</summary>
    private static void AssertUntouched(BufferPool pool)
    {
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }

        Assert.Empty(Shm.DataSegmentsOf(pool.Name));
        using BufferGuard g = pool.AcquireCpu(1);
        Assert.Equal(0, g.MetaIndex);
    }

    [Fact]
    public void PreallocateCpu_LeavesBuffersLiveWithCountOneHeldByNoGuard()
    {
        using BufferPool pool = NewPool(6);
        int[] idx = pool.PreallocateCpu(256, 4);
        Assert.Equal([0, 1, 2, 3], idx);
        foreach (int i in idx)
        {
            Assert.Equal(1, pool.RefCount(i));
            using (BufferGuard g = pool.Get(i))
            {
                Assert.Equal(256, g.Size);
                Assert.Equal(2, pool.RefCount(i));
            }

            Assert.Equal(1, pool.RefCount(i));
        }

        // Held by no guard or process: detaching this instance keeps them alive for others.
        using (BufferPool other = BufferPool.Open(pool.Name))
        {
            Assert.Equal(1, other.RefCount(idx[0]));
        }

        Assert.Equal(1, pool.RefCount(idx[0]));
        foreach (int i in idx)
        {
            Assert.Equal(0, pool.Release(i));
        }
    }

    [Fact]
    public void PreallocateCpu_Zero_ReturnsEmpty()
    {
        using BufferPool pool = NewPool(2);
        Assert.Empty(pool.PreallocateCpu(10, 0));
    }

    [Fact]
    public void PreallocateCpu_MoreThanFree_IsAllOrNothing()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard held = pool.AcquireCpu(8);
        Assert.Throws<PoolFullException>(() => pool.PreallocateCpu(8, 4));
        for (int i = 1; i < 4; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }

        Assert.Equal(3, pool.PreallocateCpu(8, 3).Length);
        for (int i = 1; i < 4; i++)
        {
            pool.SetRefCount(i, 0);
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(5)]
    public void PreallocateCpu_CountOutOfRange_Throws(int count)
    {
        using BufferPool pool = NewPool(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.PreallocateCpu(8, count));
    }
}

/// <summary>A fact that asks the shared-memory directory for 1 TiB and expects it to fail: skipped where it would
/// not (so a big machine is never asked to reserve that much).</summary>
public sealed class SmallShmFactAttribute : FactAttribute
{
    public const long Limit = 1L << 40;

    public SmallShmFactAttribute()
    {
        if (new DriveInfo(Shm.Directory).AvailableFreeSpace >= Limit)
        {
            Skip = $"the shared-memory directory {Shm.Directory} has 1 TiB or more free, so a 1 TiB buffer would not fail.";
        }
    }
}
