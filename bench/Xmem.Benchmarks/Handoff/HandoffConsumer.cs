using System.Runtime.CompilerServices;
using Xmem.Benchmarks.Interop;
using Xmem.Interop;

namespace Xmem.Benchmarks.Handoff;

/// <summary>
/// The consumer: a second OS process running this executable in the hidden mode
/// <c>handoff-consumer POOL CONTROL_POOL CMD_FD REPLY_FD CPU FUTEX_PATH</c>. It inherits the read end of the command
/// pipe and the write end of the reply pipe. Pipe transport: takes over each frame's in-flight reference, checksums
/// the stamps and gives the buffer back to the pool. Channel transport: receives each frame from the frames channel
/// (the sequence number comes in the buffer's description), checksums it and disposes the guard.
/// </summary>
internal static unsafe class HandoffConsumer
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static int Run(string[] args)
    {
        if (args.Length != 7)
        {
            Console.Error.WriteLine("usage (internal): handoff-consumer POOL CONTROL_POOL CMD_FD REPLY_FD CPU FUTEX_PATH");
            return 2;
        }

        string poolName = args[1];
        string ctlName = args[2];
        int cmdFd = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
        int replyFd = int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture);
        int cpu = int.Parse(args[5], System.Globalization.CultureInfo.InvariantCulture);
        string futexPath = args[6];

        if (cpu >= 0 && !BenchLibc.PinCurrentThread(cpu))
        {
            Console.Error.WriteLine($"consumer: could not pin to CPU {cpu}; running unpinned");
        }

        using BufferPool pool = BufferPool.Open(poolName);
        using BufferPool ctl = BufferPool.Open(ctlName);
        using BufferChannel frames = pool.Channel(ConsumerSession.FramesChannel, ConsumerSession.InFlight);
        using BufferChannel replies = ctl.Channel(ConsumerSession.ReplyChannel, 4);
        using BufferChannel pingCh = ctl.Channel(ConsumerSession.PingChannel, 4);
        using BufferChannel pongCh = ctl.Channel(ConsumerSession.PongChannel, 4);
        using ShmScratch futex = ShmScratch.Open(futexPath);
        uint* word = (uint*)futex.Pointer;
        int streamSeen = 0, streamOk = 0;
        Command cmd;
        Reply reply;
        while (true)
        {
            BenchLibc.ReadExactly(cmdFd, &cmd, sizeof(Command));
            switch (cmd.Op)
            {
                case Command.OpFrame:
                    reply = Consume(pool, cmd.Meta, cmd.Seq);
                    BenchLibc.WriteExactly(replyFd, &reply, sizeof(Reply));
                    break;
                case Command.OpStreamFrame:
                    reply = Consume(pool, cmd.Meta, cmd.Seq);
                    streamSeen++;
                    streamOk += reply.Ok;
                    break;
                case Command.OpStreamEnd:
                    reply = new Reply { Seq = streamSeen, Ok = streamOk };
                    streamSeen = streamOk = 0;
                    BenchLibc.WriteExactly(replyFd, &reply, sizeof(Reply));
                    break;
                case Command.OpPipePing:
                    int ping = 0;
                    for (int i = 0; i < cmd.Arg; i++)
                    {
                        BenchLibc.ReadExactly(cmdFd, &ping, 4);
                        BenchLibc.WriteExactly(replyFd, &ping, 4);
                    }

                    break;
                case Command.OpFutexPing:
                    FutexPong(word, (uint)cmd.Meta, cmd.Arg);
                    break;
                case Command.OpSpinPing:
                    SpinPong(word, (uint)cmd.Meta, cmd.Arg);
                    break;
                case Command.OpChanLockstep:
                    frames.SpinDuration = TimeSpan.FromMicroseconds(cmd.Seq);
                    for (int i = 0; i < cmd.Arg; i++)
                    {
                        reply = ConsumeFromChannel(frames);
                        if (cmd.Meta == 1)
                        {
                            BufferRef r = ctl.AcquireCpuRef(ConsumerSession.ControlBytes);
                            *(Reply*)r.CpuPointer = reply;
                            replies.Send(r);
                        }
                        else
                        {
                            BenchLibc.WriteExactly(replyFd, &reply, sizeof(Reply));
                        }
                    }

                    break;
                case Command.OpChanStream:
                    frames.SpinDuration = TimeSpan.FromMicroseconds(cmd.Seq);
                    for (int i = 0; i < cmd.Arg; i++)
                    {
                        reply = ConsumeFromChannel(frames);
                        streamSeen++;
                        streamOk += reply.Ok;
                    }

                    reply = new Reply { Seq = streamSeen, Ok = streamOk };
                    streamSeen = streamOk = 0;
                    BenchLibc.WriteExactly(replyFd, &reply, sizeof(Reply));
                    break;
                case Command.OpChanPong:
                    pingCh.SpinDuration = pongCh.SpinDuration = TimeSpan.FromMicroseconds(cmd.Seq);
                    long[] recv = new long[cmd.Arg];
                    for (int i = 0; i < cmd.Arg; i++)
                    {
                        BufferGuard g = pingCh.Receive();
                        recv[i] = MonotonicClock.NowNs();
                        pongCh.Send(g);
                    }

                    fixed (long* p = recv)
                    {
                        BenchLibc.WriteExactly(replyFd, p, recv.Length * sizeof(long));
                    }

                    break;
                case Command.OpQuit:
                    return 0;
                default:
                    Console.Error.WriteLine($"consumer: unknown command {cmd.Op}");
                    return 1;
            }
        }
    }

    /// <summary>Takes over the frame the producer sent (its reference was left in flight by Forget), reads it and
    /// gives it back: the guard from Get holds the buffer while the in-flight reference is dropped, and disposing
    /// the guard recycles the slot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    private static Reply Consume(BufferPool pool, int meta, int seq)
    {
        BufferRef g = pool.GetRef(meta);
        _ = pool.Release(meta);
        long tRecv = MonotonicClock.NowNs();
        ulong sum = Frame.Checksum((byte*)g.CpuPointer);
        bool ok = Frame.Verify(sum, seq);
        long tDone = MonotonicClock.NowNs();
        g.Dispose();
        return new Reply { Seq = seq, Ok = ok ? 1 : 0, TRecvNs = tRecv, TDoneNs = tDone };
    }

    /// <summary>Channel transport: receives the next frame (its reference now this process's guard), learns its
    /// sequence number from the description, checksums it and disposes the guard (the slot is recycled).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    private static Reply ConsumeFromChannel(BufferChannel frames)
    {
        BufferRef g = frames.ReceiveRef();
        int seq = (int)g.Description!.Value.Seq;
        long tRecv = MonotonicClock.NowNs();
        ulong sum = Frame.Checksum((byte*)g.CpuPointer);
        bool ok = Frame.Verify(sum, seq);
        long tDone = MonotonicClock.NowNs();
        g.Dispose();
        return new Reply { Seq = seq, Ok = ok ? 1 : 0, TRecvNs = tRecv, TDoneNs = tDone };
    }

    /// <summary>The consumer half of the spin floor: like <see cref="FutexPong"/> without a system call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    private static void SpinPong(uint* word, uint start, int rounds)
    {
        for (int i = 1; i <= rounds; i++)
        {
            uint ping = start + (uint)(2 * i) - 1;
            SpinFor(word, ping);
            Volatile.Write(ref *word, ping + 1);
        }
    }

    /// <summary>Spins until <paramref name="word"/> holds <paramref name="value"/> (10 s watchdog).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static void SpinFor(uint* word, uint value)
    {
        long deadline = Environment.TickCount64 + 10_000;
        int n = 0;
        while (Volatile.Read(ref *word) != value)
        {
            Thread.SpinWait(1);
            if ((++n & 0xFFFF) == 0 && Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"spin floor: waited 10 s for {value}, word is {Volatile.Read(ref *word)}");
            }
        }
    }

    /// <summary>The consumer half of the futex floor: wait for the odd value, answer with the next even one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    private static void FutexPong(uint* word, uint start, int rounds)
    {
        for (int i = 1; i <= rounds; i++)
        {
            uint ping = start + (uint)(2 * i) - 1;
            WaitFor(word, ping);
            Volatile.Write(ref *word, ping + 1);
            _ = Libc.FutexWakeAll((nint)word);
        }
    }

    /// <summary>Sleeps on the futex until <paramref name="word"/> holds <paramref name="value"/>. Watchdog: gives
    /// up after 10 s without it (the other process is gone), never hangs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static void WaitFor(uint* word, uint value)
    {
        long deadline = Environment.TickCount64 + 10_000;
        uint v;
        while ((v = Volatile.Read(ref *word)) != value)
        {
            _ = Libc.FutexWait((nint)word, v, 100_000_000);
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"futex floor: waited 10 s for {value}, word is {Volatile.Read(ref *word)}");
            }
        }
    }
}
