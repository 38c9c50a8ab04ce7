using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Xmem.Cli.Demo;

/// <summary>
/// <c>xmem demo</c>: this process creates a pool and a channel and produces described frames into it; consumer
/// processes (this same program as <c>xmem __consumer</c>, or python/examples/consumer.py) receive them, check every
/// byte and report at the end (<see cref="DemoProtocol"/>). In queue mode each frame goes to one consumer; in fan-out
/// mode to every consumer. The pool is removed at the end, also on Ctrl+C, SIGTERM or SIGHUP, and also when a
/// consumer fails or dies.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "_cancel has no timer and its WaitHandle is never taken, so it holds no OS resource; disposing it would race the signal handlers and the watchdog thread, which may still cancel it as Run returns.")]
internal sealed class DemoRunner(DemoOptions options)
{
    private const long StallLimitMs = 15_000;
    private const long ShutdownGraceMs = 2_000;
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    private readonly CancellationTokenSource _cancel = new();
    private readonly List<ConsumerProcess> _consumers = [];
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
        ulong instance;
        try
        {
            instance = Inspection.PoolInspector.Summarize(name).InstanceId;
        }
        catch
        {
            pool.Dispose(); // the last process to detach removes a non-persistent pool: none is left behind
            throw;
        }

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
        DemoReport.Print(options, result, _consumers);
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
            var c = new ConsumerProcess(i, isPython, process);
            lock (_killLock)
            {
                _consumers.Add(c);
            }

            c.StartReading();
        }

        // Fan-out subscribers receive what is sent after they joined: wait until every consumer is ready.
        foreach (ConsumerProcess c in _consumers)
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

            using (BufferGuard frame = Acquire(pool, size, ct)) // not sent: still ours (a sent guard is spent: Dispose does nothing)
            {
                FramePattern.Fill(frame.Span[..(int)size], seq);
                frame.SetDescription(spec, (ulong)seq, BufferDescription.MonotonicNowNs(), contentType, DemoProtocol.ProducerTag);
                Send(channel, frame, ct);
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
            using BufferGuard end = Acquire(pool, 1, ct); // spent once sent
            end.SetDescription(null, (ulong)total, null, DemoProtocol.EndContentType, DemoProtocol.ProducerTag);
            Send(channel, end, ct);
        }

        foreach (ConsumerProcess c in _consumers)
        {
            while (!c.Reported.Wait(Poll))
            {
                ct.ThrowIfCancellationRequested();
                ThrowIfConsumerFailed();
            }

            Kick();
        }

        progress.Clear();
        return DemoEvaluation.Evaluate(options, _consumers, name, warmup, timedStartNs);
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
            foreach (ConsumerProcess c in _consumers)
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
            foreach (ConsumerProcess c in _consumers)
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
        foreach (ConsumerProcess c in _consumers)
        {
            c.Stop();
        }

        long deadline = Environment.TickCount64 + ShutdownGraceMs;
        foreach (ConsumerProcess c in _consumers)
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
}
