using System.Buffers;
using System.Runtime.InteropServices;

namespace Xmem.Tests.Pool;

/// <summary>BufferGuard: views of the bytes, read-only enforcement, Forget, exactly-once Dispose.</summary>
public sealed class BufferGuardTests : PoolTest
{
    [Fact]
    public void Views_AllSeeTheSameBytes()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard g = pool.AcquireCpu(64);
        g.Span.Clear();
        g.Span[3] = 0xAB;
        Assert.Equal(0xAB, g.ReadOnlySpan[3]);
        Assert.Equal(0xAB, g.Memory.Span[3]);
        unsafe
        {
            Assert.Equal(0xAB, ((byte*)g.CpuPointer)[3]);
            fixed (byte* p = g.Span)
            {
                Assert.Equal(g.CpuPointer, (nint)p);
            }

            using MemoryHandle h = g.Memory.Pin();
            Assert.Equal(g.CpuPointer, (nint)h.Pointer);
        }

        g.AsSpan<int>()[1] = 0x01020304;
        Assert.Equal(16, g.AsSpan<int>().Length);
        Assert.Equal(0x01020304, MemoryMarshal.Read<int>(g.ReadOnlySpan[4..]));
        Assert.Equal(0x01020304, g.AsReadOnlySpan<int>()[1]);
        Assert.Equal(64, g.Memory.Length);
    }

    [Fact]
    public void AsSpan_OfALargerType_CoversWholeElementsOnly()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard g = pool.AcquireCpu(10);
        Assert.Equal(2, g.AsSpan<int>().Length);
        Assert.Single(g.AsSpan<long>().ToArray());
    }

    [Fact]
    public void ReadOnlyGuard_RefusesWriteViews_ButReads()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard w = pool.AcquireCpu(16);
        w.Span.Fill(6);
        using BufferGuard r = pool.Get(w.MetaIndex);
        Assert.True(r.IsReadOnly);
        var e = Assert.Throws<BufferReadOnlyException>(() => r.Span.Length);
        Assert.Equal(XmemStatus.ReadOnly, e.Status);
        Assert.Throws<BufferReadOnlyException>(() => r.Memory);
        Assert.Throws<BufferReadOnlyException>(() => r.AsSpan<byte>());
        Assert.Equal(6, r.ReadOnlySpan[15]);
        Assert.Equal(6, r.AsReadOnlySpan<byte>()[0]);
        Assert.NotEqual(0, r.CpuPointer);
        Assert.True(r.IsValid);
    }

    [Fact]
    public void Forget_KeepsTheCount_InvalidatesTheGuard()
    {
        using BufferPool pool = NewPool(2);
        BufferGuard g = pool.AcquireCpu(16);
        int i = g.MetaIndex;
        g.Forget();
        Assert.False(g.IsValid);
        Assert.Equal(1, pool.RefCount(i));
        Assert.Equal(i, g.MetaIndex);
        Assert.Equal(16, g.Size);
        AssertEveryAccessThrowsInvalid(g);
        Assert.Throws<BufferGuardInvalidException>(() => g.Forget());
        g.Dispose(); // does nothing
        Assert.Equal(1, pool.RefCount(i));

        // The reference is in flight: another instance (process) takes it over.
        using (BufferPool other = BufferPool.Open(pool.Name))
        {
            Assert.Equal(0, other.Release(i));
        }

        Assert.Equal(0, pool.RefCount(i));
    }

    [Fact]
    public void Forget_OfAGetGuard_KeepsItsReferenceInFlight()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard owner = pool.AcquireCpu(16);
        BufferGuard r = pool.Get(owner.MetaIndex);
        r.Forget();
        Assert.Equal(2, pool.RefCount(owner.MetaIndex));
        owner.Dispose();
        Assert.Equal(1, pool.RefCount(owner.MetaIndex));
        Assert.Equal(0, pool.Release(owner.MetaIndex));
    }

    [Fact]
    public void ForgottenReference_SurvivesTheProcessDetaching()
    {
        using BufferPool pool = NewPool(2);
        using BufferPool other = BufferPool.Open(pool.Name);
        BufferGuard g = other.AcquireCpu(16);
        g.Forget();
        other.Dispose();
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
        pool.SetRefCount(g.MetaIndex, 0);
    }

    [Fact]
    public void Dispose_ReleasesExactlyOnce()
    {
        using BufferPool pool = NewPool(2);
        BufferGuard g = pool.AcquireCpu(16);
        int i = g.MetaIndex;
        Assert.Equal(2, pool.AddRef(i));
        g.Dispose();
        Assert.Equal(1, pool.RefCount(i));
        Assert.False(g.IsValid);
        g.Dispose();
        g.Dispose();
        Assert.Equal(1, pool.RefCount(i));
        AssertEveryAccessThrowsInvalid(g);
        Assert.Throws<BufferGuardInvalidException>(() => g.Forget());
        Assert.Equal(0, pool.Release(i));
    }

    [Fact]
    public void Dispose_FromManyThreadsAtOnce_ReleasesOnce()
    {
        using BufferPool pool = NewPool(2);
        for (int round = 0; round < 20; round++)
        {
            BufferGuard g = pool.AcquireCpu(16);
            int i = g.MetaIndex;
            pool.AddRef(i);
            Parallel.For(0, 8, _ => g.Dispose());
            Assert.Equal(1, pool.RefCount(i));
            Assert.Equal(0, pool.Release(i));
        }
    }

    [Fact]
    public void Memory_IsUsableThroughMemoryApis()
    {
        using BufferPool pool = NewPool(2);
        using BufferGuard g = pool.AcquireCpu(32);
        Memory<byte> m = g.Memory;
        m.Span.Fill(1);
        Assert.True(MemoryMarshal.TryGetMemoryManager<byte, MemoryManager<byte>>(m, out _));
        Assert.Equal(32, m.Slice(0, 32).Length);
        Assert.True(g.ReadOnlySpan.IndexOfAnyExcept((byte)1) < 0);
    }

    private static void AssertEveryAccessThrowsInvalid(BufferGuard g)
    {
        var e = Assert.Throws<BufferGuardInvalidException>(() => g.CpuPointer);
        Assert.Equal(XmemStatus.GuardInvalid, e.Status);
        Assert.Throws<BufferGuardInvalidException>(() => g.Span.Length);
        Assert.Throws<BufferGuardInvalidException>(() => g.ReadOnlySpan.Length);
        Assert.Throws<BufferGuardInvalidException>(() => g.Memory);
        Assert.Throws<BufferGuardInvalidException>(() => g.AsSpan<int>());
        Assert.Throws<BufferGuardInvalidException>(() => g.AsReadOnlySpan<int>());
    }
}
