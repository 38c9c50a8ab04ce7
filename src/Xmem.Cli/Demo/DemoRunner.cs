using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Xmem.Cli.Demo;

/// <summary>What <c>xmem demo</c> was asked to do.</summary>
internal sealed record DemoOptions(int Frames, int Consumers, long FrameSize, int Capacity, int Window, string? Name, bool Json);

/// <summary>The figures of one demo run (also its <c>--json</c> output).</summary>
internal sealed record DemoResult
{
    public required string Pool { get; init; }
    public required int Frames { get; init; }
    public required int WarmupFrames { get; init; }
    public required int Consumers { get; init; }
    public required long FrameBytes { get; init; }
    public required int Capacity { get; init; }
    public required int Window { get; init; }
    public required double Seconds { get; init; }
    public required double FramesPerSecond { get; init; }
    public required double MicrosecondsPerHandoff { get; init; }
    public required double GigabytesPerSecond { get; init; }
    public required double LatencyP50Microseconds { get; init; }
    public required double DeliverP50Microseconds { get; init; }
    public required long BytesVerified { get; init; }
    public required bool PoolRemoved { get; init; }
}

/// <summary>
/// <c>xmem demo</c>: this process creates a pool and produces frames; one or more consumer processes (this same
/// program, <c>xmem __consumer</c>) check every byte of every frame. Frames stream with at most
/// <see cref="DemoOptions.Window"/> in flight per consumer; a slot is reused only once every consumer released it.
/// The pool is removed at the end, also on Ctrl+C, SIGTERM or SIGHUP, and also when a consumer fails.
/// </summary>
internal sealed class DemoRunner(DemoOptions options)
{
    private const long StallLimitMs = 15_000;
    private const long ShutdownGraceMs = 2_000;

    private readonly CancellationTokenSource _cancel = new();
    private readonly List<Consumer> _consumers = [];
    private readonly Lock _killLock = new();
    private int _signal;
    private long _cancelledAt;
    private long _lastProgress = Environment.TickCount64;
    private volatile bool _stalled;

    private sealed class Consumer(int index, Process process, PipeFrameLink link)
    {
        internal int Index { get; } = index;
        internal Process Process { get; } = process;
        internal PipeFrameLink Link { get; } = link;
        internal long Sent { get; set; }
        internal long Acked { get; set; }
    }

    internal int Run()
    {
        using PosixSignalRegistration onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using PosixSignalRegistration onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using PosixSignalRegistration onHup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        string name = options.Name ?? $"xmem-demo-{Environment.ProcessId}";
        int warmup = Math.Min(2 * options.Capacity, 32);
        if (!options.Json)
        {
            Console.WriteLine($"xmem demo: 1 producer → {options.Consumers} consumer process{(options.Consumers == 1 ? "" : "es")}, {options.Frames} frames of {Units.DescribeFrame(options.FrameSize)}");
            Console.WriteLine($"  pool '{name}' in {SharedMemoryDirectory.Path}: {options.Capacity} slots, up to {options.Window} frames in flight, {warmup} warm-up frames");
        }

        BufferPool pool = BufferPool.Create(name, options.Capacity, persistent: false);
        ulong instance = Inspection.PoolInspector.Summarize(name).InstanceId;
        using var finished = new ManualResetEventSlim();
        var watchdog = new Thread(() => Watch(finished)) { IsBackground = true, Name = "xmem demo watchdog" };
        watchdog.Start();
        DemoResult? result = null;
        Exception? failure = null;
        string? failedConsumer = null;
        try
        {
            result = Produce(pool, name, warmup);
        }
        catch (Exception e) when (_cancel.IsCancellationRequested || _stalled || e is IOException)
        {
            // A broken pipe usually means a consumer died: give its exit status a moment to arrive, to say so.
            failure = e;
            failedConsumer = _cancel.IsCancellationRequested ? null : AwaitConsumerFailure(1000);
        }
        finally
        {
            finished.Set();
            Shutdown();
            pool.Dispose(); // the last process to detach removes a non-persistent pool
            RemoveIfStillOurs(name, instance);
        }

        bool removed = !BufferPool.Exists(name);
        if (_signal != 0)
        {
            if (!options.Json && !Console.IsOutputRedirected)
            {
                Console.WriteLine(); // end the progress line
            }

            Console.Error.WriteLine($"xmem demo: interrupted; pool '{name}' {(removed ? "removed" : "could not be removed: run `xmem gc`")}.");
            return 128 + _signal;
        }

        if (failure is not null || result is null)
        {
            string why = _stalled
                ? $"no frame was answered for {StallLimitMs / 1000} s; the consumers were stopped"
                : failedConsumer ?? failure?.Message ?? "unknown failure";
            throw new InvalidOperationException($"the demo failed: {why}. Pool '{name}' {(removed ? "was removed" : "is left: run `xmem gc`")}.");
        }

        result = result with { PoolRemoved = removed };
        Report(result);
        return ExitCodes.Ok;
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // shut down in order instead of dying with the pool left behind
        _signal = context.Signal switch { PosixSignal.SIGINT => 2, PosixSignal.SIGTERM => 15, PosixSignal.SIGHUP => 1, _ => 15 };
        Interlocked.CompareExchange(ref _cancelledAt, Environment.TickCount64, 0);
        _cancel.Cancel();
    }

    /// <summary>Stops the consumers (which unblocks every pipe read) when a shutdown takes too long or the pipeline
    /// stalls: every wait of the demo is bounded.</summary>
    private void Watch(ManualResetEventSlim finished)
    {
        while (!finished.Wait(200))
        {
            long now = Environment.TickCount64;
            long cancelledAt = Interlocked.Read(ref _cancelledAt);
            if (cancelledAt != 0 && now - cancelledAt > ShutdownGraceMs)
            {
                KillConsumers();
            }
            else if (now - Interlocked.Read(ref _lastProgress) > StallLimitMs)
            {
                _stalled = true;
                KillConsumers();
                _cancel.Cancel();
            }
        }
    }

    private DemoResult Produce(BufferPool pool, string name, int warmup)
    {
        CancellationToken ct = _cancel.Token;
        long size = options.FrameSize;

        // Create every slot's memory (pages reserved) before anything is timed, then hand the slots back, memory kept.
        foreach (int s in pool.PreallocateCpu(size, options.Capacity))
        {
            _ = pool.Release(s);
        }

        for (int i = 0; i < options.Consumers && !ct.IsCancellationRequested; i++)
        {
            var process = Process.Start(SelfProcess.StartInfo(["__consumer", "--name", name, "--size", size.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                ?? throw new InvalidOperationException("could not start a consumer process.");
            lock (_killLock)
            {
                _consumers.Add(new Consumer(i, process, new PipeFrameLink(process.StandardInput.BaseStream, process.StandardOutput.BaseStream)));
            }
        }

        foreach (Consumer c in _consumers)
        {
            FrameAck ready = c.Link.ReceiveAck();
            if (ready.Seq != FrameAck.ReadySeq)
            {
                throw new InvalidDataException($"consumer {c.Index} sent {ready.Seq} instead of its ready message.");
            }
        }

        Kick();
        int total = warmup + options.Frames;
        var startedAt = new long[total];
        var sentAt = new long[total];
        var latencies = new List<double>(options.Frames * options.Consumers);
        var delivers = new List<double>(options.Frames * options.Consumers);
        var progress = new ProgressLine(enabled: !options.Json && !Console.IsOutputRedirected);
        long timedStart = 0;
        long verified = 0;

        void HandleAck(Consumer c, FrameAck ack)
        {
            if (ack.Seq < 0 || ack.Seq >= total || ack.Seq != c.Acked)
            {
                throw new InvalidDataException($"consumer {c.Index} answered for frame {ack.Seq}, expected {c.Acked}.");
            }

            if (ack.MismatchOffset >= 0)
            {
                throw new InvalidDataException($"consumer {c.Index} found frame {ack.Seq} corrupt at byte {ack.MismatchOffset}.");
            }

            c.Acked++;
            Kick();
            if (ack.Seq >= warmup)
            {
                verified += size;
                latencies.Add(Stopwatch.GetElapsedTime(startedAt[ack.Seq], ack.DoneTimestamp).TotalMicroseconds);
                delivers.Add(Stopwatch.GetElapsedTime(sentAt[ack.Seq], ack.ReceivedTimestamp).TotalMicroseconds);
            }
        }

        for (long seq = 0; seq < total && !ct.IsCancellationRequested; seq++)
        {
            if (seq == warmup)
            {
                timedStart = Stopwatch.GetTimestamp();
            }

            foreach (Consumer c in _consumers)
            {
                while (c.Sent - c.Acked >= options.Window)
                {
                    HandleAck(c, c.Link.ReceiveAck());
                }
            }

            startedAt[seq] = Stopwatch.GetTimestamp();
            BufferGuard frame = Acquire(pool, size, ct);
            try
            {
                FramePattern.Fill(frame.Span, seq);
                for (int i = 0; i < _consumers.Count; i++)
                {
                    _ = pool.AddRef(frame.MetaIndex); // one in-flight reference per consumer, taken over by its guard
                }

                sentAt[seq] = Stopwatch.GetTimestamp();
                foreach (Consumer c in _consumers)
                {
                    c.Link.Send(new FrameNotice(frame.MetaIndex, seq, sentAt[seq]));
                    c.Sent++;
                }
            }
            finally
            {
                frame.Dispose();
            }

            if (seq >= warmup)
            {
                progress.Update(seq - warmup + 1, options.Frames, timedStart);
            }
        }

        foreach (Consumer c in _consumers)
        {
            while (c.Acked < c.Sent && !ct.IsCancellationRequested)
            {
                HandleAck(c, c.Link.ReceiveAck());
            }
        }

        long timedEnd = Stopwatch.GetTimestamp();
        progress.Clear();
        ct.ThrowIfCancellationRequested();

        double seconds = Stopwatch.GetElapsedTime(timedStart, timedEnd).TotalSeconds;
        return new DemoResult
        {
            Pool = name,
            Frames = options.Frames,
            WarmupFrames = warmup,
            Consumers = options.Consumers,
            FrameBytes = size,
            Capacity = options.Capacity,
            Window = options.Window,
            Seconds = seconds,
            FramesPerSecond = options.Frames / seconds,
            MicrosecondsPerHandoff = seconds * 1e6 / options.Frames,
            GigabytesPerSecond = options.Frames * (double)size / seconds / 1e9,
            LatencyP50Microseconds = Median(latencies),
            DeliverP50Microseconds = Median(delivers),
            BytesVerified = verified,
            PoolRemoved = false,
        };
    }

    /// <summary>Waits for a free slot in short, bounded waits, so that a signal or a dead consumer is noticed.</summary>
    private BufferGuard Acquire(BufferPool pool, long size, CancellationToken ct)
    {
        while (true)
        {
            if (pool.TryAcquireCpu(size, TimeSpan.FromMilliseconds(100), out BufferGuard? guard))
            {
                return guard;
            }

            ct.ThrowIfCancellationRequested();
            if (ConsumerFailure() is { } why)
            {
                throw new IOException(why);
            }
        }
    }

    private void Kick() => Interlocked.Exchange(ref _lastProgress, Environment.TickCount64);

    private string? ConsumerFailure()
    {
        lock (_killLock)
        {
            foreach (Consumer c in _consumers)
            {
                if (c.Process.HasExited)
                {
                    return $"consumer {c.Index} (pid {c.Process.Id}) exited with code {c.Process.ExitCode}";
                }
            }
        }

        return null;
    }

    private string? AwaitConsumerFailure(int milliseconds)
    {
        long deadline = Environment.TickCount64 + milliseconds;
        while (true)
        {
            string? why = ConsumerFailure();
            if (why is not null || Environment.TickCount64 > deadline)
            {
                return why;
            }

            Thread.Sleep(10);
        }
    }

    private void KillConsumers()
    {
        lock (_killLock)
        {
            foreach (Consumer c in _consumers)
            {
                try
                {
                    c.Process.Kill();
                }
                catch (InvalidOperationException)
                {
                    // already exited
                }
            }
        }
    }

    /// <summary>Closes every link (the consumers finish and exit), waits a little, then stops what is left.</summary>
    private void Shutdown()
    {
        foreach (Consumer c in _consumers)
        {
            try
            {
                c.Link.Complete();
            }
            catch (IOException)
            {
                // the consumer is gone already
            }
        }

        long deadline = Environment.TickCount64 + ShutdownGraceMs;
        foreach (Consumer c in _consumers)
        {
            int left = (int)Math.Max(0, deadline - Environment.TickCount64);
            if (!c.Process.WaitForExit(left))
            {
                KillConsumers();
                c.Process.WaitForExit();
            }
        }

        foreach (Consumer c in _consumers)
        {
            c.Link.Dispose();
        }
    }

    /// <summary>A killed consumer leaves its holdings segment behind; remove whatever is left of this pool
    /// instance (and only of this instance: the name may have been taken again since).</summary>
    private static void RemoveIfStillOurs(string name, ulong instance)
    {
        try
        {
            if (BufferPool.Exists(name) && Inspection.PoolInspector.Summarize(name).InstanceId == instance)
            {
                _ = BufferPool.Remove(name);
            }
        }
        catch (PoolNotFoundException)
        {
        }
    }

    private static double Median(List<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        values.Sort();
        int mid = values.Count / 2;
        return values.Count % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }

    private void Report(DemoResult r)
    {
        if (options.Json)
        {
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(r, Output.CliJsonContext.Default.DemoResult));
            return;
        }

        string each = r.Consumers == 1 ? "by the consumer" : $"by each of the {r.Consumers} consumers";
        Console.WriteLine($"  {r.Frames} frames handed over in {r.Seconds:0.000} s, every byte checked {each}");
        Console.WriteLine($"  frames/s          {r.FramesPerSecond,10:N1}");
        Console.WriteLine($"  µs per handoff    {r.MicrosecondsPerHandoff,10:N1}   (wall time per frame: acquire, fill, hand over, check, release)");
        Console.WriteLine($"  GB/s              {r.GigabytesPerSecond,10:N2}   (frame bytes per second)");
        Console.WriteLine($"  latency p50 µs    {r.LatencyP50Microseconds,10:N1}   (acquire → last byte checked, with up to {r.Window} frames queued)");
        Console.WriteLine($"  pool '{r.Pool}' {(r.PoolRemoved ? "removed" : "NOT removed: run `xmem gc`")}");
    }
}

/// <summary>The live progress line of the demo (only on a terminal), redrawn at most ten times a second.</summary>
internal sealed class ProgressLine(bool enabled)
{
    private long _lastDraw;
    private int _width;

    internal void Update(long done, long total, long startTimestamp)
    {
        long now = Stopwatch.GetTimestamp();
        if (!enabled || (done != total && Stopwatch.GetElapsedTime(_lastDraw, now).TotalMilliseconds < 100))
        {
            return;
        }

        _lastDraw = now;
        double seconds = Stopwatch.GetElapsedTime(startTimestamp, now).TotalSeconds;
        double fps = seconds > 0 ? done / seconds : 0;
        int barWidth = 24;
        int filled = (int)(barWidth * done / Math.Max(1, total));
        string line = $"  [{new string('#', filled)}{new string('.', barWidth - filled)}] frame {done}/{total}  {fps:N0} frames/s";
        _width = Math.Max(_width, line.Length);
        Console.Write("\r" + line.PadRight(_width));
    }

    internal void Clear()
    {
        if (enabled && _width > 0)
        {
            Console.Write("\r" + new string(' ', _width) + "\r");
        }
    }
}
