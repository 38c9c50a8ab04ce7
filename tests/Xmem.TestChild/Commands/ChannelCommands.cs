using System.Globalization;


namespace Xmem.TestChild.Commands;

/// <summary>Channel commands for tests/Xmem.Tests/Channels. Each opens the pool, replies <c>ready PID</c> once set up,
/// then works as its usage says.</summary>
internal static class ChannelCommands
{
    /// <summary><c>channel-produce POOL CHANNEL DEPTH ID COUNT</c>: sends COUNT buffers whose description Seq is
    /// <c>ID &lt;&lt; 32 | i</c> (first byte = i mod 256), then replies <c>sent COUNT</c> and waits for stdin to close.</summary>
    [ChildCommand("channel-produce", "POOL CHANNEL DEPTH ID COUNT")]
    internal static int Produce(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        ulong id = ulong.Parse(ctx.Arg(3), CultureInfo.InvariantCulture);
        int count = ctx.IntArg(4);
        ctx.Reply($"ready {Environment.ProcessId}");
        for (int i = 0; i < count; i++)
        {
            BufferGuard g = AcquireWaiting(pool, 64);
            g.Span[0] = (byte)i;
            g.SetDescription(null, (id << 32) | (uint)i, contentType: "test/seq");
            ch.Send(g);
        }

        ctx.Reply($"sent {count}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>channel-consume POOL CHANNEL DEPTH</c>: receives until a buffer with content type "stop", then replies
    /// <c>got N SEQ,SEQ,...</c> (each checked against its first byte) and waits for stdin to close.</summary>
    [ChildCommand("channel-consume", "POOL CHANNEL DEPTH")]
    internal static int Consume(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        ctx.Reply($"ready {Environment.ProcessId}");
        var seqs = new List<ulong>();
        while (true)
        {
            using BufferGuard g = ch.Receive();
            BufferDescription d = g.Description ?? throw new InvalidOperationException($"slot {g.MetaIndex} arrived without a description");
            if (d.ContentType == "stop")
            {
                break;
            }

            if (g.ReadOnlySpan[0] != (byte)d.Seq)
            {
                throw new InvalidOperationException($"buffer {d.Seq:x} holds {g.ReadOnlySpan[0]}, not {(byte)d.Seq}");
            }

            seqs.Add(d.Seq);
        }

        ctx.Reply($"got {seqs.Count} {string.Join(',', seqs.Select(s => s.ToString("x", CultureInfo.InvariantCulture)))}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>channel-subscribe POOL CHANNEL COUNT</c>: subscribes to a fan-out channel of depth 8, replies
    /// <c>ready PID</c>, receives COUNT buffers and replies <c>got SEQ,SEQ,...</c>.</summary>
    [ChildCommand("channel-subscribe", "POOL CHANNEL COUNT")]
    internal static int Subscribe(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), depth: 8, mode: ChannelMode.FanOut);
        using ChannelSubscription sub = ch.Subscribe();
        ctx.Reply($"ready {Environment.ProcessId}");
        var seqs = new List<ulong>();
        for (int i = 0; i < ctx.IntArg(2); i++)
        {
            using BufferGuard g = sub.Receive();
            seqs.Add(g.Description?.Seq ?? ulong.MaxValue);
        }

        ctx.Reply($"got {string.Join(',', seqs)}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>channel-churn POOL CHANNEL DEPTH send|recv</c>: sends (or receives and releases) in a tight loop for ever,
    /// replying <c>running</c> after the first 100 operations — to be killed with SIGKILL at any moment.</summary>
    [ChildCommand("channel-churn", "POOL CHANNEL DEPTH send|recv")]
    internal static int Churn(ChildContext ctx)
    {
        BufferPool pool = BufferPool.Open(ctx.Arg(0));
        BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        bool send = ctx.Arg(3) == "send";
        var held = new Queue<BufferGuard>();
        for (long n = 0; ; n++)
        {
            if (send)
            {
                if (pool.TryAcquireCpu(64, TimeSpan.FromMilliseconds(50), out BufferGuard? g))
                {
                    g.SetDescription(null, (ulong)n);
                    if (!ch.TrySend(g, TimeSpan.FromMilliseconds(50)))
                    {
                        g.Dispose();
                    }
                }
            }
            else if (ch.TryReceive(TimeSpan.FromMilliseconds(50), out BufferGuard? g))
            {
                held.Enqueue(g); // hold a few, so that a kill leaves received buffers behind too
                if (held.Count > 2)
                {
                    held.Dequeue().Dispose();
                }
            }

            if (n == 100)
            {
                ctx.Reply("running");
            }
        }
    }

    /// <summary><c>channel-describe POOL CHANNEL</c>: acquires a float32 [2,3,4] tensor, describes it (seq 42,
    /// "image/rgb8", "cam0", timestamp 123456789), sends it, replies <c>sent INDEX</c>.</summary>
    [ChildCommand("channel-describe", "POOL CHANNEL")]
    internal static int Describe(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1));
        BufferGuard g = pool.AcquireCpu(new TensorSpec(ElementType.Float32, 2, 3, 4));
        g.AsSpan<float>()[23] = 2.5f;
        g.SetDescription(g.Tensor, 42, 123456789, "image/rgb8", "cam0");
        int index = g.MetaIndex;
        ch.Send(g);
        ctx.Reply($"sent {index}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    private static BufferGuard AcquireWaiting(BufferPool pool, long size) =>
        pool.TryAcquireCpu(size, TimeSpan.FromSeconds(30), out BufferGuard? g) ? g : throw new TimeoutException("no free slot in 30 s");

}
