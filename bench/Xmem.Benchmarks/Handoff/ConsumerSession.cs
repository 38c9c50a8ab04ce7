using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Xmem.Benchmarks.Interop;
using Xmem.Interop;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// What the handoff and channel-latency benchmarks share: the frame pool (<see cref="InFlight"/> frame slots,
/// pre-faulted, with the queue channel <see cref="FramesChannel"/>), a small control pool (64-byte buffers and the
/// channels <see cref="ReplyChannel"/>, <see cref="PingChannel"/>, <see cref="PongChannel"/>), a shared futex word,
/// the command and reply pipes, and the consumer process (this executable, hidden mode <c>handoff-consumer</c>),
/// pinned to its own CPU. The floors of the protocol are measured through the same consumer.
/// </summary>
internal sealed unsafe class ConsumerSession : IDisposable
{
    internal const int InFlight = 4;
    internal const int ControlBytes = 64;
    internal const string FramesChannel = "frames";
    internal const string ReplyChannel = "reply";
    internal const string PingChannel = "ping";
    internal const string PongChannel = "pong";

    private readonly Process _consumer;
    private readonly Timer _watchdog;
    private bool _disposed;

    internal ConsumerSession(bool pin, int producerCpu, int consumerCpu, int timeoutS)
    {
        Pinned = pin && Environment.ProcessorCount >= 2;
        if (Pinned && !BenchLibc.PinCurrentThread(producerCpu))
        {
            Console.Error.WriteLine($"producer: could not pin to CPU {producerCpu}; running unpinned");
        }

        string poolName = Micro.BenchNames.Pool("handoff");
        string ctlName = Micro.BenchNames.Pool("handoffctl");
        Pool = BufferPool.Create(poolName, capacity: InFlight);
        PreFault(Pool);
        Frames = Pool.Channel(FramesChannel, depth: InFlight);
        Control = BufferPool.Create(ctlName, capacity: 16);
        Replies = Control.Channel(ReplyChannel, depth: 4);
        Ping = Control.Channel(PingChannel, depth: 4);
        Pong = Control.Channel(PongChannel, depth: 4);
        Futex = ShmScratch.Create(Micro.BenchNames.Object("futex"));

        int* cmdPipe = stackalloc int[2];
        int* replyPipe = stackalloc int[2];
        if (BenchLibc.Pipe(cmdPipe) != 0 || BenchLibc.Pipe(replyPipe) != 0)
        {
            throw new IOException($"pipe failed: errno {Marshal.GetLastPInvokeError()}");
        }

        _consumer = StartConsumer(poolName, ctlName, cmdPipe[0], replyPipe[1], Pinned ? consumerCpu : -1, Futex.Path);
        // The child has its ends now; closing ours makes a dead child read as end of file instead of a hang.
        _ = BenchLibc.Close(cmdPipe[0]);
        _ = BenchLibc.Close(replyPipe[1]);
        CmdFd = cmdPipe[1];
        ReplyFd = replyPipe[0];
        Process consumer = _consumer;
        _watchdog = new Timer(
            _ =>
            {
                Console.Error.WriteLine($"benchmark: watchdog fired after {timeoutS} s; killing the consumer");
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
            TimeSpan.FromSeconds(timeoutS),
            Timeout.InfiniteTimeSpan);
    }

    internal bool Pinned { get; }

    internal BufferPool Pool { get; }

    internal BufferChannel Frames { get; }

    internal BufferPool Control { get; }

    internal BufferChannel Replies { get; }

    internal BufferChannel Ping { get; }

    internal BufferChannel Pong { get; }

    internal ShmScratch Futex { get; }

    internal int CmdFd { get; }

    internal int ReplyFd { get; }

    internal int ConsumerExitCode { get; private set; } = -1;

    internal void Send(Command cmd) => BenchLibc.WriteExactly(CmdFd, &cmd, sizeof(Command));

    internal Reply ReadReply()
    {
        Reply r;
        BenchLibc.ReadExactly(ReplyFd, &r, sizeof(Reply));
        return r;
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

    private static Process StartConsumer(string poolName, string ctlName, int cmdRead, int replyWrite, int cpu, string futexPath)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo { FileName = self, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(ConsumerSession).Assembly.Location); // run as `dotnet Xmem.Benchmarks.dll`
        }

        foreach (string a in new[] { "handoff-consumer", poolName, ctlName, cmdRead.ToString(CultureInfo.InvariantCulture), replyWrite.ToString(CultureInfo.InvariantCulture), cpu.ToString(CultureInfo.InvariantCulture), futexPath })
        {
            psi.ArgumentList.Add(a);
        }

        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the consumer process");
    }

    // ---------------------------------------------------------------- floors (benchmark-protocol.md)

    /// <summary>Floor: 4-byte pipe round trips between the two processes (ns per round trip, one per sample).</summary>
    internal long[] PipeRoundTrips(int rounds)
    {
        Send(new Command { Op = Command.OpPipePing, Arg = rounds });
        var samples = new long[rounds];
        int ping = 0;
        for (int i = 0; i < rounds; i++)
        {
            long t0 = MonotonicClock.NowNs();
            BenchLibc.WriteExactly(CmdFd, &i, 4);
            BenchLibc.ReadExactly(ReplyFd, &ping, 4);
            samples[i] = MonotonicClock.NowNs() - t0;
        }

        return samples;
    }

    private uint _futexValue;

    /// <summary>Floor: futex wake round trips between the two processes, both sides sleeping in the kernel
    /// (<paramref name="spin"/> false), or both spinning on the shared word without a system call (true).</summary>
    internal long[] FutexRoundTrips(int rounds, bool spin)
    {
        uint* word = (uint*)Futex.Pointer;
        uint value = _futexValue;
        Volatile.Write(ref *word, value);
        Send(new Command { Op = spin ? Command.OpSpinPing : Command.OpFutexPing, Meta = (int)value, Arg = rounds });
        var samples = new long[rounds];
        for (int i = 1; i <= rounds; i++)
        {
            uint ping = value + (uint)(2 * i) - 1;
            long t0 = MonotonicClock.NowNs();
            Volatile.Write(ref *word, ping);
            if (spin)
            {
                HandoffConsumer.SpinFor(word, ping + 1);
            }
            else
            {
                _ = Libc.FutexWakeAll((nint)word);
                HandoffConsumer.WaitFor(word, ping + 1);
            }

            samples[i - 1] = MonotonicClock.NowNs() - t0;
        }

        _futexValue = value + (uint)(2 * rounds);
        return samples;
    }

    /// <summary>Floor: an atomic increment on a MAP_SHARED /dev/shm word (ns per increment, uncontended).</summary>
    internal double SharedAtomicIncrement()
    {
        long* counter = (long*)(Futex.Pointer + 64); // its own cache line, away from the futex word
        const int N = 1_000_000;
        long t0 = MonotonicClock.NowNs();
        for (int i = 0; i < N; i++)
        {
            _ = Interlocked.Increment(ref *counter);
        }

        return (MonotonicClock.NowNs() - t0) / (double)N;
    }

    /// <summary>Floor: a frame-sized memcpy between two pre-faulted buffers (ns, median of 21).</summary>
    internal static double Memcpy()
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

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Send(new Command { Op = Command.OpQuit });
        if (!_consumer.WaitForExit(10_000))
        {
            _consumer.Kill();
        }

        ConsumerExitCode = _consumer.HasExited ? _consumer.ExitCode : -1;
        _watchdog.Dispose();
        _ = BenchLibc.Close(CmdFd);
        _ = BenchLibc.Close(ReplyFd);
        Ping.Dispose();
        Pong.Dispose();
        Replies.Dispose();
        Frames.Dispose();
        Control.Dispose();
        Pool.Dispose();
        Futex.Dispose();
        _consumer.Dispose();
    }
}
