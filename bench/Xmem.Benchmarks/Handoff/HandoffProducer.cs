using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using Xmem.Benchmarks.Interop;
using Xmem.Interop;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// The producer → consumer handoff benchmark of /work/shared/benchmark-protocol.md, with xmem: the producer
/// acquires a frame-sized buffer from the pool, stamps it, hands its reference off (<see cref="BufferGuard.Forget"/>)
/// and sends the meta index over a pipe to a consumer process. Lockstep and stream modes, then the floors measured
/// in the same run. Usage: <c>handoff [--runs N] [--frames N] [--stream-frames N] [--warmup N]
/// [--producer-cpu C] [--consumer-cpu C] [--no-pin] [--timeout-s S]</c>.
/// </summary>
internal static unsafe class HandoffProducer
{
    private const int InFlight = 4;

    private sealed class Options
    {
        internal int Runs = 5;
        internal int Frames = 500;
        internal int StreamFrames = 1000;
        internal int Warmup = 200;
        internal int ProducerCpu = 0;
        internal int ConsumerCpu = 1;
        internal bool Pin = true;
        internal int TimeoutS = 300;
        internal int FloorRounds = 2000;
    }

    internal static int Run(string[] args)
    {
        Options o = Parse(args);
        if (Environment.ProcessorCount < 2)
        {
            o.Pin = false;
        }

        if (o.Pin && !BenchLibc.PinCurrentThread(o.ProducerCpu))
        {
            Console.Error.WriteLine($"producer: could not pin to CPU {o.ProducerCpu}; running unpinned");
        }

        string poolName = Micro.BenchNames.Pool("handoff");
        using BufferPool pool = BufferPool.Create(poolName, capacity: InFlight);
        PreFault(pool);
        using ShmScratch futex = ShmScratch.Create(Micro.BenchNames.Object("futex"));

        int* cmdPipe = stackalloc int[2];
        int* replyPipe = stackalloc int[2];
        if (BenchLibc.Pipe(cmdPipe) != 0 || BenchLibc.Pipe(replyPipe) != 0)
        {
            throw new IOException($"pipe failed: errno {Marshal.GetLastPInvokeError()}");
        }

        using Process consumer = StartConsumer(poolName, cmdPipe[0], replyPipe[1], o.Pin ? o.ConsumerCpu : -1, futex.Path);
        // The child has its ends now; closing ours makes a dead child read as end of file instead of a hang.
        _ = BenchLibc.Close(cmdPipe[0]);
        _ = BenchLibc.Close(replyPipe[1]);
        int cmdFd = cmdPipe[1], replyFd = replyPipe[0];
        using var watchdog = new Timer(
            _ =>
            {
                Console.Error.WriteLine($"handoff: watchdog fired after {o.TimeoutS} s; killing the consumer");
                try
                {
                    consumer.Kill();
                }
                catch (InvalidOperationException)
                {
                }

                Environment.Exit(3);
            },
            null,
            TimeSpan.FromSeconds(o.TimeoutS),
            Timeout.InfiniteTimeSpan);

        var report = new Report();
        int seq = 0;
        uint futexValue = 0;
        GCSettings.LatencyMode = GCLatencyMode.SustainedLowLatency;

        // Warm-up: JIT both sides' paths to their final tier, map every slot in the consumer, fault in the floors.
        for (int w = 0; w < 3; w++)
        {
            _ = Lockstep(pool, cmdFd, replyFd, o.Warmup, ref seq, null);
            _ = Stream(pool, cmdFd, replyFd, o.Warmup, ref seq);
            _ = PipeRoundTrip(cmdFd, replyFd, o.FloorRounds / 4);
            _ = FutexRoundTrip(futex, cmdFd, ref futexValue, o.FloorRounds / 4);
        }

        Thread.Sleep(200); // let tiered compilation install the optimized code
        for (int run = 0; run < o.Runs; run++)
        {
            GC.Collect();
            _ = Lockstep(pool, cmdFd, replyFd, o.Frames, ref seq, report);
            double fps = Stream(pool, cmdFd, replyFd, o.StreamFrames, ref seq);
            report.Fps.Add(fps);
            report.StreamFrameTime.Add(1e9 / fps);
            report.SharedAtomic.Add(SharedAtomicIncrement(futex));
            report.FutexRtt.Add(FutexRoundTrip(futex, cmdFd, ref futexValue, o.FloorRounds));
            report.PipeRtt.Add(PipeRoundTrip(cmdFd, replyFd, o.FloorRounds));
            report.Memcpy.Add(Memcpy());
        }

        Command quit = new() { Op = Command.OpQuit };
        BenchLibc.WriteExactly(cmdFd, &quit, sizeof(Command));
        if (!consumer.WaitForExit(10_000))
        {
            consumer.Kill();
        }

        _ = BenchLibc.Close(cmdFd);
        _ = BenchLibc.Close(replyFd);
        report.Print(o, consumer.HasExited ? consumer.ExitCode : -1);
        return report.Failures == 0 ? 0 : 1;
    }

    private static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 1; i < args.Length; i++)
        {
            string a = args[i];
            int Next() => int.Parse(args[++i], CultureInfo.InvariantCulture);
            switch (a)
            {
                case "--runs": o.Runs = Next(); break;
                case "--frames": o.Frames = Next(); break;
                case "--stream-frames": o.StreamFrames = Next(); break;
                case "--warmup": o.Warmup = Next(); break;
                case "--producer-cpu": o.ProducerCpu = Next(); break;
                case "--consumer-cpu": o.ConsumerCpu = Next(); break;
                case "--floor-rounds": o.FloorRounds = Next(); break;
                case "--timeout-s": o.TimeoutS = Next(); break;
                case "--no-pin": o.Pin = false; break;
                default: throw new ArgumentException($"handoff: unknown option '{a}'");
            }
        }

        return o;
    }

    /// <summary>Gives every slot its frame-sized memory and touches every page, so no timed frame pays a first touch
    /// in the producer (the consumer maps each slot once during warm-up).</summary>
    private static void PreFault(BufferPool pool)
    {
        var guards = new BufferGuard[InFlight];
        for (int i = 0; i < InFlight; i++)
        {
            guards[i] = pool.AcquireCpu(Frame.Bytes);
            guards[i].Span.Clear();
        }

        foreach (BufferGuard g in guards)
        {
            g.Dispose();
        }
    }

    private static Process StartConsumer(string poolName, int cmdRead, int replyWrite, int cpu, string futexPath)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo { FileName = self, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(HandoffProducer).Assembly.Location); // run as `dotnet Xmem.Benchmarks.dll`
        }

        foreach (string a in new[] { "handoff-consumer", poolName, cmdRead.ToString(CultureInfo.InvariantCulture), replyWrite.ToString(CultureInfo.InvariantCulture), cpu.ToString(CultureInfo.InvariantCulture), futexPath })
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the consumer process");
    }

    /// <summary>Lockstep: one frame at a time, the producer waits for the consumer's reply before the next.</summary>
    private static int Lockstep(BufferPool pool, int cmdFd, int replyFd, int frames, ref int seq, Report? report)
    {
        var acquire = new long[frames];
        var stamp = new long[frames];
        var send = new long[frames];
        var deliver = new long[frames];
        var checksum = new long[frames];
        var oneWay = new long[frames];
        var roundTrip = new long[frames];
        int failures = 0;
        Command cmd = new() { Op = Command.OpFrame };
        Reply reply;
        for (int i = 0; i < frames; i++)
        {
            int s = seq++;
            long t0 = MonotonicClock.NowNs();
            BufferGuard g = pool.AcquireCpu(Frame.Bytes);
            long t1 = MonotonicClock.NowNs();
            Frame.Stamp((byte*)g.CpuPointer, s);
            long t2 = MonotonicClock.NowNs();
            cmd.Seq = s;
            cmd.Meta = g.MetaIndex;
            g.Forget(); // the reference is now in flight, for the consumer to take over
            BenchLibc.WriteExactly(cmdFd, &cmd, sizeof(Command));
            long t3 = MonotonicClock.NowNs();
            BenchLibc.ReadExactly(replyFd, &reply, sizeof(Reply));
            long t4 = MonotonicClock.NowNs();
            if (reply.Seq != s || reply.Ok != 1)
            {
                failures++;
            }

            acquire[i] = t1 - t0;
            stamp[i] = t2 - t1;
            send[i] = t3 - t2;
            deliver[i] = reply.TRecvNs - t3;
            checksum[i] = reply.TDoneNs - reply.TRecvNs;
            oneWay[i] = reply.TDoneNs - t0;
            roundTrip[i] = t4 - t0;
        }

        if (report is not null)
        {
            report.Acquire.Add(RunStats.MedianNs(acquire));
            report.Stamp.Add(RunStats.MedianNs(stamp));
            report.Send.Add(RunStats.MedianNs(send));
            report.Deliver.Add(RunStats.MedianNs(deliver));
            report.Checksum.Add(RunStats.MedianNs(checksum));
            report.OneWay.Add(RunStats.MedianNs(oneWay));
            report.RoundTrip.Add(RunStats.MedianNs(roundTrip));
            report.Failures += failures;
            report.Frames += frames;
        }

        return failures;
    }

    /// <summary>Stream: back to back, at most <see cref="InFlight"/> frames in flight (the pool has that many slots,
    /// and TryAcquireCpu sleeps until the consumer frees one). Returns frames per second.</summary>
    private static double Stream(BufferPool pool, int cmdFd, int replyFd, int frames, ref int seq)
    {
        Command cmd = new() { Op = Command.OpStreamFrame };
        long start = MonotonicClock.NowNs();
        for (int i = 0; i < frames; i++)
        {
            int s = seq++;
            if (!pool.TryAcquireCpu(Frame.Bytes, TimeSpan.FromSeconds(10), out BufferGuard? g))
            {
                throw new TimeoutException("stream: no slot came free in 10 s (the consumer stopped?)");
            }

            Frame.Stamp((byte*)g.CpuPointer, s);
            cmd.Seq = s;
            cmd.Meta = g.MetaIndex;
            g.Forget();
            BenchLibc.WriteExactly(cmdFd, &cmd, sizeof(Command));
        }

        Command end = new() { Op = Command.OpStreamEnd };
        BenchLibc.WriteExactly(cmdFd, &end, sizeof(Command));
        Reply reply;
        BenchLibc.ReadExactly(replyFd, &reply, sizeof(Reply));
        long elapsed = MonotonicClock.NowNs() - start;
        if (reply.Seq != frames || reply.Ok != frames)
        {
            throw new InvalidOperationException($"stream: consumer saw {reply.Seq} frames, {reply.Ok} verified, of {frames}");
        }

        return frames * 1e9 / elapsed;
    }

    /// <summary>Floor: a 4-byte pipe round trip between the two processes (ns).</summary>
    private static double PipeRoundTrip(int cmdFd, int replyFd, int rounds)
    {
        Command cmd = new() { Op = Command.OpPipePing, Arg = rounds };
        BenchLibc.WriteExactly(cmdFd, &cmd, sizeof(Command));
        var samples = new long[rounds];
        int ping = 0;
        for (int i = 0; i < rounds; i++)
        {
            long t0 = MonotonicClock.NowNs();
            BenchLibc.WriteExactly(cmdFd, &i, 4);
            BenchLibc.ReadExactly(replyFd, &ping, 4);
            samples[i] = MonotonicClock.NowNs() - t0;
        }

        return RunStats.MedianNs(samples);
    }

    /// <summary>Floor: a futex wake round trip between the two processes (ns), both sides blocking in the kernel.</summary>
    private static double FutexRoundTrip(ShmScratch futex, int cmdFd, ref uint value, int rounds)
    {
        uint* word = (uint*)futex.Pointer;
        Volatile.Write(ref *word, value);
        Command cmd = new() { Op = Command.OpFutexPing, Meta = (int)value, Arg = rounds };
        BenchLibc.WriteExactly(cmdFd, &cmd, sizeof(Command));
        var samples = new long[rounds];
        for (int i = 1; i <= rounds; i++)
        {
            uint ping = value + (uint)(2 * i) - 1;
            long t0 = MonotonicClock.NowNs();
            Volatile.Write(ref *word, ping);
            _ = Libc.FutexWakeAll((nint)word);
            HandoffConsumer.WaitFor(word, ping + 1);
            samples[i - 1] = MonotonicClock.NowNs() - t0;
        }

        value += (uint)(2 * rounds);
        return RunStats.MedianNs(samples);
    }

    /// <summary>Floor: an atomic increment on a MAP_SHARED /dev/shm word (ns per increment, uncontended).</summary>
    private static double SharedAtomicIncrement(ShmScratch scratch)
    {
        long* counter = (long*)(scratch.Pointer + 64); // its own cache line, away from the futex word
        const int N = 1_000_000;
        long t0 = MonotonicClock.NowNs();
        for (int i = 0; i < N; i++)
        {
            _ = Interlocked.Increment(ref *counter);
        }

        return (MonotonicClock.NowNs() - t0) / (double)N;
    }

    /// <summary>Floor: a frame-sized memcpy between two pre-faulted buffers (ns, median of 21).</summary>
    private static double Memcpy()
    {
        nuint n = (nuint)Frame.Bytes;
        void* src = NativeMemory.AlignedAlloc(n, 4096);
        void* dst = NativeMemory.AlignedAlloc(n, 4096);
        try
        {
            NativeMemory.Fill(src, n, 1);
            NativeMemory.Fill(dst, n, 2);
            var samples = new long[21];
            for (int i = 0; i < samples.Length; i++)
            {
                long t0 = MonotonicClock.NowNs();
                Buffer.MemoryCopy(src, dst, (long)n, (long)n);
                samples[i] = MonotonicClock.NowNs() - t0;
            }

            return RunStats.MedianNs(samples);
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }
    }

    private sealed class Report
    {
        internal readonly Metric Acquire = new("acquire", "µs", 1000);
        internal readonly Metric Stamp = new("stamp (1519 pages)", "µs", 1000);
        internal readonly Metric Send = new("send (Forget + 16-byte pipe write)", "µs", 1000);
        internal readonly Metric Deliver = new("deliver (t_recv − send done: wake + Get + Release)", "µs", 1000);
        internal readonly Metric Checksum = new("checksum (1519 stamps)", "µs", 1000);
        internal readonly Metric OneWay = new("**one-way total (t_done − t0)**", "µs", 1000);
        internal readonly Metric RoundTrip = new("round trip", "µs", 1000);
        internal readonly Metric Fps = new("stream, ≤4 in flight", "frames/s", 1);
        internal readonly Metric StreamFrameTime = new("stream, time per frame", "µs", 1000);
        internal readonly Metric SharedAtomic = new("atomic increment on shared memory", "ns", 1);
        internal readonly Metric FutexRtt = new("futex wake round trip, 2 processes", "µs", 1000);
        internal readonly Metric PipeRtt = new("4-byte pipe round trip, 2 processes", "µs", 1000);
        internal readonly Metric Memcpy = new("memcpy of one frame (6,220,800 B)", "µs", 1000);
        internal int Failures;
        internal int Frames;

        internal void Print(Options o, int consumerExit)
        {
            Console.WriteLine($"# xmem handoff ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)");
            Console.WriteLine();
            Console.WriteLine($"frame 1920×1080×3 = {Frame.Bytes:N0} B ({Frame.Pages} pages); pool of {InFlight} slots; " +
                $"{o.Runs} runs × {o.Frames} lockstep frames and {o.StreamFrames} stream frames; warm-up 3 × {o.Warmup}; " +
                (o.Pin ? $"producer on CPU {o.ProducerCpu}, consumer on CPU {o.ConsumerCpu}" : "not pinned") +
                $"; send = Forget + pipe; floors {o.FloorRounds} round trips per run; {Environment.ProcessorCount} CPUs; .NET {Environment.Version}");
            Console.WriteLine();
            Console.WriteLine("| lockstep (per-run medians) | median | spread (min – max of runs) | unit |");
            Console.WriteLine("|---|---:|---:|---|");
            foreach (Metric m in new[] { Acquire, Stamp, Send, Deliver, Checksum, OneWay, RoundTrip })
            {
                Console.WriteLine(m.Row());
            }

            Console.WriteLine();
            Console.WriteLine("| stream | median | spread | unit |");
            Console.WriteLine("|---|---:|---:|---|");
            Console.WriteLine(Fps.Row());
            Console.WriteLine(StreamFrameTime.Row());
            Console.WriteLine();
            Console.WriteLine("| floors, same run | median | spread | unit |");
            Console.WriteLine("|---|---:|---:|---|");
            foreach (Metric m in new[] { SharedAtomic, FutexRtt, PipeRtt, Memcpy })
            {
                Console.WriteLine(m.Row());
            }

            Console.WriteLine();
            Console.WriteLine($"checksum failures: {Failures} of {Frames} recorded lockstep frames; consumer exit code {consumerExit}");
        }
    }
}
