using System.Globalization;
using System.Runtime;
using Xmem.Benchmarks.Interop;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// <c>channel-latency</c> (issue 6, "Speed"): send → receive latency of a <see cref="BufferChannel"/> between two
/// processes pinned to different CPUs, sleeping in the kernel and spinning (<see cref="BufferChannel.SpinDuration"/>),
/// beside the futex wake round trip, a spin round trip on a shared word and a 4-byte pipe round trip measured in the
/// same run; then the frames/s of a 6 MiB pipeline (the producer writes every byte of each frame, ≤ 4 in flight)
/// beside a 6 MiB memcpy. Ping-pong: the producer sends one 64-byte buffer on channel "ping" (stamping CLOCK_MONOTONIC
/// just before Send), the consumer stamps the moment Receive returns and sends the same buffer back on "pong"; one-way
/// = consumer's stamp − producer's stamp, round trip = the producer's time from Send to its Receive returning.
/// Usage: <c>channel-latency [--runs N] [--rounds N] [--spin-us U] [--pipeline-frames N] [--warmup N]
/// [--producer-cpu C] [--consumer-cpu C] [--no-pin] [--timeout-s S]</c>.
/// </summary>
internal static unsafe class ChannelLatency
{
    internal static int Run(string[] args)
    {
        int runs = 5, rounds = 2000, spinUs = 200, pipelineFrames = 1000, warmup = 500, producerCpu = 0, consumerCpu = 1, timeoutS = 300;
        bool pin = true;
        for (int i = 1; i < args.Length; i++)
        {
            int Next() => int.Parse(args[++i], CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--runs": runs = Next(); break;
                case "--rounds": rounds = Next(); break;
                case "--spin-us": spinUs = Next(); break;
                case "--pipeline-frames": pipelineFrames = Next(); break;
                case "--warmup": warmup = Next(); break;
                case "--producer-cpu": producerCpu = Next(); break;
                case "--consumer-cpu": consumerCpu = Next(); break;
                case "--timeout-s": timeoutS = Next(); break;
                case "--no-pin": pin = false; break;
                default: throw new ArgumentException($"channel-latency: unknown option '{args[i]}'");
            }
        }

        using var session = new ConsumerSession(pin, producerCpu, consumerCpu, timeoutS);
        GCSettings.LatencyMode = GCLatencyMode.SustainedLowLatency;
        var m = new Dictionary<string, (List<double> Median, List<double> P99)>();
        void Add(string key, long[] samples)
        {
            if (!m.TryGetValue(key, out var lists))
            {
                m[key] = lists = ([], []);
            }

            lists.Median.Add(RunStats.MedianNs(samples));
            lists.P99.Add(RunStats.Quantile(samples, 0.99));
        }

        var fpsSleep = new List<double>();
        var fpsSpin = new List<double>();
        var writeSleep = new List<HandoffProducer.StreamShares>();
        var writeSpin = new List<HandoffProducer.StreamShares>();
        var memcpy = new List<double>();
        int seq = 0;
        for (int w = 0; w < 2; w++)
        {
            _ = PingPong(session, warmup, 0, out _);
            _ = PingPong(session, warmup, spinUs, out _);
            _ = session.FutexRoundTrips(warmup, spin: false);
            _ = session.FutexRoundTrips(warmup, spin: true);
            _ = session.PipeRoundTrips(warmup);
            _ = HandoffProducer.Stream(session, true, 0, 100, ref seq, fill: true, out _);
            _ = HandoffProducer.Stream(session, true, spinUs, 100, ref seq, fill: true, out _);
        }

        Thread.Sleep(200); // let tiered compilation install the optimized code
        for (int run = 0; run < runs; run++)
        {
            GC.Collect();
            Add("chan-sleep-rtt", PingPong(session, rounds, 0, out long[] oneWaySleep));
            Add("chan-sleep-oneway", oneWaySleep);
            Add("chan-spin-rtt", PingPong(session, rounds, spinUs, out long[] oneWaySpin));
            Add("chan-spin-oneway", oneWaySpin);
            Add("futex-rtt", session.FutexRoundTrips(rounds, spin: false));
            Add("spin-rtt", session.FutexRoundTrips(rounds, spin: true));
            Add("pipe-rtt", session.PipeRoundTrips(rounds));
            fpsSleep.Add(HandoffProducer.Stream(session, true, 0, pipelineFrames, ref seq, fill: true, out HandoffProducer.StreamShares ws));
            writeSleep.Add(ws);
            fpsSpin.Add(HandoffProducer.Stream(session, true, spinUs, pipelineFrames, ref seq, fill: true, out HandoffProducer.StreamShares wp));
            writeSpin.Add(wp);
            memcpy.Add(ConsumerSession.Memcpy());
        }

        session.Dispose();

        string Us(double ns) => (ns / 1000).ToString(ns >= 10_000 ? "F1" : "F2", CultureInfo.InvariantCulture);
        double Med(List<double> xs) => RunStats.Median(xs.ToArray());
        string Row(string label, string key, double halve = 1)
        {
            var (med, p99) = m[key];
            return $"| {label} | {Us(Med(med) / halve)} | {Us(med.Min() / halve)} – {Us(med.Max() / halve)} | {Us(Med(p99) / halve)} |";
        }

        Console.WriteLine($"# xmem channel latency ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {HandoffProducer.LoadAverage()})");
        Console.WriteLine();
        Console.WriteLine($"{runs} runs × {rounds} round trips (warm-up 2 × {warmup}); 64-byte buffer on queue channels of depth 4; " +
            (session.Pinned ? $"producer on CPU {producerCpu}, consumer on CPU {consumerCpu}" : "not pinned") +
            $"; spinning = SpinDuration {spinUs} µs on both sides; pipeline {pipelineFrames} frames per run; {Environment.ProcessorCount} CPUs; .NET {Environment.Version}");
        Console.WriteLine();
        Console.WriteLine("| path (µs) | median | spread of run medians | p99 (median of runs) |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine(Row("**channel send → receive, sleeping**", "chan-sleep-oneway"));
        Console.WriteLine(Row("channel round trip, sleeping", "chan-sleep-rtt"));
        Console.WriteLine(Row("floor: futex wake round trip", "futex-rtt"));
        Console.WriteLine(Row("floor: futex wake, one way (round trip / 2)", "futex-rtt", 2));
        Console.WriteLine(Row("floor: 4-byte pipe round trip", "pipe-rtt"));
        Console.WriteLine(Row("**channel send → receive, spinning**", "chan-spin-oneway"));
        Console.WriteLine(Row("channel round trip, spinning", "chan-spin-rtt"));
        Console.WriteLine(Row("floor: spin round trip on a shared word", "spin-rtt"));
        Console.WriteLine();
        double sleepOneWay = Med(m["chan-sleep-oneway"].Median), futexRtt = Med(m["futex-rtt"].Median);
        Console.WriteLine($"sleeping: one-way / futex one-way = {sleepOneWay / (futexRtt / 2):F2}×; channel round trip / futex round trip = {Med(m["chan-sleep-rtt"].Median) / futexRtt:F2}× (target ≤ 2×)");
        Console.WriteLine($"spinning: one-way median {Us(Med(m["chan-spin-oneway"].Median))} µs (target < 1 µs); round trip / spin floor = {Med(m["chan-spin-rtt"].Median) / Med(m["spin-rtt"].Median):F1}×");
        Console.WriteLine();
        Console.WriteLine("| 6 MiB pipeline (producer copies each frame in, ≤ 4 in flight) | median | spread | µs per frame | producer's copy into the slot (median) | share of time writing | share waiting for a slot |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach ((string label, List<double> fps, List<HandoffProducer.StreamShares> wr) in new[] { ("consumer sleeping", fpsSleep, writeSleep), ("consumer spinning", fpsSpin, writeSpin) })
        {
            double f = Med(fps);
            Console.WriteLine($"| {label} | {f:F0} frames/s | {fps.Min():F0} – {fps.Max():F0} | {1e6 / f:F0} | {Us(Med(wr.Select(x => x.WriteMedianNs).ToList()))} µs | {Med(wr.Select(x => x.WriteShare).ToList()):P0} | {Med(wr.Select(x => x.AcquireShare).ToList()):P0} |");
        }

        double mc = Med(memcpy);
        Console.WriteLine($"| floor: memcpy of one frame, same run | {1e9 / mc:F0} frames/s | {1e9 / memcpy.Max():F0} – {1e9 / memcpy.Min():F0} | {Us(mc)} | | | |");
        Console.WriteLine();
        Console.WriteLine($"consumer exit code {session.ConsumerExitCode}");
        return session.ConsumerExitCode == 0 ? 0 : 1;
    }

    /// <summary>Ping-pong of one 64-byte buffer over the ping and pong channels; returns the round trips and, in
    /// <paramref name="oneWay"/>, the send → receive times of the ping leg.</summary>
    private static long[] PingPong(ConsumerSession session, int rounds, int spinUs, out long[] oneWay)
    {
        session.Ping.SpinDuration = session.Pong.SpinDuration = TimeSpan.FromMicroseconds(spinUs);
        session.Send(new Command { Op = Command.OpChanPong, Arg = rounds, Seq = spinUs });
        var sent = new long[rounds];
        var rtt = new long[rounds];
        BufferGuard g = session.Control.AcquireCpu(ConsumerSession.ControlBytes);
        for (int i = 0; i < rounds; i++)
        {
            long t0 = MonotonicClock.NowNs();
            session.Ping.Send(g);
            g = session.Pong.Receive();
            long t1 = MonotonicClock.NowNs();
            sent[i] = t0;
            rtt[i] = t1 - t0;
        }

        g.Dispose();
        var recv = new long[rounds];
        fixed (long* p = recv)
        {
            BenchLibc.ReadExactly(session.ReplyFd, p, rounds * sizeof(long));
        }

        oneWay = new long[rounds];
        for (int i = 0; i < rounds; i++)
        {
            oneWay[i] = recv[i] - sent[i];
        }

        return rtt;
    }
}
