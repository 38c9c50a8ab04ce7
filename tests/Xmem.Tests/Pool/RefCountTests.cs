namespace Xmem.Tests.Pool;

/// <summary>Get, GetMut, AddRef, Release, SetRefCount, RefCount: counts, and errors that change no count.</summary>
public sealed class RefCountTests : PoolTest
{
    [Fact]
    public void Get_IsReadOnly_AndAddsOne_DisposeTakesItBack()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard a = pool.AcquireCpu(64);
        using (BufferGuard r = pool.Get(a.MetaIndex))
        {
            Assert.True(r.IsReadOnly);
            Assert.Equal(a.MetaIndex, r.MetaIndex);
            Assert.Equal(64, r.Size);
            Assert.Equal(2, pool.RefCount(a.MetaIndex));
        }

        Assert.Equal(1, pool.RefCount(a.MetaIndex));
    }

    [Fact]
    public void GetMut_IsWritable_AndAddsOne_SameMemory()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard a = pool.AcquireCpu(64);
        using (BufferGuard w = pool.GetMut(a.MetaIndex))
        {
            Assert.False(w.IsReadOnly);
            Assert.Equal(2, pool.RefCount(a.MetaIndex));
            w.Span[5] = 42;
        }

        Assert.Equal(42, a.ReadOnlySpan[5]);
        Assert.Equal(1, pool.RefCount(a.MetaIndex));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(4)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void IndexOutOfRange_ThrowsArgumentOutOfRange_ForEveryCall(int index)
    {
        using BufferPool pool = NewPool(4);
        int[] live = pool.PreallocateCpu(8, 4);
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.Get(index));
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.GetMut(index));
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.AddRef(index));
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.Release(index));
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.SetRefCount(index, 1));
        Assert.Throws<MetaIndexOutOfRangeException>(() => pool.RefCount(index));
        Assert.All(live, i => Assert.Equal(1, pool.RefCount(i)));
        Assert.All(live, i => pool.SetRefCount(i, 0));
    }

    [Fact]
    public void SlotNotLive_ThrowsSlotNotLive_AndChangesNoCount()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard a = pool.AcquireCpu(8);
        const int free = 2;
        Assert.Throws<SlotNotLiveException>(() => pool.Get(free));
        Assert.Throws<SlotNotLiveException>(() => pool.GetMut(free));
        Assert.Throws<SlotNotLiveException>(() => pool.AddRef(free));
        Assert.Throws<SlotNotLiveException>(() => pool.Release(free));
        Assert.Throws<SlotNotLiveException>(() => pool.SetRefCount(free, 3));
        Assert.Equal(0, pool.RefCount(free));
        Assert.Equal(1, pool.RefCount(a.MetaIndex));

        // Still free: the next two acquires take slots 1 and 2.
        using BufferGuard b = pool.AcquireCpu(8);
        using BufferGuard c = pool.AcquireCpu(8);
        Assert.Equal([1, 2], new[] { b.MetaIndex, c.MetaIndex });
    }

    [Fact]
    public void AfterRelease_SlotIsNotLive()
    {
        using BufferPool pool = NewPool(2);
        int i = pool.PreallocateCpu(8, 1)[0];
        Assert.Equal(0, pool.Release(i));
        Assert.Throws<SlotNotLiveException>(() => pool.Get(i));
        Assert.Throws<SlotNotLiveException>(() => pool.Release(i));
        Assert.Equal(0, pool.RefCount(i));
    }

    [Fact]
    public void AddRef_And_Release_ReturnTheNewCount()
    {
        using BufferPool pool = NewPool(2);
        int i = pool.PreallocateCpu(8, 1)[0];
        Assert.Equal(2, pool.AddRef(i));
        Assert.Equal(3, pool.AddRef(i));
        Assert.Equal(3, pool.RefCount(i));
        Assert.Equal(2, pool.Release(i));
        Assert.Equal(1, pool.Release(i));
        Assert.Equal(1, pool.RefCount(i));
        Assert.Equal(0, pool.Release(i));
        Assert.Equal(0, pool.RefCount(i));
    }

    [Fact]
    public void SetRefCount_SetsTheCount_ZeroRecycles()
    {
        using BufferPool pool = NewPool(2);
        int i = pool.PreallocateCpu(8, 1)[0];
        pool.SetRefCount(i, 5);
        Assert.Equal(5, pool.RefCount(i));
        pool.SetRefCount(i, 1);
        Assert.Equal(1, pool.RefCount(i));
        pool.SetRefCount(i, 0);
        Assert.Equal(0, pool.RefCount(i));
        Assert.Throws<SlotNotLiveException>(() => pool.Get(i));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(16_777_216)]
    public void SetRefCount_OutOfRange_ThrowsAndChangesNothing(int count)
    {
        using BufferPool pool = NewPool(2);
        int i = pool.PreallocateCpu(8, 1)[0];
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.SetRefCount(i, count));
        Assert.Equal(1, pool.RefCount(i));
        pool.SetRefCount(i, 0);
    }

    [Fact]
    public void CountAtItsMaximum_RefusesMore_AndStaysIntact()
    {
        using BufferPool pool = NewPool(2);
        int i = pool.PreallocateCpu(8, 1)[0];
        pool.SetRefCount(i, 16_777_215);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.AddRef(i));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Get(i));
        Assert.Equal(16_777_215, pool.RefCount(i));
        Assert.Equal(16_777_214, pool.Release(i));
        pool.SetRefCount(i, 0);
    }

    [Fact]
    public void CountsAreShared_BetweenInstancesOfThePool()
    {
        using BufferPool a = NewPool(4);
        using BufferPool b = BufferPool.Open(a.Name);
        int i = a.PreallocateCpu(8, 1)[0];
        Assert.Equal(2, b.AddRef(i));
        Assert.Equal(2, a.RefCount(i));
        using (BufferGuard g = b.Get(i))
        {
            Assert.Equal(3, a.RefCount(i));
        }

        Assert.Equal(1, a.Release(i));
        Assert.Equal(1, b.RefCount(i));
        b.SetRefCount(i, 0);
        Assert.Equal(0, a.RefCount(i));
    }

    [Fact]
    public void ReleasingTheLastCount_WhileAGuardExists_RecyclesTheSlot_AndTheGuardsDisposeDoesNothing()
    {
        using BufferPool pool = NewPool(2);
        BufferGuard g = pool.AcquireCpu(8);
        int i = g.MetaIndex;
        Assert.Equal(0, pool.Release(i)); // somebody released a reference that was not theirs
        using BufferGuard next = pool.AcquireCpu(8);
        Assert.Equal(i, next.MetaIndex);
        g.Dispose();                       // must not touch the new buffer of the slot
        Assert.Equal(1, pool.RefCount(i));
    }
}
