using BenchmarkDotNet.Attributes;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// The steady-state hot paths: AcquireCpu + Dispose of a recycled slot (target ≤ 1 µs, no system call, no managed
/// allocation beyond the guard) and Get + Dispose of a live slot this process has already mapped (target ≤ 300 ns,
/// no system call). Both use a frame-sized (6,220,800-byte) buffer whose memory the pool keeps between uses.
/// The *Ref variants are the allocation-free BufferRef API (pooled guards): the memory diagnoser shows 0 B.
/// The "no system call" half of the targets is checked with strace over the hot-loop mode (see docs/benchmarks.md).
/// </summary>
[MemoryDiagnoser]
public class AcquireBenchmarks
{
    private BufferPool _pool = null!;
    private int _liveSlot;

    [GlobalSetup]
    public void Setup()
    {
        _pool = BufferPool.Create(BenchNames.Pool("acquire"), capacity: 8);

        // The slot AcquireCpu will recycle: give it memory once and touch it, so every measured acquire reuses it.
        using (BufferGuard g = _pool.AcquireCpu(BenchNames.FrameBytes))
        {
            g.Span.Fill(1);
        }

        // A second slot kept live (count 1, in flight) for Get.
        _liveSlot = _pool.PreallocateCpu(BenchNames.FrameBytes, 1)[0];
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark(Description = "AcquireCpu+Dispose (recycled 6 MB slot)")]
    public int AcquireDispose()
    {
        using BufferGuard g = _pool.AcquireCpu(BenchNames.FrameBytes);
        return g.MetaIndex;
    }

    [Benchmark(Description = "Get+Dispose (mapped slot)")]
    public long GetDispose()
    {
        using BufferGuard g = _pool.Get(_liveSlot);
        return g.Size;
    }

    [Benchmark(Description = "GetMut+Dispose (mapped slot)")]
    public long GetMutDispose()
    {
        using BufferGuard g = _pool.GetMut(_liveSlot);
        return g.Size;
    }

    [Benchmark(Description = "AcquireCpuRef+Dispose (recycled 6 MB slot)")]
    public int AcquireRefDispose()
    {
        using BufferRef b = _pool.AcquireCpuRef(BenchNames.FrameBytes);
        return b.MetaIndex;
    }

    [Benchmark(Description = "GetRef+Dispose (mapped slot)")]
    public long GetRefDispose()
    {
        using BufferRef b = _pool.GetRef(_liveSlot);
        return b.Size;
    }
}
