using System.Runtime.InteropServices;
using System.Text.Json;

namespace Xmem.Cli.Demo;

/// <summary>The demo's consumer process (<c>xmem __consumer</c>): attaches to the pool, receives frames from its
/// channel (or its fan-out subscription), reads each frame's description, measures the handoff latency, checks every
/// byte against the pattern named by the description's sequence number, and reports to the producer at the end
/// (<see cref="DemoProtocol"/>).</summary>
internal static class DemoConsumer
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    internal static int Run(string poolName, ChannelMode mode, int depth)
    {
        // Ctrl+C reaches the whole process group; the producer coordinates the shutdown, so a signal here only asks
        // to stop after the current frame.
        var lifeline = new Lifeline();
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; lifeline.Stop(); });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; lifeline.Stop(); });
        lifeline.Start();

        ConsumerReport? report;
        using (BufferPool pool = BufferPool.Open(poolName))
        using (BufferChannel channel = pool.Channel(DemoProtocol.ChannelName, depth, mode))
        using (ChannelSubscription? subscription = mode == ChannelMode.FanOut ? channel.Subscribe() : null)
        {
            Console.Out.WriteLine(DemoProtocol.ReadyLine);
            Console.Out.Flush();
            report = Consume(channel, subscription, lifeline);
        }

        if (report is null)
        {
            if (lifeline.ProducerDied)
            {
                RemoveAfterProducerDied(poolName);
                return ExitCodes.Error;
            }

            return ExitCodes.Ok; // asked to stop: the producer reports
        }

        Console.Out.WriteLine(DemoProtocol.ResultPrefix + JsonSerializer.Serialize(report, DemoJsonContext.Default.ConsumerReport));
        Console.Out.Flush();
        if (report.MismatchSeq is { } seq)
        {
            Console.Error.WriteLine($"xmem __consumer: frame {seq} differs from its pattern at byte {report.MismatchOffset}.");
            return ExitCodes.Error;
        }

        return report.Error is null ? ExitCodes.Ok : ExitCodes.Error;
    }

    /// <summary>Receives until the end-of-stream buffer; null when stopped (or orphaned) before it.</summary>
    private static ConsumerReport? Consume(BufferChannel channel, ChannelSubscription? subscription, Lifeline lifeline)
    {
        var seqs = new List<long>(1024);
        var latencies = new List<long>(1024);
        var dones = new List<long>(1024);
        long bytes = 0;
        while (!lifeline.Stopped)
        {
            BufferGuard? frame;
#pragma warning disable CA2000 // null when not got; else disposed by the using below (the analyzer loses that across the loop)
            bool got = subscription is not null ? subscription.TryReceive(Poll, out frame) : channel.TryReceive(Poll, out frame);
#pragma warning restore CA2000
            if (!got)
            {
                continue;
            }

            using (frame)
            {
                long received = BufferDescription.MonotonicNowNs();
                BufferDescription? d = frame!.Description;
                string? problem = null;
                if (d is not { } description)
                {
                    problem = $"slot {frame.MetaIndex} arrived without a description";
                }
                else if (description.ContentType == DemoProtocol.EndContentType)
                {
                    return Report(seqs, latencies, dones, bytes, null, null, null);
                }
                else if (description.Tensor is not { } tensor || tensor.RequiredBytes > frame.Size)
                {
                    problem = $"frame {description.Seq} is not described as a tensor that fits its {frame.Size} bytes";
                }
                else
                {
                    long seq = (long)description.Seq;
                    long mismatch = FramePattern.FindMismatch(frame.ReadOnlySpan[..(int)tensor.RequiredBytes], seq);
                    seqs.Add(seq);
                    latencies.Add(received - description.TimestampNs);
                    if (mismatch >= 0)
                    {
                        dones.Add(BufferDescription.MonotonicNowNs());
                        return Report(seqs, latencies, dones, bytes, seq, mismatch, null);
                    }

                    bytes += tensor.RequiredBytes;
                }

                if (problem is not null)
                {
                    return Report(seqs, latencies, dones, bytes, null, null, problem);
                }
            }

            dones.Add(BufferDescription.MonotonicNowNs()); // checked and released
        }

        return null;
    }

    private static ConsumerReport Report(List<long> seqs, List<long> latencies, List<long> dones, long bytes, long? mismatchSeq, long? mismatchOffset, string? error) => new()
    {
        Runtime = "dotnet",
        Seqs = [.. seqs],
        LatencyNs = [.. latencies],
        DoneNs = [.. dones],
        BytesChecked = bytes,
        MismatchSeq = mismatchSeq,
        MismatchOffset = mismatchOffset,
        Error = error,
    };

    /// <summary>The producer died: it cannot remove the pool, so the last consumer to detach does. Detaching already
    /// removes a pool with no live process left, but the kernel may close the dead producer's pipe (which ended our
    /// loop) a moment before the descriptor whose lock marks it alive, so look again for a short while.</summary>
    private static void RemoveAfterProducerDied(string poolName)
    {
        long deadline = Environment.TickCount64 + 2000;
        while (!BufferPool.RemoveIfStale(poolName) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(20);
        }
    }

    /// <summary>The consumer's stdin, read on a thread of its own: <see cref="DemoProtocol.StopLine"/> (or a signal)
    /// stops the consumer; end of file without it means the producer died, which stops it too.</summary>
    private sealed class Lifeline
    {
        private volatile bool _stopped;
        private volatile bool _producerDied;

        internal bool Stopped => _stopped;

        internal bool ProducerDied => _producerDied;

        internal void Stop() => _stopped = true;

        internal void Start()
        {
            var reader = new Thread(Read) { IsBackground = true, Name = "xmem __consumer lifeline" };
            reader.Start();
        }

        private void Read()
        {
            try
            {
                using var stdin = new StreamReader(Console.OpenStandardInput());
                while (stdin.ReadLine() is { } line)
                {
                    if (line == DemoProtocol.StopLine)
                    {
                        _stopped = true;
                        return;
                    }
                }
            }
            catch (IOException)
            {
                // a broken pipe: the producer is gone
            }

            if (!_stopped)
            {
                _producerDied = true;
                _stopped = true;
            }
        }
    }
}
