using BenchmarkDotNet.Attributes;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// Pool create and open. Each is measured together with the Dispose that undoes it (a benchmark cannot leave
/// thousands of pools behind); the hot-loop mode <c>lifecycle</c> times the halves separately.
/// Create + Dispose of the last process also removes the pool's segments; Open + Dispose detaches from a pool that
/// another handle (made in setup) keeps alive.
/// </summary>
[MemoryDiagnoser]
public class LifecycleBenchmarks
{
    private BufferPool _existing = null!;
    private string _createName = null!;
    private string _openName = null!;

    [Params(16, 1024)]
    public int Capacity { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _createName = BenchNames.Pool($"create{Capacity}");
        _openName = BenchNames.Pool($"open{Capacity}");
        _existing = BufferPool.Create(_openName, Capacity);
    }

    [GlobalCleanup]
    public void Cleanup() => _existing.Dispose();

    [Benchmark(Description = "Create+Dispose")]
    public int CreateDispose()
    {
        using BufferPool p = BufferPool.Create(_createName, Capacity);
        return p.Capacity;
    }

    [Benchmark(Description = "Open+Dispose")]
    public int OpenDispose()
    {
        using BufferPool p = BufferPool.Open(_openName);
        return p.Capacity;
    }
}
