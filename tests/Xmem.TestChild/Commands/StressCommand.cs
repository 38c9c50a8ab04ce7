using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary><c>stress POOL THREADS DURATION_MS TAG</c>: opens the pool, replies <c>ready</c>, waits for a <c>go</c> line,
/// runs <see cref="StressWorker"/> and replies its result line (<see cref="StressResult.ToLine"/>). Exit code 0 when no
/// invariant was broken, 1 otherwise.</summary>
internal static class StressCommand
{
    [ChildCommand("stress", "POOL THREADS DURATION_MS TAG")]
    internal static int Run(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        int threads = ctx.IntArg(1);
        var duration = TimeSpan.FromMilliseconds(ctx.IntArg(2));
        int tag = ctx.IntArg(3);
        ctx.Reply("ready");
        if (ctx.ReadInstruction() != "go")
        {
            return 2;
        }

        StressResult result = StressWorker.Run(pool, threads, duration, tag);
        ctx.Reply(result.ToLine());
        foreach (string v in result.Violations.Take(20))
        {
            Console.Error.WriteLine(v);
        }

        return result.Violations.Count == 0 ? 0 : 1;
    }
}
