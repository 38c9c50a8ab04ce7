using BenchmarkDotNet.Attributes;
using Xmem.Benchmarks.Interop;

namespace Xmem.Benchmarks.Micro;

/// <summary>
/// AddRef / Release / RefCount against their floor, a bare atomic on a MAP_SHARED mapping of a /dev/shm file
/// (the target: within 2× of it). Each benchmark runs <see cref="Ops"/> operations per invocation so that
/// BenchmarkDotNet's per-call overhead does not swamp a 1-ns operation; the reported time is per operation.
/// AddRef and Release are measured separately: a batch of AddRefs is followed by one unmeasured-in-effect
/// SetRefCount (1/1024 of the time) that brings the count back, so the count never runs into its 24-bit limit.
/// </summary>
[MemoryDiagnoser]
public unsafe class RefCountBenchmarks
{
    private const int Ops = 1024;

    private BufferPool _pool = null!;
    private int _slot;
    private ShmScratch _scratch = null!;
    private long* _word;

    [GlobalSetup]
    public void Setup()
    {
        _pool = BufferPool.Create(BenchNames.Pool("refcount"), capacity: 8);
        _slot = _pool.PreallocateCpu(4096, 1)[0];
        _scratch = ShmScratch.Create(BenchNames.Object("refcount-floor"));
        _word = (long*)_scratch.Pointer;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        _scratch.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "floor: Interlocked.Increment (shm)")]
    public long FloorIncrement()
    {
        long v = 0;
        for (int i = 0; i < Ops; i++)
        {
            v = Interlocked.Increment(ref *_word);
        }

        return v;
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "floor: Interlocked.CompareExchange (shm)")]
    public long FloorCompareExchange()
    {
        long v = 0;
        for (int i = 0; i < Ops; i++)
        {
            long w = Volatile.Read(ref *_word);
            v = Interlocked.CompareExchange(ref *_word, w + 1, w);
        }

        return v;
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "floor: Volatile.Read (shm)")]
    public long FloorRead()
    {
        long sum = 0;
        for (int i = 0; i < Ops; i++)
        {
            sum += Volatile.Read(ref *_word);
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "AddRef")]
    public int AddRef()
    {
        int c = 0;
        for (int i = 0; i < Ops; i++)
        {
            c = _pool.AddRef(_slot);
        }

        _pool.SetRefCount(_slot, 1);
        return c;
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "Release")]
    public int Release()
    {
        _pool.SetRefCount(_slot, Ops + 1);
        int c = 0;
        for (int i = 0; i < Ops; i++)
        {
            c = _pool.Release(_slot);
        }

        return c;
    }

    [Benchmark(OperationsPerInvoke = Ops, Description = "RefCount")]
    public int RefCount()
    {
        int sum = 0;
        for (int i = 0; i < Ops; i++)
        {
            sum += _pool.RefCount(_slot);
        }

        return sum;
    }
}
