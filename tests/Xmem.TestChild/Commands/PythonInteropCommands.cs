using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>
/// The C# side of the Python package's cross-language tests (tests/python/test_cross_language.py): a C# process
/// produces what Python consumes, and the reverse, on the same pool. Buffers carry <see cref="BytePattern"/>, which
/// the Python tests compute too.
/// </summary>
internal static class PythonInteropCommands
{
    /// <summary><c>py-produce POOL SIZE SEED COUNT</c>: opens the pool, acquires COUNT buffers of SIZE bytes, fills
    /// buffer k with the pattern of seed SEED+k, forgets each (its reference stays in flight, for the Python side to
    /// release), replies <c>produced I0 I1 ...</c> and detaches.</summary>
    [ChildCommand("py-produce", "POOL SIZE SEED COUNT")]
    internal static int Produce(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        long size = ctx.LongArg(1);
        int seed = ctx.IntArg(2);
        int count = ctx.IntArg(3);
        var indexes = new List<string>(count);
        for (int k = 0; k < count; k++)
        {
            BufferGuard g = pool.AcquireCpu(size);
            BytePattern.Fill(g.Span, seed + k);
            indexes.Add(g.MetaIndex.ToString(CultureInfo.InvariantCulture));
            g.Forget();
        }

        ctx.Reply("produced " + string.Join(' ', indexes));
        return 0;
    }

    /// <summary><c>py-consume POOL SEED INDEX...</c>: opens the pool and, for each INDEX, takes a read-only guard,
    /// checks its bytes against the pattern of SEED+k, disposes the guard and releases the in-flight reference the
    /// producer left. Replies <c>consumed SIZE0 SIZE1 ...</c>, or <c>mismatch INDEX POSITION</c> (exit 1).</summary>
    [ChildCommand("py-consume", "POOL SEED INDEX...")]
    internal static int Consume(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        int seed = ctx.IntArg(1);
        var sizes = new List<string>();
        for (int k = 0; k + 2 < ctx.Args.Count; k++)
        {
            int index = ctx.IntArg(k + 2);
            using (BufferGuard g = pool.Get(index))
            {
                long at = BytePattern.FirstMismatch(g.ReadOnlySpan, seed + k);
                if (at >= 0)
                {
                    ctx.Reply($"mismatch {index} {at}");
                    return 1;
                }

                sizes.Add(g.Size.ToString(CultureInfo.InvariantCulture));
            }

            _ = pool.Release(index);
        }

        ctx.Reply("consumed " + string.Join(' ', sizes));
        return 0;
    }

    /// <summary><c>py-hold POOL INDEX</c>: opens the pool, takes a read-write guard on INDEX, replies
    /// <c>holding COUNT</c> (the count with this guard), then waits for a line: <c>write SEED</c> fills the buffer
    /// with the pattern and replies <c>written</c>; <c>release</c> disposes the guard and replies <c>released COUNT</c>;
    /// <c>die</c> exits at once without disposing anything (a crash, for recovery tests); end of input detaches.</summary>
    [ChildCommand("py-hold", "POOL INDEX")]
    internal static int Hold(ChildContext ctx)
    {
        BufferPool pool = BufferPool.Open(ctx.Arg(0));
        int index = ctx.IntArg(1);
        BufferGuard guard = pool.GetMut(index);
        ctx.Reply($"holding {pool.RefCount(index)}");
        while (ctx.ReadInstruction() is { } line)
        {
            string[] w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            switch (w.FirstOrDefault())
            {
                case "write":
                    BytePattern.Fill(guard.Span, int.Parse(w[1], CultureInfo.InvariantCulture));
                    ctx.Reply("written");
                    break;
                case "release":
                    guard.Dispose();
                    ctx.Reply($"released {pool.RefCount(index)}");
                    break;
                case "die":
                    Environment.Exit(9);
                    break;
                default:
                    ctx.Reply($"error unknown instruction '{line}'");
                    break;
            }
        }

        pool.Dispose();
        return 0;
    }
}
