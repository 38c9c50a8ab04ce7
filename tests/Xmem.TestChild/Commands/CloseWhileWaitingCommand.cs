namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>close-while-waiting POOL acquire|acquire-spinning|receive|send</c>: creates the pool, starts two threads that
/// block in it — in TryAcquireCpu with no time limit (the only slot is held; acquire-spinning: spinning, with an
/// AcquireSpinDuration of an hour, instead of sleeping), in Receive on an empty channel, or in Send on a full one —
/// lets them fall asleep, then disposes the pool on the main thread. Replies <c>woke T1 T2</c> with the exception type
/// each thread ended with (<c>none</c> when its call returned) and <c>exists=true|false</c> after Dispose returned,
/// or <c>stuck</c> (exit 3) when a thread did not end within 20 s.
/// </summary>
internal static class CloseWhileWaitingCommand
{
    [ChildCommand("close-while-waiting", "POOL acquire|acquire-spinning|receive|send")]
    internal static int Run(ChildContext ctx)
    {
        string kind = ctx.Arg(1);
        var pool = BufferPool.Create(ctx.Arg(0), 2);
        BufferChannel? channel = kind is "receive" or "send" ? pool.Channel("c", depth: 1) : null;
        var held = new List<BufferGuard>();
        if (kind == "acquire-spinning")
        {
            pool.AcquireSpinDuration = TimeSpan.FromHours(1);
            kind = "acquire";
        }

        switch (kind)
        {
            case "acquire":
                held.Add(pool.AcquireCpu(64));
                held.Add(pool.AcquireCpu(64));
                break;
            case "send":
                channel!.Send(pool.AcquireCpu(64)); // depth 1: full
                held.Add(pool.AcquireCpu(64));      // the buffer the blocked senders try to send (a Get each)
                break;
            case "receive":
                break;
            default:
                throw new ArgumentException($"expected acquire, receive or send, not '{kind}'");
        }

        var ended = new string[2];
        var threads = new Thread[2];
        for (int t = 0; t < 2; t++)
        {
            int me = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    switch (kind)
                    {
                        case "acquire":
                            _ = pool.TryAcquireCpu(64, Timeout.InfiniteTimeSpan, out BufferGuard? g);
                            g?.Dispose();
                            break;
                        case "receive":
                            channel!.Receive().Dispose();
                            break;
                        default:
                            using (BufferGuard mine = pool.Get(held[0].MetaIndex))
                            {
                                channel!.Send(mine);
                            }

                            break;
                    }

                    ended[me] = "none";
                }
                catch (Exception e)
                {
                    ended[me] = e.GetType().Name;
                }
            }) { IsBackground = true };
            threads[t].Start();
        }

        Thread.Sleep(300); // not a measurement: time for both threads to go to sleep in the kernel
        pool.Dispose(); // gives back what the guards in `held` hold, as a death would
        foreach (Thread th in threads)
        {
            if (!th.Join(TimeSpan.FromSeconds(20)))
            {
                ctx.Reply("stuck");
                Environment.Exit(3);
            }
        }

        channel?.Dispose();
        ctx.Reply($"woke {ended[0]} {ended[1]}");
        ctx.Reply($"exists={(BufferPool.Exists(ctx.Arg(0)) ? "true" : "false")}");
        return 0;
    }
}
