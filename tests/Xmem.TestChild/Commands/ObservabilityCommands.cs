namespace Xmem.TestChild.Commands;

/// <summary>Stages of a known pipeline for the observability tests (tests/Xmem.Tests/Cli/TopTests.cs,
/// tests/Xmem.Tests/Pool/MetricsTests.cs): their counters in shared memory are checked against what they did.</summary>
internal static class ObservabilityCommands
{
    /// <summary><c>channel-take POOL CHANNEL DEPTH N</c>: replies <c>ready PID</c>, receives N buffers (releasing
    /// each), replies <c>took N</c>, then waits for stdin to close. With nothing sent it waits in Receive: a blocked
    /// receiver.</summary>
    [ChildCommand("channel-take", "POOL CHANNEL DEPTH N")]
    internal static int Take(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), ctx.IntArg(2));
        ctx.Reply($"ready {Environment.ProcessId}");
        int n = ctx.IntArg(3);
        for (int i = 0; i < n; i++)
        {
            using BufferGuard g = ch.Receive();
        }

        ctx.Reply($"took {n}");
        _ = ctx.ReadInstruction();
        return 0;
    }
}
