using BenchmarkDotNet.Attributes;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// The channel's hot paths in one thread: AcquireCpu + Send + Receive + Dispose of a recycled slot through a queue
/// channel that always has room and a message (so neither side waits: the fast path, which carries one counter update
/// each, docs/observability.md). Compare with AcquireBenchmarks' AcquireCpu + Dispose for the channel's share.
/// </summary>
[MemoryDiagnoser]
public class ChannelSendBenchmarks
{
    private BufferPool _pool = null!;
    private BufferChannel _channel = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = BufferPool.Create(BenchNames.Pool("channel"), capacity: 8);
        _channel = _pool.Channel("bench", depth: 64);
        using BufferGuard g = _pool.AcquireCpu(4096);
        g.Span.Fill(1);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _channel.Dispose();
        _pool.Dispose();
    }

    [Benchmark(Description = "AcquireCpu+Send+Receive+Dispose (queue, 4 KiB)")]
    public int SendReceive()
    {
        _channel.Send(_pool.AcquireCpu(4096));
        using BufferGuard g = _channel.Receive();
        return g.MetaIndex;
    }

    [Benchmark(Description = "AcquireCpuRef+Send+ReceiveRef+Dispose (queue, 4 KiB)")]
    public int SendReceiveRef()
    {
        _channel.Send(_pool.AcquireCpuRef(4096));
        using BufferRef b = _channel.ReceiveRef();
        return b.MetaIndex;
    }
}
