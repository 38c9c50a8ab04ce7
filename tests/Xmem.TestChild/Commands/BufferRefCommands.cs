using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>The allocation-free reference API (<see cref="BufferRef"/>) in a child process, for
/// tests/Xmem.Tests/Pool/BufferRefTests. Each opens the pool and replies <c>ready PID</c> once set up.</summary>
internal static class BufferRefCommands
{
    /// <summary><c>ref-produce POOL CHANNEL DEPTH ID COUNT</c>: as channel-produce, through AcquireCpuRef and
    /// Send(BufferRef); replies <c>sent COUNT</c> and waits for stdin to close.</summary>
    [ChildCommand("ref-produce", "POOL CHANNEL DEPTH ID COUNT")]
    internal static int Produce(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        ulong id = ulong.Parse(ctx.Arg(3), CultureInfo.InvariantCulture);
        int count = ctx.IntArg(4);
        ctx.Reply($"ready {Environment.ProcessId}");
        for (int i = 0; i < count; i++)
        {
            if (!pool.TryAcquireCpuRef(64, TimeSpan.FromSeconds(30), out BufferRef b))
            {
                throw new TimeoutException("no free slot in 30 s");
            }

            b.Span[0] = (byte)i;
            b.SetDescription(new BufferDescription(null, (id << 32) | (uint)i, BufferDescription.MonotonicNowNs(), "test/seq", ""));
            ch.Send(b);
        }

        ctx.Reply($"sent {count}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>ref-consume POOL CHANNEL DEPTH</c>: as channel-consume, through ReceiveRef: receives until a buffer
    /// with content type "stop", replies <c>got N SEQ,SEQ,...</c> and waits for stdin to close.</summary>
    [ChildCommand("ref-consume", "POOL CHANNEL DEPTH")]
    internal static int Consume(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        ctx.Reply($"ready {Environment.ProcessId}");
        var seqs = new List<ulong>();
        while (true)
        {
            using BufferRef b = ch.ReceiveRef();
            BufferDescription d = b.Description ?? throw new InvalidOperationException($"slot {b.MetaIndex} arrived without a description");
            if (d.ContentType == "stop")
            {
                break;
            }

            if (b.ReadOnlySpan[0] != (byte)d.Seq)
            {
                throw new InvalidOperationException($"buffer {d.Seq:x} holds {b.ReadOnlySpan[0]}, not {(byte)d.Seq}");
            }

            seqs.Add(d.Seq);
        }

        ctx.Reply($"got {seqs.Count} {string.Join(',', seqs.Select(s => s.ToString("x", CultureInfo.InvariantCulture)))}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>ref-hold POOL N</c>: acquires N references with AcquireCpuRef and one more of each with GetRef
    /// (2N references on N slots, never disposed), replies <c>held INDEX,...</c> and waits (to be killed).</summary>
    [ChildCommand("ref-hold", "POOL N")]
    internal static int Hold(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        ctx.Reply($"ready {Environment.ProcessId}");
        var held = new List<BufferRef>();
        for (int i = 0; i < ctx.IntArg(1); i++)
        {
            BufferRef b = pool.AcquireCpuRef(4096);
            held.Add(b);
            held.Add(pool.GetRef(b.MetaIndex));
        }

        ctx.Reply($"held {string.Join(',', held.Where((_, i) => i % 2 == 0).Select(b => b.MetaIndex))}");
        _ = ctx.ReadInstruction();
        GC.KeepAlive(held);
        return 0;
    }
}
