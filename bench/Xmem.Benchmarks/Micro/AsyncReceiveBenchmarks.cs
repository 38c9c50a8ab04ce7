using BenchmarkDotNet.Attributes;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// A receive that finds a buffer ready, synchronous and asynchronous, each paired with the send that makes it ready
/// (one Send + one receive + Dispose per operation, a 64-byte buffer whose slot is recycled). The memory diagnoser's
/// "Allocated" column must be the same for both rows: the ValueTask of a ready ReceiveAsync (and of
/// AcquireCpuAsync with a free slot) allocates nothing beyond the guard that every receive makes.
/// </summary>
[MemoryDiagnoser]
public class AsyncReceiveBenchmarks
{
    private BufferPool _pool = null!;
    private BufferChannel _channel = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = BufferPool.Create(BenchNames.Pool("async"), capacity: 8);
        _channel = _pool.Channel("q", depth: 8);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _channel.Dispose();
        _pool.Dispose();
    }

    [Benchmark(Baseline = true, Description = "Send + TryReceive(0) + Dispose")]
    public int SendTryReceive()
    {
        _channel.Send(_pool.AcquireCpu(64));
        _ = _channel.TryReceive(TimeSpan.Zero, out BufferGuard? g);
        using (g)
        {
            return g!.MetaIndex;
        }
    }

    [Benchmark(Description = "Send + ReceiveAsync (ready) + Dispose")]
    public int SendReceiveAsync()
    {
        _channel.Send(_pool.AcquireCpu(64));
        ValueTask<BufferGuard> t = _channel.ReceiveAsync();
        using BufferGuard g = t.IsCompletedSuccessfully ? t.Result : t.AsTask().GetAwaiter().GetResult();
        return g.MetaIndex;
    }

    [Benchmark(Description = "AcquireCpuAsync (free slot) + Dispose")]
    public int AcquireAsync()
    {
        ValueTask<BufferGuard> t = _pool.AcquireCpuAsync(64);
        using BufferGuard g = t.IsCompletedSuccessfully ? t.Result : t.AsTask().GetAwaiter().GetResult();
        return g.MetaIndex;
    }
}
