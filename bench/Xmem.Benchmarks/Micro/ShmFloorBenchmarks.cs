using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Xmem.Interop;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// What a non-pooling design pays per buffer, beside the pool: a fresh shared-memory object per acquire
/// (open + ftruncate + mmap + munmap + close + unlink of a frame-sized object, which is what the Rust original does
/// per acquire), and the first touch of such a fresh buffer (one byte per 4 KiB page, so every page is faulted in
/// and zeroed by the kernel) against the same touch of a recycled pool buffer whose pages are already there.
/// The pool's own cold path (a slot whose memory was trimmed, so acquire creates a new data segment) is shown too.
/// </summary>
[MemoryDiagnoser]
public unsafe class ShmFloorBenchmarks
{
    private static readonly long MappedBytes = (BenchNames.FrameBytes + BenchNames.PageBytes - 1) / BenchNames.PageBytes * BenchNames.PageBytes;

    private string _rawPath = null!;
    private BufferPool _pool = null!;
    private byte _seq;

    [GlobalSetup]
    public void Setup()
    {
        _rawPath = Path.Combine(SharedMemoryDirectory.Path, BenchNames.Object("fresh"));
        _ = Libc.Unlink(_rawPath);
        _pool = BufferPool.Create(BenchNames.Pool("floor"), capacity: 8);
        using BufferGuard g = _pool.AcquireCpu(BenchNames.FrameBytes);
        g.Span.Fill(1);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        _ = Libc.Unlink(_rawPath);
    }

    [Benchmark(Description = "floor: raw open+ftruncate+mmap+munmap+unlink (6 MB)")]
    public nint RawFreshObject() => FreshObject(touch: false);

    [Benchmark(Description = "first touch: raw fresh object + stamp 1519 pages")]
    public nint RawFreshObjectTouched() => FreshObject(touch: true);

    [Benchmark(Description = "first touch: pool recycled slot Acquire+stamp+Dispose")]
    public int PoolRecycledTouched()
    {
        using BufferGuard g = _pool.AcquireCpu(BenchNames.FrameBytes);
        Stamp((byte*)g.CpuPointer, ++_seq);
        return g.MetaIndex;
    }

    [Benchmark(Description = "pool cold: Acquire+Dispose+Trim (new data segment each time)")]
    public long PoolColdAcquire()
    {
        using (BufferGuard g = _pool.AcquireCpu(BenchNames.FrameBytes))
        {
            _ = g.MetaIndex;
        }

        return _pool.Trim();
    }

    private nint FreshObject(bool touch)
    {
        int fd = Libc.Open(_rawPath, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL | Libc.O_CLOEXEC, 0x180);
        if (fd < 0)
        {
            throw new IOException($"open failed: errno {Marshal.GetLastPInvokeError()}");
        }

        if (Libc.FTruncate(fd, MappedBytes) != 0)
        {
            throw new IOException($"ftruncate failed: errno {Marshal.GetLastPInvokeError()}");
        }

        nint p = Libc.MMap(0, (nuint)MappedBytes, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        if (p == Libc.MapFailed)
        {
            throw new IOException($"mmap failed: errno {Marshal.GetLastPInvokeError()}");
        }

        if (touch)
        {
            Stamp((byte*)p, ++_seq);
        }

        _ = Libc.MUnmap(p, (nuint)MappedBytes);
        _ = Libc.Close(fd);
        _ = Libc.Unlink(_rawPath);
        return p;
    }

    /// <summary>The protocol's stamp: one byte per 4 KiB page at offset 128.</summary>
    internal static void Stamp(byte* frame, byte seq)
    {
        for (int page = 0; page < BenchNames.FramePages; page++)
        {
            frame[((long)page * BenchNames.PageBytes) + 128] = (byte)(seq + page);
        }
    }
}
