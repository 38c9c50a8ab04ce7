using System.Diagnostics;
using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>channel-bench POOL ping|pong chan|futex|pipe N SPIN_US [CPU]</c>: a lockstep latency benchmark between two
/// processes (start "pong" first, then "ping" with the same arguments). "chan": ping acquires a buffer, stamps its
/// description with CLOCK_MONOTONIC and sends it on channel "a"; pong receives it, records now − stamp (one-way
/// send→receive latency) and sends it back on "b". "futex": the same hand-over through a bare futex word (the kernel
/// wake floor). "pipe": 4 bytes through two FIFOs. Pong prints the one-way median and p99 in µs; ping prints the
/// round-trip median.
/// </summary>
internal static class ChannelBenchCommand
{
    [ChildCommand("channel-bench", "POOL ping|pong chan|futex|pipe N SPIN_US")]
    internal static unsafe int Run(ChildContext ctx)
    {
        string poolName = ctx.Arg(0);
        bool ping = ctx.Arg(1) == "ping";
        string mode = ctx.Arg(2);
        int n = ctx.IntArg(3);
        var spin = TimeSpan.FromMicroseconds(ctx.IntArg(4));
        var oneWay = new List<double>(n);
        var rtt = new List<double>(n);
        string dir = SharedMemoryDirectory.Path;
        if (mode == "pipe")
        {
            string ab = Path.Combine(dir, poolName + ".ab"), ba = Path.Combine(dir, poolName + ".ba");
            if (!ping)
            {
                _ = Process.Start("mkfifo", [ab, ba])!.WaitForExitAsync().Wait(5000);
            }
            else
            {
                while (!File.Exists(ba))
                {
                    Thread.Sleep(10);
                }
            }

            // FIFO opens block until the other end opens: pong opens its write end first, ping its read end first.
            FileStream? r = ping ? new(ba, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1) : null;
            using FileStream w = new(ping ? ab : ba, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            r ??= new(ab, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            using FileStream rd = r;
            Span<byte> b = stackalloc byte[8];
            for (int i = 0; i < n; i++)
            {
                if (ping)
                {
                    long t0 = BufferDescription.MonotonicNowNs();
                    BitConverter.TryWriteBytes(b, t0);
                    w.Write(b[..8]);
                    r.ReadExactly(b[..4]);
                    rtt.Add((BufferDescription.MonotonicNowNs() - t0) / 1000.0);
                }
                else
                {
                    r.ReadExactly(b[..8]);
                    oneWay.Add((BufferDescription.MonotonicNowNs() - BitConverter.ToInt64(b)) / 1000.0);
                    w.Write(b[..4]);
                }
            }

            if (!ping)
            {
                File.Delete(ab);
                File.Delete(ba);
            }
        }
        else
        {
            BufferPool pool = ping ? OpenRetry(poolName) : BufferPool.Create(poolName, 16);
            using (pool)
            {
                using BufferChannel a = pool.Channel("a", 4), bch = pool.Channel("b", 4);
                a.SpinDuration = bch.SpinDuration = spin;
                if (mode == "futex")
                {
                    // A word in a shared buffer: ping stores 2i+1 and wakes, pong waits for it, stores 2i+2 and wakes.
                    BufferGuard word = ping ? GetRetry(pool) : pool.AcquireCpu(64);
                    if (!ping)
                    {
                        ctx.Reply("ready");
                    }

                    uint* p = (uint*)word.CpuPointer;
                    long* stamp = (long*)(word.CpuPointer + 8);
                    for (int i = 0; i < n; i++)
                    {
                        uint mine = (uint)((2 * i) + (ping ? 1 : 2)), theirs = (uint)((2 * i) + (ping ? 2 : 1));
                        if (ping)
                        {
                            long t0 = BufferDescription.MonotonicNowNs();
                            Volatile.Write(ref *stamp, t0);
                            Volatile.Write(ref *p, mine);
                            _ = Interop.Libc.FutexWakeAll((nint)p);
                            Await(p, theirs, spin);
                            rtt.Add((BufferDescription.MonotonicNowNs() - t0) / 1000.0);
                        }
                        else
                        {
                            Await(p, theirs, spin);
                            oneWay.Add((BufferDescription.MonotonicNowNs() - Volatile.Read(ref *stamp)) / 1000.0);
                            Volatile.Write(ref *p, mine);
                            _ = Interop.Libc.FutexWakeAll((nint)p);
                        }
                    }

                    word.Dispose();
                }
                else
                {
                    if (!ping)
                    {
                        ctx.Reply("ready");
                    }

                    for (int i = 0; i < n; i++)
                    {
                        if (ping)
                        {
                            long t0 = BufferDescription.MonotonicNowNs();
                            BufferGuard g = pool.AcquireCpu(64);
                            g.SetDescription(null, (ulong)i, BufferDescription.MonotonicNowNs());
                            a.Send(g);
                            bch.Receive().Dispose();
                            rtt.Add((BufferDescription.MonotonicNowNs() - t0) / 1000.0);
                        }
                        else
                        {
                            BufferGuard g = a.Receive();
                            oneWay.Add((BufferDescription.MonotonicNowNs() - g.Description!.Value.TimestampNs) / 1000.0);
                            bch.Send(g);
                        }
                    }
                }

                if (!ping)
                {
                    Thread.Sleep(200); // let ping detach first
                }
            }
        }

        List<double> xs = ping ? rtt : oneWay;
        xs = xs.Skip(xs.Count / 10).Order().ToList(); // drop the first 10 % (warm-up)
        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"{(ping ? "round-trip" : "one-way")} {mode} spin={spin.TotalMicroseconds}us n={xs.Count} median={xs[xs.Count / 2]:F2}us p99={xs[(int)(xs.Count * 0.99)]:F2}us"));
        return 0;
    }

    private static unsafe void Await(uint* p, uint value, TimeSpan spin)
    {
        long until = Stopwatch.GetTimestamp() + (long)(spin.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            uint v = Volatile.Read(ref *p);
            if (v == value)
            {
                return;
            }

            if (Stopwatch.GetTimestamp() < until)
            {
                Thread.SpinWait(8);
                continue;
            }

            _ = Interop.Libc.FutexWait((nint)p, v, 100_000_000);
        }
    }

    private static BufferGuard GetRetry(BufferPool pool)
    {
        for (int i = 0; ; i++)
        {
            try
            {
                return pool.GetMut(0);
            }
            catch (SlotNotLiveException) when (i < 500)
            {
                Thread.Sleep(10);
            }
        }
    }

    private static BufferPool OpenRetry(string name)
    {
        for (int i = 0; ; i++)
        {
            try
            {
                return BufferPool.Open(name);
            }
            catch (PoolNotFoundException) when (i < 500)
            {
                Thread.Sleep(10);
            }
        }
    }
}
