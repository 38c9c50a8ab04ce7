using System.Runtime.CompilerServices;
using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using Xmem.Benchmarks.Interop;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// The producer → consumer handoff benchmark of /work/shared/benchmark-protocol.md, with xmem: the producer
/// acquires a frame-sized buffer from the pool, stamps it and hands it to a consumer process, either through a
/// channel (<c>--transport channel</c>, the default: <see cref="BufferRef.SetDescription"/> with the sequence number,
/// then <see cref="BufferChannel.Send(BufferRef)"/>) or through a pipe (<c>--transport pipe</c>:
/// <see cref="BufferRef.Forget"/> and the meta index in a 16-byte pipe write). Both ends use the allocation-free
/// references (<see cref="BufferRef"/>: <c>AcquireCpuRef</c>, <c>ReceiveRef</c>), the form for a per-frame loop. The lockstep reply comes back over
/// the reply channel (a 64-byte buffer of a second pool) or the reply pipe (<c>--reply channel|pipe</c>; default:
/// the transport's). Lockstep and stream modes, then the floors measured in the same run. Usage: <c>handoff
/// [--transport channel|pipe] [--reply channel|pipe] [--spin-us U] [--runs N] [--frames N] [--stream-frames N]
/// [--warmup N] [--producer-cpu C] [--consumer-cpu C] [--no-pin] [--timeout-s S] [--result-lines]</c>.
/// <c>--result-lines</c> also prints every figure as the peers' <c>RESULT</c> line (<see cref="ResultLine"/>), named
/// <c>xmem.block.*</c> (channel, sleeping), <c>xmem.spin.*</c> (channel, <c>--spin-us</c> &gt; 0) or <c>xmem.pipe.*</c>
/// with the peers' stage names, for bench/compare.sh.
/// </summary>
internal static unsafe class HandoffProducer
{
    private const int InFlight = ConsumerSession.InFlight;
    private static readonly TensorSpec FrameSpec = new(ElementType.UInt8, 1080, 1920, 3);

    private sealed class Options
    {
        internal bool Channel = true;
        internal bool? ReplyChannel;
        internal int SpinUs;
        internal int Runs = 5;
        internal int Frames = 500;
        internal int StreamFrames = 1000;
        internal int Warmup = 200;
        internal int ProducerCpu = 0;
        internal int ConsumerCpu = 1;
        internal bool Pin = true;
        internal int TimeoutS = 300;
        internal int FloorRounds = 2000;
        internal bool ResultLines;

        internal bool Reply => ReplyChannel ?? Channel;
    }

    internal static int Run(string[] args)
    {
        Options o = Parse(args);
        using var session = new ConsumerSession(o.Pin, o.ProducerCpu, o.ConsumerCpu, o.TimeoutS);
        o.Pin = session.Pinned;
        session.Replies.SpinDuration = TimeSpan.FromMicroseconds(o.SpinUs);
        session.Pool.AcquireSpinDuration = TimeSpan.FromMicroseconds(o.SpinUs); // a stream's acquire waits for a slot
        var report = new Report();
        int seq = 0;
        GCSettings.LatencyMode = GCLatencyMode.SustainedLowLatency;

        // Warm-up: JIT both sides' paths to their final tier, map every slot in the consumer, fault in the floors.
        for (int w = 0; w < 3; w++)
        {
            _ = Lockstep(session, o, o.Warmup, ref seq, null);
            _ = Stream(session, o, o.Warmup, ref seq);
            _ = session.PipeRoundTrips(o.FloorRounds / 4);
            _ = session.FutexRoundTrips(o.FloorRounds / 4, spin: false);
        }

        Thread.Sleep(200); // let tiered compilation install the optimized code
        for (int run = 0; run < o.Runs; run++)
        {
            GC.Collect();
            _ = Lockstep(session, o, o.Frames, ref seq, report);
            double fps = Stream(session, o, o.StreamFrames, ref seq);
            report.Fps.Add(fps);
            report.StreamFrameTime.Add(1e9 / fps);
            report.SharedAtomic.Add(session.SharedAtomicIncrement());
            report.FutexRtt.Add(RunStats.MedianNs(session.FutexRoundTrips(o.FloorRounds, spin: false)));
            report.PipeRtt.Add(RunStats.MedianNs(session.PipeRoundTrips(o.FloorRounds)));
            report.Memcpy.Add(ConsumerSession.Memcpy());
        }

        session.Dispose();
        report.Print(o, session.ConsumerExitCode);
        return report.Failures == 0 ? 0 : 1;
    }

    private static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 1; i < args.Length; i++)
        {
            string a = args[i];
            int Next() => int.Parse(args[++i], CultureInfo.InvariantCulture);
            bool Way(string what) => args[++i] switch
            {
                "channel" => true,
                "pipe" => false,
                string x => throw new ArgumentException($"handoff: {what} must be channel or pipe, not '{x}'"),
            };
            switch (a)
            {
                case "--transport": o.Channel = Way(a); break;
                case "--reply": o.ReplyChannel = Way(a); break;
                case "--spin-us": o.SpinUs = Next(); break;
                case "--runs": o.Runs = Next(); break;
                case "--frames": o.Frames = Next(); break;
                case "--stream-frames": o.StreamFrames = Next(); break;
                case "--warmup": o.Warmup = Next(); break;
                case "--producer-cpu": o.ProducerCpu = Next(); break;
                case "--consumer-cpu": o.ConsumerCpu = Next(); break;
                case "--floor-rounds": o.FloorRounds = Next(); break;
                case "--timeout-s": o.TimeoutS = Next(); break;
                case "--no-pin": o.Pin = false; break;
                case "--result-lines": o.ResultLines = true; break;
                default: throw new ArgumentException($"handoff: unknown option '{a}'");
            }
        }

        if (o.SpinUs > 0 && !o.Channel)
        {
            throw new ArgumentException("handoff: --spin-us applies to the channel transport");
        }

        return o;
    }

    /// <summary>Lockstep: one frame at a time, the producer waits for the consumer's reply before the next.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    private static int Lockstep(ConsumerSession session, Options o, int frames, ref int seq, Report? report)
    {
        var acquire = new long[frames];
        var stamp = new long[frames];
        var describe = new long[frames];
        var send = new long[frames];
        var deliver = new long[frames];
        var checksum = new long[frames];
        var oneWay = new long[frames];
        var roundTrip = new long[frames];
        int failures = 0;
        BufferPool pool = session.Pool;
        Command cmd = new() { Op = Command.OpFrame };
        Reply reply;
        if (o.Channel)
        {
            session.Send(new Command { Op = Command.OpChanLockstep, Arg = frames, Meta = o.Reply ? 1 : 0, Seq = o.SpinUs });
        }

        for (int i = 0; i < frames; i++)
        {
            int s = seq++;
            long t0 = MonotonicClock.NowNs();
            BufferRef g = pool.AcquireCpuRef(Frame.Bytes);
            long t1 = MonotonicClock.NowNs();
            Frame.Stamp((byte*)g.CpuPointer, s);
            long t2 = MonotonicClock.NowNs();
            long t2b;
            if (o.Channel)
            {
                g.SetDescription(new BufferDescription(FrameSpec, (ulong)s, BufferDescription.MonotonicNowNs()));
                t2b = MonotonicClock.NowNs();
                session.Frames.Send(g); // g is spent: its reference now belongs to the channel
            }
            else
            {
                cmd.Seq = s;
                cmd.Meta = g.MetaIndex;
                g.Forget(); // the reference is now in flight, for the consumer to take over
                t2b = MonotonicClock.NowNs();
                session.Send(cmd);
            }

            long t3 = MonotonicClock.NowNs();
            if (o.Reply)
            {
                using BufferRef r = session.Replies.ReceiveRef();
                reply = *(Reply*)r.CpuPointer;
            }
            else
            {
                reply = session.ReadReply();
            }

            long t4 = MonotonicClock.NowNs();
            if (reply.Seq != s || reply.Ok != 1)
            {
                failures++;
            }

            acquire[i] = t1 - t0;
            stamp[i] = t2 - t1;
            describe[i] = t2b - t2;
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
            report.Describe.Add(RunStats.MedianNs(describe));
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
    private static double Stream(ConsumerSession session, Options o, int frames, ref int seq) =>
        Stream(session, o.Channel, o.SpinUs, frames, ref seq, fill: false, out _);

    /// <summary>Where a stream's time went, as shares of its elapsed time: the producer's writes (the 6 MiB copies,
    /// with <c>fill</c>), and its waits for a free slot (TryAcquireCpu).</summary>
    internal readonly record struct StreamShares(double WriteMedianNs, double WriteShare, double AcquireShare);

    /// <summary>Stream through the channel or the pipe. With <paramref name="fill"/> the producer writes the whole
    /// frame (a 6 MiB copy from a source frame) before stamping it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static double Stream(ConsumerSession session, bool channel, int spinUs, int frames, ref int seq, bool fill, out StreamShares shares)
    {
        long acquireTotal = 0;
        BufferPool pool = session.Pool;
        Command cmd = new() { Op = Command.OpStreamFrame };
        long[] writes = fill ? new long[frames] : [];
        byte* source = fill ? SourceFrame() : null;
        if (channel)
        {
            session.Send(new Command { Op = Command.OpChanStream, Arg = frames, Seq = spinUs });
        }

        long start = MonotonicClock.NowNs();
        for (int i = 0; i < frames; i++)
        {
            int s = seq++;
            long a0 = MonotonicClock.NowNs();
            if (!pool.TryAcquireCpuRef(Frame.Bytes, TimeSpan.FromSeconds(10), out BufferRef g))
            {
                throw new TimeoutException("stream: no slot came free in 10 s (the consumer stopped?)");
            }

            acquireTotal += MonotonicClock.NowNs() - a0;

            if (fill)
            {
                long w0 = MonotonicClock.NowNs();
                Buffer.MemoryCopy(source, (void*)g.CpuPointer, Frame.Bytes, Frame.Bytes);
                writes[i] = MonotonicClock.NowNs() - w0;
            }

            Frame.Stamp((byte*)g.CpuPointer, s);
            if (channel)
            {
                g.SetDescription(new BufferDescription(FrameSpec, (ulong)s, BufferDescription.MonotonicNowNs()));
                session.Frames.Send(g);
            }
            else
            {
                cmd.Seq = s;
                cmd.Meta = g.MetaIndex;
                g.Forget();
                session.Send(cmd);
            }
        }

        if (!channel)
        {
            session.Send(new Command { Op = Command.OpStreamEnd });
        }

        Reply reply = session.ReadReply();
        long elapsed = MonotonicClock.NowNs() - start;
        if (reply.Seq != frames || reply.Ok != frames)
        {
            throw new InvalidOperationException($"stream: consumer saw {reply.Seq} frames, {reply.Ok} verified, of {frames}");
        }

        shares = new StreamShares(fill ? RunStats.MedianNs(writes) : 0, fill ? writes.Sum() / (double)elapsed : 0, acquireTotal / (double)elapsed);
        return frames * 1e9 / elapsed;
    }

    private static byte* _source;

    /// <summary>A pre-faulted frame-sized source for the pipeline's writes (allocated once).</summary>
    private static byte* SourceFrame()
    {
        if (_source is null)
        {
            _source = (byte*)NativeMemory.AlignedAlloc((nuint)Frame.Bytes, 4096);
            NativeMemory.Fill(_source, (nuint)Frame.Bytes, 7);
        }

        return _source;
    }

    private sealed class Report
    {
        internal readonly Metric Acquire = new("acquire", "µs", 1000);
        internal readonly Metric Stamp = new("stamp (1519 pages)", "µs", 1000);
        internal readonly Metric Describe = new("of which SetDescription (seq) / Forget", "µs", 1000);
        internal readonly Metric Send = new("send", "µs", 1000);
        internal readonly Metric Deliver = new("deliver (t_recv − send done)", "µs", 1000);
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
            string transport = o.Channel
                ? $"send = SetDescription(seq) + BufferChannel.Send (queue channel, depth {InFlight}); consumer: Receive + Description" + (o.SpinUs > 0 ? $"; spin {o.SpinUs} µs" : "; no spinning")
                : "send = Forget + 16-byte pipe write; consumer: pipe read + Get + Release";
            string replyWay = o.Reply ? "reply channel (a 64-byte buffer of a second pool)" : "reply pipe (24 bytes)";
            Console.WriteLine($"# xmem handoff, {(o.Channel ? "channel" : "pipe")} transport ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {LoadAverage()})");
            Console.WriteLine();
            Console.WriteLine($"frame 1920×1080×3 = {Frame.Bytes:N0} B ({Frame.Pages} pages); pool of {InFlight} slots; " +
                $"{o.Runs} runs × {o.Frames} lockstep frames and {o.StreamFrames} stream frames; warm-up 3 × {o.Warmup}; " +
                (o.Pin ? $"producer on CPU {o.ProducerCpu}, consumer on CPU {o.ConsumerCpu}" : "not pinned") +
                $"; {transport}; lockstep reply over the {replyWay}; floors {o.FloorRounds} round trips per run; {Environment.ProcessorCount} CPUs; .NET {Environment.Version}");
            Console.WriteLine();
            Console.WriteLine("| lockstep (per-run medians) | median | spread (min – max of runs) | unit |");
            Console.WriteLine("|---|---:|---:|---|");
            foreach (Metric m in new[] { Acquire, Stamp, Send, Describe, Deliver, Checksum, OneWay, RoundTrip })
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
            if (o.ResultLines)
            {
                PrintResultLines(o);
            }
        }

        /// <summary>The figures again as the peers' RESULT lines: the same stage names as ../shared/peers
        /// (<c>lockstep.producer.acquire(per-run p50)</c>, …), so bench/compare.py pairs them stage by stage.</summary>
        private void PrintResultLines(Options o)
        {
            string peer = !o.Channel ? "xmem.pipe" : o.SpinUs > 0 ? "xmem.spin" : "xmem.block";
            (Metric Metric, string Name, string Unit)[] lines =
            [
                (Acquire, "lockstep.producer.acquire(per-run p50)", "us"),
                (Stamp, "lockstep.producer.stamp_pages(per-run p50)", "us"),
                (Send, "lockstep.producer.send(per-run p50)", "us"),
                (Describe, "lockstep.producer.send.describe_or_forget(per-run p50)", "us"),
                (Deliver, "lockstep.deliver(send_done->consumer_has_data)(per-run p50)", "us"),
                (Checksum, "lockstep.consumer.checksum(per-run p50)", "us"),
                (OneWay, "lockstep.one_way_total(per-run p50)", "us"),
                (RoundTrip, "lockstep.round_trip(ack back)(per-run p50)", "us"),
                (Fps, "stream.frames_per_s", "frames/s"),
                (StreamFrameTime, "stream.us_per_frame", "us"),
                (SharedAtomic, "floor.shared_atomic_increment", "ns"),
                (FutexRtt, "floor.futex_round_trip", "us"),
                (PipeRtt, "floor.pipe_round_trip", "us"),
                (Memcpy, "floor.memcpy_frame", "us"),
            ];
            Console.WriteLine();
            foreach ((Metric metric, string name, string unit) in lines)
            {
                if (metric.ResultLine($"{peer}.{name}", unit) is string line)
                {
                    Console.WriteLine(line);
                }
            }

            if (Failures > 0)
            {
                Console.WriteLine($"FAIL {peer}: {Failures} of {Frames} lockstep frames failed their checksum");
            }
        }
    }

    internal static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "?";
        }
    }
}
