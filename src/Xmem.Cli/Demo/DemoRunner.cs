using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Xmem.Cli.Demo;

/// <summary>Which consumers of <c>xmem demo</c> are Python processes.</summary>
internal enum PythonConsumers
{
    /// <summary>All are <c>xmem __consumer</c>.</summary>
    None,

    /// <summary>The last one is python/examples/consumer.py.</summary>
    One,

    /// <summary>All are python/examples/consumer.py.</summary>
    All,
}

/// <summary>What <c>xmem demo</c> was asked to do.</summary>
internal sealed record DemoOptions(int Frames, int Consumers, FrameShape Shape, int Capacity, int Depth, bool FanOut, PythonConsumers Python, string? Name, bool Json);

/// <summary>One consumer's part of a demo run (in <c>--json</c> output).</summary>
internal sealed record DemoConsumerResult
{
    public required int Index { get; init; }
    public required string Runtime { get; init; }
    public required int Pid { get; init; }
    public required int Frames { get; init; }
    public string? View { get; init; }
}

/// <summary>The figures of one demo run (also its <c>--json</c> output).</summary>
internal sealed record DemoResult
{
    public required string Pool { get; init; }
    public required string Mode { get; init; }
    public required int Frames { get; init; }
    public required int WarmupFrames { get; init; }
    public required int Consumers { get; init; }
    public required long FrameBytes { get; init; }
    public required long[] Shape { get; init; }
    public required string ContentType { get; init; }
    public required int Capacity { get; init; }
    public required int Depth { get; init; }
    public required double Seconds { get; init; }
    public required double FramesPerSecond { get; init; }
    public required double MicrosecondsPerFrame { get; init; }
    public required double GigabytesPerSecond { get; init; }
    public required double LatencyP50Microseconds { get; init; }
    public required double LatencyP99Microseconds { get; init; }
    public required long FramesChecked { get; init; }
    public required long BytesVerified { get; init; }
    public required DemoConsumerResult[] PerConsumer { get; init; }
    public required bool PoolRemoved { get; init; }
}

/// <summary>
/// <c>xmem demo</c>: this process creates a pool and a channel and produces described frames into it; consumer
/// processes (this same program as <c>xmem __consumer</c>, or python/examples/consumer.py) receive them, check every
/// byte and report at the end (<see cref="DemoProtocol"/>). In queue mode each frame goes to one consumer; in fan-out
/// mode to every consumer. The pool is removed at the end, also on Ctrl+C, SIGTERM or SIGHUP, and also when a
/// consumer fails or dies.
/// </summary>
internal sealed class DemoRunner(DemoOptions options)
{
    private const long StallLimitMs = 15_000;
    private const long ShutdownGraceMs = 2_000;
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    private readonly CancellationTokenSource _cancel = new();
    private readonly List<Consumer> _consumers = [];
    private readonly Lock _killLock = new();
    private int _signal;
    private long _cancelledAt;
    private long _lastProgress = Environment.TickCount64;
    private volatile bool _stalled;

    internal int Run()
    {
        using PosixSignalRegistration onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using PosixSignalRegistration onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using PosixSignalRegistration onHup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        PythonConsumer? python = options.Python == PythonConsumers.None ? null : PythonConsumer.Locate(); // before anything is made
        string name = options.Name ?? $"xmem-demo-{Environment.ProcessId}";
        int warmup = Math.Min(2 * options.Capacity, 32);
        if (!options.Json)
        {
            int py = PythonCount();
            string kinds = py == 0 ? "" : py == options.Consumers ? " (Python)" : $" ({py} in Python)";
            string mode = options.FanOut ? "fan-out: every consumer checks every frame" : "queue: each frame checked by one consumer";
            Console.WriteLine($"xmem demo: 1 producer → {options.Consumers} consumer process{(options.Consumers == 1 ? "" : "es")}{kinds}, {options.Frames} frames of {options.Shape.Describe()}");
            Console.WriteLine($"  pool '{name}' in {SharedMemoryDirectory.Path}: {options.Capacity} slots; channel '{DemoProtocol.ChannelName}' ({mode}), depth {options.Depth}");
            Console.WriteLine($"  frames described as uint8 {options.Shape.Tuple} '{options.Shape.ContentType}' with seq and CLOCK_MONOTONIC timestamp; {warmup} warm-up frames");
            if (python is not null)
            {
                Console.WriteLine($"  Python consumer: {python.ScriptPath} run by {python.Describe()}");
            }
        }

        BufferPool pool = BufferPool.Create(name, options.Capacity, persistent: false);
        ulong instance = Inspection.PoolInspector.Summarize(name).InstanceId;
        BufferChannel? channel = null;
        using var finished = new ManualResetEventSlim();
        var watchdog = new Thread(() => Watch(finished)) { IsBackground = true, Name = "xmem demo watchdog" };
        watchdog.Start();
        DemoResult? result = null;
        Exception? failure = null;
        string? failedConsumer = null;
        try
        {
            channel = pool.Channel(DemoProtocol.ChannelName, options.Depth, options.FanOut ? ChannelMode.FanOut : ChannelMode.Queue);
            result = Produce(pool, channel, name, warmup, python);
        }
        catch (Exception e) when (_cancel.IsCancellationRequested || _stalled || e is IOException)
        {
            failure = e;
            failedConsumer = _cancel.IsCancellationRequested ? null : AwaitConsumerFailure(1000);
        }
        finally
        {
            finished.Set();
            Shutdown();
            channel?.Dispose();
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
                ? $"no frame moved for {StallLimitMs / 1000} s; the consumers were stopped"
                : failedConsumer ?? failure?.Message ?? "unknown failure";
            throw new InvalidOperationException($"the demo failed: {why}. Pool '{name}' {(removed ? "was removed" : "is left: run `xmem gc`")}.");
        }

        result = result with { PoolRemoved = removed };
        Report(result);
        return ExitCodes.Ok;
    }

    private int PythonCount() => options.Python switch
    {
        PythonConsumers.All => options.Consumers,
        PythonConsumers.One => 1,
        _ => 0,
    };

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // shut down in order instead of dying with the pool left behind
        _signal = context.Signal switch { PosixSignal.SIGINT => 2, PosixSignal.SIGTERM => 15, PosixSignal.SIGHUP => 1, _ => 15 };
        Interlocked.CompareExchange(ref _cancelledAt, Environment.TickCount64, 0);
        _cancel.Cancel();
    }

    /// <summary>Stops the consumers when a shutdown takes too long or the pipeline stalls: every wait of the demo is
    /// bounded.</summary>
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

    private DemoResult Produce(BufferPool pool, BufferChannel channel, string name, int warmup, PythonConsumer? python)
    {
        CancellationToken ct = _cancel.Token;
        FrameShape shape = options.Shape;
        long size = shape.Bytes;
        TensorSpec spec = shape.Spec;
        string contentType = shape.ContentType;

        // Create every slot's memory (pages reserved) before anything is timed, then hand the slots back, memory kept.
        foreach (int s in pool.PreallocateCpu(size, options.Capacity))
        {
            _ = pool.Release(s);
        }

        int firstPython = options.Consumers - PythonCount();
        for (int i = 0; i < options.Consumers && !ct.IsCancellationRequested; i++)
        {
            bool isPython = i >= firstPython;
            ProcessStartInfo psi = isPython
                ? python!.StartInfo(name, options.Depth, options.FanOut, i)
                : SelfProcess.StartInfo(ConsumerArguments(name));
            var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start consumer {i} ({psi.FileName}).");
            var c = new Consumer(i, isPython, process);
            lock (_killLock)
            {
                _consumers.Add(c);
            }

            c.StartReading();
        }

        // Fan-out subscribers receive what is sent after they joined: wait until every consumer is ready.
        foreach (Consumer c in _consumers)
        {
            while (!c.Ready.Wait(Poll))
            {
                ct.ThrowIfCancellationRequested();
                ThrowIfConsumerFailed();
            }

            Kick();
        }

        int total = warmup + options.Frames;
        var progress = new ProgressLine(enabled: !options.Json && !Console.IsOutputRedirected);
        long timedStartNs = 0;
        long timedStart = 0;
        for (long seq = 0; seq < total; seq++)
        {
            ct.ThrowIfCancellationRequested();
            if (seq == warmup)
            {
                timedStart = Stopwatch.GetTimestamp();
                timedStartNs = BufferDescription.MonotonicNowNs();
            }

            BufferGuard frame = Acquire(pool, size, ct);
            try
            {
                FramePattern.Fill(frame.Span[..(int)size], seq);
                frame.SetDescription(spec, (ulong)seq, BufferDescription.MonotonicNowNs(), contentType, DemoProtocol.ProducerTag);
                Send(channel, frame, ct);
            }
            catch
            {
                frame.Dispose(); // not sent: still ours (a sent guard is spent and this does nothing)
                throw;
            }

            Kick();
            ThrowIfConsumerFailed(); // in a queue the others would go on: a dead consumer fails the run at once
            if (seq >= warmup)
            {
                progress.Update(seq - warmup + 1, options.Frames, timedStart);
            }
        }

        // The end of the stream: one marker per consumer in a queue (each takes one and stops), one for all in fan-out.
        int markers = options.FanOut ? 1 : _consumers.Count;
        for (int m = 0; m < markers; m++)
        {
            BufferGuard end = Acquire(pool, 1, ct);
            try
            {
                end.SetDescription(null, (ulong)total, null, DemoProtocol.EndContentType, DemoProtocol.ProducerTag);
                Send(channel, end, ct);
            }
            catch
            {
                end.Dispose();
                throw;
            }
        }

        foreach (Consumer c in _consumers)
        {
            while (!c.Reported.Wait(Poll))
            {
                ct.ThrowIfCancellationRequested();
                ThrowIfConsumerFailed();
            }

            Kick();
        }

        progress.Clear();
        return Evaluate(name, warmup, timedStartNs);
    }

    private string[] ConsumerArguments(string name)
    {
        var args = new List<string> { "__consumer", "--name", name, "--depth", options.Depth.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        if (options.FanOut)
        {
            args.Add("--fanout");
        }

        return [.. args];
    }

    /// <summary>Checks the consumers' reports (every frame checked exactly once per consumer that had to, nothing
    /// corrupt) and computes the figures.</summary>
    private DemoResult Evaluate(string name, int warmup, long timedStartNs)
    {
        int total = warmup + options.Frames;
        long size = options.Shape.Bytes;
        var timesChecked = new int[total];
        var latencies = new List<long>(options.Frames * (options.FanOut ? _consumers.Count : 1));
        long lastDoneNs = timedStartNs;
        var perConsumer = new List<DemoConsumerResult>();
        foreach (Consumer c in _consumers)
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

        int expected = options.FanOut ? _consumers.Count : 1;
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
            Consumers = _consumers.Count,
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

    /// <summary>Waits for a free slot in short, bounded waits, so that a signal or a dead consumer is noticed.</summary>
    private BufferGuard Acquire(BufferPool pool, long size, CancellationToken ct)
    {
        while (true)
        {
            if (pool.TryAcquireCpu(size, Poll, out BufferGuard? guard))
            {
                return guard;
            }

            ct.ThrowIfCancellationRequested();
            ThrowIfConsumerFailed();
        }
    }

    /// <summary>Sends in short, bounded waits while the channel is full. The guard is spent once sent.</summary>
    private void Send(BufferChannel channel, BufferGuard guard, CancellationToken ct)
    {
        while (!channel.TrySend(guard, Poll))
        {
            ct.ThrowIfCancellationRequested();
            ThrowIfConsumerFailed();
        }
    }

    private void Kick() => Interlocked.Exchange(ref _lastProgress, Environment.TickCount64);

    private void ThrowIfConsumerFailed()
    {
        if (ConsumerFailure() is { } why)
        {
            throw new IOException(why);
        }
    }

    /// <summary>Why a consumer is gone before its report, or null.</summary>
    private string? ConsumerFailure()
    {
        lock (_killLock)
        {
            foreach (Consumer c in _consumers)
            {
                // Output ends when the process exits, after every line it wrote was read (its report included).
                if (c.OutputEnded && c.Report is null)
                {
                    string kind = c.IsPython ? "python, " : "";
                    return c.Process.WaitForExit(1000)
                        ? $"consumer {c.Index} ({kind}pid {c.Process.Id}) exited with code {c.Process.ExitCode}{Describe(c.Process.ExitCode)} before its report"
                        : $"consumer {c.Index} ({kind}pid {c.Process.Id}) closed its output before its report";
                }
            }
        }

        return null;
    }

    private static string Describe(int exitCode) => exitCode switch
    {
        137 or -9 => " (killed)",
        143 or -15 => " (terminated)",
        _ => "",
    };

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

    /// <summary>Tells every consumer to stop (those that reported have stopped already) and closes their stdin,
    /// waits a little, then stops what is left.</summary>
    private void Shutdown()
    {
        foreach (Consumer c in _consumers)
        {
            c.Stop();
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

    private void Report(DemoResult r)
    {
        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(r, Output.CliJsonContext.Default.DemoResult));
            return;
        }

        string checkedBy = options.FanOut
            ? (r.Consumers == 1 ? "every byte checked by the consumer" : $"every byte checked by each of the {r.Consumers} consumers")
            : (r.Consumers == 1 ? "every byte checked by the consumer" : "every byte checked by one of the consumers");
        Console.WriteLine($"  {r.Frames} frames handed over in {r.Seconds:0.000} s, {checkedBy}");
        foreach (Consumer c in _consumers)
        {
            string[] lines;
            lock (c.OtherLines)
            {
                lines = [.. c.OtherLines];
            }

            foreach (string line in lines.Take(6))
            {
                Console.WriteLine($"  | consumer {c.Index}: {line}");
            }

            if (lines.Length > 6)
            {
                Console.WriteLine($"  | consumer {c.Index}: ({lines.Length - 6} more lines)");
            }
        }

        if (r.Consumers > 1 || r.PerConsumer.Any(p => p.View is not null))
        {
            Console.WriteLine("  " + string.Join("; ", r.PerConsumer.Select(p =>
                $"consumer {p.Index} ({p.Runtime}{(p.View is null ? "" : ", " + p.View)}): {p.Frames} frames")));
        }

        Console.WriteLine($"  frames/s          {r.FramesPerSecond,10:N1}");
        Console.WriteLine($"  µs per frame      {r.MicrosecondsPerFrame,10:N1}   (wall time per frame, producer and consumers overlapping)");
        Console.WriteLine($"  GB/s              {r.GigabytesPerSecond,10:N2}   (frame bytes per second{(options.FanOut && r.Consumers > 1 ? $"; checked: × {r.Consumers}" : "")})");
        Console.WriteLine($"  latency p50 µs    {r.LatencyP50Microseconds,10:N1}   (handoff: receive time − the description's timestamp, taken before Send;");
        Console.WriteLine($"  latency p99 µs    {r.LatencyP99Microseconds,10:N1}    includes waiting in the channel behind up to {r.Depth} frames)");
        Console.WriteLine($"  pool '{r.Pool}' {(r.PoolRemoved ? "removed" : "NOT removed: run `xmem gc`")}");
    }

    /// <summary>One consumer process: its stdin (the lifeline) and a thread that reads its stdout.</summary>
    private sealed class Consumer(int index, bool isPython, Process process)
    {
        private readonly Lock _stdinLock = new();
        private bool _stopped;
        private volatile ConsumerReport? _report;
        private volatile bool _outputEnded;

        internal int Index { get; } = index;
        internal bool IsPython { get; } = isPython;
        internal Process Process { get; } = process;
        internal ManualResetEventSlim Ready { get; } = new();
        internal ManualResetEventSlim Reported { get; } = new();
        internal ConsumerReport? Report => _report;
        internal List<string> OtherLines { get; } = [];
        internal bool OutputEnded => _outputEnded;

        internal void StartReading()
        {
            var t = new Thread(Read) { IsBackground = true, Name = $"xmem demo consumer {Index} output" };
            t.Start();
        }

        private void Read()
        {
            try
            {
                while (Process.StandardOutput.ReadLine() is { } line)
                {
                    if (line == DemoProtocol.ReadyLine)
                    {
                        Ready.Set();
                    }
                    else if (line.StartsWith(DemoProtocol.ResultPrefix, StringComparison.Ordinal))
                    {
                        _report = JsonSerializer.Deserialize(line.AsSpan(DemoProtocol.ResultPrefix.Length), DemoJsonContext.Default.ConsumerReport)
                            ?? throw new InvalidDataException("an empty report");
                        Reported.Set();
                    }
                    else
                    {
                        lock (OtherLines)
                        {
                            OtherLines.Add(line);
                        }
                    }
                }
            }
            catch (Exception e) when (e is IOException or JsonException or InvalidDataException)
            {
                _report ??= new ConsumerReport { Error = $"unreadable output: {e.Message}" };
                Reported.Set();
            }
            finally
            {
                _outputEnded = true;
            }
        }

        /// <summary>Writes the stop line and closes stdin (end of file), once.</summary>
        internal void Stop()
        {
            lock (_stdinLock)
            {
                if (_stopped)
                {
                    return;
                }

                _stopped = true;
                try
                {
                    Process.StandardInput.WriteLine(DemoProtocol.StopLine);
                    Process.StandardInput.Close();
                }
                catch (IOException)
                {
                    // it is gone already
                }
            }
        }
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
