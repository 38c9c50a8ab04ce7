using System.Diagnostics;
using System.Globalization;
using Xmem.Benchmarks.Interop;
using Xmem.Benchmarks.Micro;

namespace Xmem.Benchmarks;

/// <summary>
/// <c>hot-loop OP N</c>: runs one pool operation N times in a plain loop, between two marker writes to stderr
/// ("xmem-hot-loop:begin" / "xmem-hot-loop:end"), so that <c>strace -f</c> can count the system calls made inside
/// the loop (scripts/strace-hot-loop.sh does this and divides by N). The loop is warmed up first (same N, before the
/// begin marker) so that JIT work is not inside the window. Also prints ns/op from a Stopwatch.
/// OP: acquire (AcquireCpu + Dispose of a recycled frame), get (Get + Dispose), addref (AddRef + Release),
/// refcount, acquire-ref/get-ref/send-receive-ref (the BufferRef forms), describe-send-receive-ref (a frame's steps in
/// the handoff: AcquireCpuRef, SetDescription, Send, ReceiveRef, Description), lifecycle (Create, Open, Dispose timed
/// separately, with the thread's minor page faults per call; N rounds, no strace window).
/// </summary>
internal static unsafe class HotLoop
{
    internal static int Run(string[] args)
    {
        if (args.Length != 3 || !int.TryParse(args[2], NumberStyles.None, CultureInfo.InvariantCulture, out int n))
        {
            Console.Error.WriteLine("usage: hot-loop acquire|get|acquire-ref|get-ref|send-receive-ref|describe-send-receive-ref|addref|refcount|lifecycle|open N");
            return 2;
        }

        string op = args[1];
        if (op == "open")
        {
            // Open + Dispose (detach) of a pool another handle keeps, N times: for perf and strace of Open alone.
            string openName = BenchNames.Pool("hotopen");
            using BufferPool keeper = BufferPool.Create(openName, 16);
            for (int i = 0; i < Math.Min(n, 100); i++)
            {
                BufferPool.Open(openName).Dispose();
            }

            Marker("xmem-hot-loop:start\n");
            long s0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++)
            {
                BufferPool.Open(openName).Dispose();
            }

            TimeSpan took = Stopwatch.GetElapsedTime(s0);
            Marker("xmem-hot-loop:end\n");
            Console.WriteLine($"hot-loop open: {n} Open + Dispose at capacity 16, {took.TotalMicroseconds / Math.Max(n, 1):F1} µs each");
            return 0;
        }

        if (op == "lifecycle")
        {
            return Lifecycle(n);
        }

        using BufferPool pool = BufferPool.Create(BenchNames.Pool("hotloop"), capacity: 8);
        using (BufferGuard g = pool.AcquireCpu(BenchNames.FrameBytes))
        {
            g.Span.Fill(1);
        }

        int live = pool.PreallocateCpu(BenchNames.FrameBytes, 1)[0];
        using BufferChannel channel = pool.Channel("hot", depth: 4);
        Action<int> body = op switch
        {
            "acquire" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    using BufferGuard g = pool.AcquireCpu(BenchNames.FrameBytes);
                }
            },
            "get" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    using BufferGuard g = pool.Get(live);
                }
            },
            "acquire-ref" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    using BufferRef b = pool.AcquireCpuRef(BenchNames.FrameBytes);
                }
            },
            "get-ref" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    using BufferRef b = pool.GetRef(live);
                }
            },
            "send-receive-ref" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    channel.Send(pool.AcquireCpuRef(BenchNames.FrameBytes));
                    using BufferRef b = channel.ReceiveRef();
                }
            },
            "describe-send-receive-ref" => count =>
            {
                var spec = new TensorSpec(ElementType.UInt8, 1080, 1920, 3); // the handoff's frame and per-frame steps
                for (int i = 0; i < count; i++)
                {
                    BufferRef g = pool.AcquireCpuRef(BenchNames.FrameBytes);
                    g.SetDescription(new BufferDescription(spec, (ulong)i, BufferDescription.MonotonicNowNs()));
                    channel.Send(g);
                    using BufferRef b = channel.ReceiveRef();
                    _ = b.Description!.Value.Seq;
                }
            },
            "addref" => count =>
            {
                for (int i = 0; i < count; i++)
                {
                    _ = pool.AddRef(live);
                    _ = pool.Release(live);
                }
            },
            "refcount" => count =>
            {
                int sum = 0;
                for (int i = 0; i < count; i++)
                {
                    sum += pool.RefCount(live);
                }

                GC.KeepAlive(sum);
            },
            _ => throw new ArgumentException($"hot-loop: unknown operation '{op}'"),
        };

        body(n); // warm-up: tier-up and OSR happen here, outside the window
        Thread.Sleep(300);
        body(Math.Min(n, 100_000));
        GC.Collect();
        Marker("xmem-hot-loop:begin\n");
        long t0 = Stopwatch.GetTimestamp();
        body(n);
        TimeSpan elapsed = Stopwatch.GetElapsedTime(t0);
        Marker("xmem-hot-loop:end\n");
        Console.WriteLine($"hot-loop {op}: {n} ops, {elapsed.TotalNanoseconds / Math.Max(n, 1):F1} ns/op, gen0 GCs so far {GC.CollectionCount(0)}");
        return 0;
    }

    /// <summary>Writes a marker straight to fd 2 with one write(2), visible in strace output.</summary>
    private static void Marker(string text)
    {
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes(text);
        fixed (byte* p = bytes)
        {
            BenchLibc.WriteExactly(2, p, bytes.Length);
        }
    }

    /// <summary>Create, Open and Dispose timed one by one (median of N): the halves that the Create+Dispose and
    /// Open+Dispose benchmarks measure together.</summary>
    private static int Lifecycle(int n)
    {
        foreach (int capacity in new[] { 16, 1024 })
        {
            string name = BenchNames.Pool($"life{capacity}");
            string openName = BenchNames.Pool($"lifeopen{capacity}");
            using BufferPool keeper = BufferPool.Create(openName, capacity);
            var create = new double[n];
            var disposeLast = new double[n];
            var open = new double[n];
            var detach = new double[n];
            long createBytes = 0, openBytes = 0;
            var faults = new long[4];
            for (int round = -Math.Min(n, 50); round < n; round++)
            {
                long f0 = BenchLibc.ThreadMinorFaults();
                long a0 = GC.GetAllocatedBytesForCurrentThread();
                long t0 = Stopwatch.GetTimestamp();
                BufferPool p = BufferPool.Create(name, capacity);
                long t1 = Stopwatch.GetTimestamp();
                long a1 = GC.GetAllocatedBytesForCurrentThread();
                long f1 = BenchLibc.ThreadMinorFaults();
                p.Dispose();
                long f2 = BenchLibc.ThreadMinorFaults();
                long a2 = GC.GetAllocatedBytesForCurrentThread();
                long t2 = Stopwatch.GetTimestamp();
                BufferPool q = BufferPool.Open(openName);
                long t3 = Stopwatch.GetTimestamp();
                long a3 = GC.GetAllocatedBytesForCurrentThread();
                long f3 = BenchLibc.ThreadMinorFaults();
                createBytes = a1 - a0;
                openBytes = a3 - a2;
                q.Dispose();
                long t4 = Stopwatch.GetTimestamp();
                long f4 = BenchLibc.ThreadMinorFaults();
                if (round >= 0)
                {
                    faults[0] += f1 - f0;
                    faults[1] += f2 - f1;
                    faults[2] += f3 - f2;
                    faults[3] += f4 - f3;
                    create[round] = Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds;
                    disposeLast[round] = Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds;
                    open[round] = Stopwatch.GetElapsedTime(t2, t3).TotalMicroseconds;
                    detach[round] = Stopwatch.GetElapsedTime(t3, t4).TotalMicroseconds;
                }
            }

            Console.WriteLine($"capacity {capacity}: median of {n}: Create {Handoff.RunStats.Median(create):F1} µs, Dispose (last process, removes) {Handoff.RunStats.Median(disposeLast):F1} µs, Open {Handoff.RunStats.Median(open):F1} µs, Dispose (detach) {Handoff.RunStats.Median(detach):F1} µs; allocated: Create {createBytes:N0} B, Open {openBytes:N0} B; minor page faults per call: Create {(double)faults[0] / n:F1}, Dispose (last) {(double)faults[1] / n:F1}, Open {(double)faults[2] / n:F1}, Dispose (detach) {(double)faults[3] / n:F1}");
        }

        return 0;
    }
}
