using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;

namespace Xmem.Tests.Shared;

/// <summary>What one process's stress run did, and the invariants it saw broken.</summary>
internal sealed class StressResult
{
    public long Acquired;
    public long Timeouts;
    public long Gets;
    public long SameGenerationGets;
    public long NotLive;
    public long Forgotten;
    public long AddRefs;
    public ConcurrentQueue<string> ViolationQueue { get; } = new();

    public IReadOnlyCollection<string> Violations => ViolationQueue;

    public void Violation(string what) => ViolationQueue.Enqueue(what);

    public string ToLine() => string.Create(CultureInfo.InvariantCulture,
        $"result acquired={Acquired} timeouts={Timeouts} gets={Gets} samegen={SameGenerationGets} notlive={NotLive} forgotten={Forgotten} addrefs={AddRefs} violations={ViolationQueue.Count}");
}

/// <summary>
/// Drives acquire / get / add_ref / release / forget on one pool from many threads for a bounded time, checking that
/// no slot is ever handed out twice. Each acquirer stamps a token unique across processes into the first 16 bytes of
/// its buffer and publishes (index, generation, token) to the other threads of its process; it checks the stamp is
/// unchanged before every release. A getter that lands on the published generation checks the same stamp while it
/// holds its reference (the owner may have released meanwhile: the getter's reference must keep the slot from being
/// handed out again). Compiled into both the test child and the tests, so the test process takes part too.
/// </summary>
internal static class StressWorker
{
    private const int MaxHeld = 3;

    public static StressResult Run(BufferPool pool, int threads, TimeSpan duration, int tag)
    {
        var result = new StressResult();
        var published = new ConcurrentDictionary<int, (uint Gen, ulong Token)>();
        long deadline = Environment.TickCount64 + (long)duration.TotalMilliseconds;
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int thread = t;
            workers[t] = new Thread(() =>
            {
                try
                {
                    Work(pool, tag, thread, deadline, published, result);
                }
                catch (Exception e)
                {
                    result.Violation($"thread {thread} of tag {tag} died: {e}");
                }
            })
            { IsBackground = true, Name = $"stress-{tag}-{t}" };
            workers[t].Start();
        }

        foreach (Thread w in workers)
        {
            // Watchdog: a thread that outlives its deadline by a minute is stuck.
            if (!w.Join(duration + TimeSpan.FromSeconds(60)))
            {
                result.Violation($"{w.Name} did not finish within 60 s of its deadline (hang)");
            }
        }

        return result;
    }

    private static void Work(BufferPool pool, int tag, int thread, long deadline, ConcurrentDictionary<int, (uint Gen, ulong Token)> published, StressResult result)
    {
        var rng = new Random(HashCode.Combine(tag, thread, Environment.ProcessId));
        var held = new List<(BufferGuard Guard, ulong Token)>();
        ulong counter = 0;
        while (Environment.TickCount64 < deadline)
        {
            int op = rng.Next(100);
            if (op < 40 && held.Count < MaxHeld)
            {
                long size = rng.Next(3) == 0 ? rng.Next(16, 20_000) : rng.Next(16, 4096);
                if (!pool.TryAcquireCpu(size, TimeSpan.FromMilliseconds(20), out BufferGuard? g))
                {
                    Interlocked.Increment(ref result.Timeouts);
                    continue;
                }

                ulong token = ((ulong)(uint)tag << 40) | ((ulong)(uint)thread << 32) | ++counter;
                Span<byte> span = g.Span;
                BinaryPrimitives.WriteUInt64LittleEndian(span, token);
                BinaryPrimitives.WriteUInt64LittleEndian(span[8..], ~token);
                if (pool.RefCount(g.MetaIndex) < 1)
                {
                    result.Violation($"slot {g.MetaIndex}: count {pool.RefCount(g.MetaIndex)} right after acquire");
                }

                published[g.MetaIndex] = (g.Generation, token);
                held.Add((g, token));
                Interlocked.Increment(ref result.Acquired);
            }
            else if (op < 75 && held.Count > 0)
            {
                int k = rng.Next(held.Count);
                (BufferGuard g, ulong token) = held[k];
                held.RemoveAt(k);
                int index = g.MetaIndex;
                CheckStamp(g.ReadOnlySpan, token, index, "owner", result);
                int how = rng.Next(4);
                if (how == 0)
                {
                    // An extra in-flight reference on top of the guard's.
                    int c = pool.AddRef(index);
                    if (c < 2)
                    {
                        result.Violation($"slot {index}: AddRef on a held slot returned {c}");
                    }

                    CheckStamp(g.ReadOnlySpan, token, index, "owner after AddRef", result);
                    _ = pool.Release(index);
                    Interlocked.Increment(ref result.AddRefs);
                    g.Dispose();
                }
                else if (how == 1)
                {
                    // Hand the reference off to no process, then drop it as an in-flight reference.
                    g.Forget();
                    if (pool.RefCount(index) < 1)
                    {
                        result.Violation($"slot {index}: count {pool.RefCount(index)} after Forget");
                    }

                    _ = pool.Release(index);
                    Interlocked.Increment(ref result.Forgotten);
                }
                else
                {
                    g.Dispose();
                }
            }
            else if (!published.IsEmpty)
            {
                int index = rng.Next(pool.Capacity);
                if (!published.TryGetValue(index, out var pub))
                {
                    continue;
                }

                BufferGuard r;
                try
                {
                    r = rng.Next(2) == 0 ? pool.Get(index) : pool.GetMut(index);
                }
                catch (SlotNotLiveException)
                {
                    Interlocked.Increment(ref result.NotLive);
                    continue;
                }

                using (r)
                {
                    Interlocked.Increment(ref result.Gets);
                    if (pool.RefCount(index) < 1)
                    {
                        result.Violation($"slot {index}: count {pool.RefCount(index)} while a Get guard holds it");
                    }

                    if (r.Generation == pub.Gen)
                    {
                        Interlocked.Increment(ref result.SameGenerationGets);
                        CheckStamp(r.ReadOnlySpan, pub.Token, index, "getter", result);
                        Thread.SpinWait(rng.Next(50, 2000));
                        CheckStamp(r.ReadOnlySpan, pub.Token, index, "getter after a pause", result);
                    }
                }
            }
        }

        foreach ((BufferGuard g, ulong token) in held)
        {
            CheckStamp(g.ReadOnlySpan, token, g.MetaIndex, "owner at the end", result);
            g.Dispose();
        }
    }

    private static void CheckStamp(ReadOnlySpan<byte> span, ulong token, int index, string who, StressResult result)
    {
        ulong a = BinaryPrimitives.ReadUInt64LittleEndian(span);
        ulong b = BinaryPrimitives.ReadUInt64LittleEndian(span[8..]);
        if (a != token || b != ~token)
        {
            result.Violation($"slot {index}: {who} expected stamp {token:x16} but found {a:x16}/{~b:x16}: the slot was handed out twice");
        }
    }
}
