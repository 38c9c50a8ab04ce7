namespace Xmem.Cli.Demo;

/// <summary>Turns the consumers' reports of a demo run into its <see cref="DemoResult"/>, refusing any report that
/// shows a frame lost, repeated, reordered or corrupt.</summary>
internal static class DemoEvaluation
{
    /// <summary>Checks the consumers' reports (every frame checked exactly once per consumer that had to, nothing
    /// corrupt) and computes the figures.</summary>
    internal static DemoResult Evaluate(DemoOptions options, IReadOnlyList<ConsumerProcess> consumers, string name, int warmup, long timedStartNs)
    {
        int total = warmup + options.Frames;
        long size = options.Shape.Bytes;
        var timesChecked = new int[total];
        var latencies = new List<long>(options.Frames * (options.FanOut ? consumers.Count : 1));
        long lastDoneNs = timedStartNs;
        var perConsumer = new List<DemoConsumerResult>();
        foreach (ConsumerProcess c in consumers)
        {
            ConsumerReport r = c.Report!;
            string who = $"consumer {c.Index}{(c.IsPython ? " (python)" : "")}";
            if (r.MismatchSeq is { } bad)
            {
                throw new InvalidDataException($"{who} found frame {bad} corrupt at byte {r.MismatchOffset}");
            }

            if (r.Error is not null)
            {
                throw new InvalidDataException($"{who} failed: {r.Error}");
            }

            if (r.Seqs.Length != r.LatencyNs.Length || r.Seqs.Length != r.DoneNs.Length)
            {
                throw new InvalidDataException($"{who} sent a malformed report ({r.Seqs.Length} seqs, {r.LatencyNs.Length} latencies, {r.DoneNs.Length} times)");
            }

            int timed = 0;
            long previous = -1;
            for (int i = 0; i < r.Seqs.Length; i++)
            {
                long seq = r.Seqs[i];
                if (seq < 0 || seq >= total || (options.FanOut && seq != previous + 1))
                {
                    throw new InvalidDataException($"{who} received frame {seq} after frame {previous}: frames were lost, repeated or reordered");
                }

                previous = seq;
                timesChecked[seq]++;
                if (seq >= warmup)
                {
                    timed++;
                    latencies.Add(r.LatencyNs[i]);
                    lastDoneNs = Math.Max(lastDoneNs, r.DoneNs[i]);
                }
            }

            if (r.BytesChecked != r.Seqs.Length * size)
            {
                throw new InvalidDataException($"{who} checked {r.BytesChecked:N0} bytes of {r.Seqs.Length} frames of {size:N0} bytes");
            }

            perConsumer.Add(new DemoConsumerResult { Index = c.Index, Runtime = r.Runtime, Pid = c.Process.Id, Frames = timed, View = r.View });
        }

        int expected = options.FanOut ? consumers.Count : 1;
        for (int seq = 0; seq < total; seq++)
        {
            if (timesChecked[seq] != expected)
            {
                throw new InvalidDataException($"frame {seq} was checked {timesChecked[seq]} times, not {expected}");
            }
        }

        latencies.Sort();
        double seconds = (lastDoneNs - timedStartNs) / 1e9;
        return new DemoResult
        {
            Pool = name,
            Mode = options.FanOut ? "fanout" : "queue",
            Frames = options.Frames,
            WarmupFrames = warmup,
            Consumers = consumers.Count,
            FrameBytes = size,
            Shape = options.Shape.Dims,
            ContentType = options.Shape.ContentType,
            Capacity = options.Capacity,
            Depth = options.Depth,
            Seconds = seconds,
            FramesPerSecond = options.Frames / seconds,
            MicrosecondsPerFrame = seconds * 1e6 / options.Frames,
            GigabytesPerSecond = options.Frames * (double)size / seconds / 1e9,
            LatencyP50Microseconds = Percentile(latencies, 0.50) / 1e3,
            LatencyP99Microseconds = Percentile(latencies, 0.99) / 1e3,
            FramesChecked = latencies.Count,
            BytesVerified = latencies.Count * size,
            PerConsumer = [.. perConsumer],
            PoolRemoved = false,
        };
    }

    /// <summary>The nearest-rank percentile of sorted <paramref name="sorted"/>.</summary>
    private static double Percentile(List<long> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];
}
