using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>A channel user that keeps touching every cell of its ring, for the tests of damage written into a live
/// channel's segment (tests/Xmem.Tests/Robustness/HostileChannelTests.cs).</summary>
internal static class HostileChannelCommands
{
    /// <summary><c>channel-loop POOL CHANNEL DEPTH</c>: opens the channel, replies <c>ready PID</c>, then sends and
    /// receives one buffer after another on a background thread (so every cell of the ring is used in turn), checking
    /// each byte. Instructions: <c>count</c> answers <c>ok N</c> (round trips so far) or the loop's error; <c>stop</c>
    /// ends the loop, answers the same and exits.</summary>
    [ChildCommand("channel-loop", "POOL CHANNEL DEPTH")]
    internal static int Loop(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        long rounds = 0;
        string? error = null;
        var stop = new ManualResetEventSlim();
        var worker = new Thread(() =>
        {
            try
            {
                while (!stop.IsSet)
                {
                    BufferGuard g = pool.AcquireCpu(64);
                    g.Span.Fill((byte)rounds);
                    ch.Send(g);
                    if (!ch.TryReceive(TimeSpan.FromSeconds(30), out BufferGuard? got))
                    {
                        throw new InvalidOperationException("the buffer just sent did not arrive within 30 s");
                    }

                    using (got)
                    {
                        if (got.ReadOnlySpan.ContainsAnyExcept((byte)rounds))
                        {
                            throw new InvalidOperationException($"round {rounds}: the received buffer does not hold what was sent");
                        }
                    }

                    Interlocked.Increment(ref rounds);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref error, ChildContext.DescribeError(e));
            }
        });
        worker.Start();
        ctx.Reply($"ready {Environment.ProcessId}");
        string Answer() => Volatile.Read(ref error) ?? $"ok {Interlocked.Read(ref rounds).ToString(CultureInfo.InvariantCulture)}";
        while (ctx.ReadInstruction() is string line)
        {
            if (line == "stop")
            {
                stop.Set();
                worker.Join();
                ctx.Reply(Answer());
                return error is null ? 0 : 1;
            }

            ctx.Reply(Answer());
        }

        stop.Set();
        worker.Join();
        return 0;
    }
}
