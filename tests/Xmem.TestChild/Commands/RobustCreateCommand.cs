using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>robust-create POOL CAPACITY persistent|transient HELD FORGOTTEN</c>: replies <c>creating</c>, creates the pool
/// (replacing a stale one of the name), acquires HELD buffers of
/// 5000 bytes that it keeps through guards and FORGOTTEN more that it fills with <see cref="BytePattern"/> (seed = the
/// slot's index) and hands off (in flight, owned by no process). Replies <c>ready held=I,J.. forgotten=K,..</c> and
/// waits; <c>exit</c> (or the end of stdin) detaches and exits 0. Used by the removal tests, which mostly kill it.
/// </summary>
internal static class RobustCreateCommand
{
    [ChildCommand("robust-create", "POOL CAPACITY persistent|transient HELD FORGOTTEN")]
    internal static int Run(ChildContext ctx)
    {
        bool persistent = ctx.Arg(2) switch
        {
            "persistent" => true,
            "transient" => false,
            _ => throw new ArgumentException($"expected persistent or transient, not '{ctx.Arg(2)}'"),
        };
        ctx.Reply("creating");
        using BufferPool pool = BufferPool.Create(ctx.Arg(0), ctx.IntArg(1), persistent: persistent);
        var held = new List<BufferGuard>();
        var forgotten = new List<int>();
        for (int i = 0; i < ctx.IntArg(3); i++)
        {
            held.Add(pool.AcquireCpu(5000));
        }

        for (int i = 0; i < ctx.IntArg(4); i++)
        {
            BufferGuard g = pool.AcquireCpu(5000);
            BytePattern.Fill(g.Span, g.MetaIndex);
            forgotten.Add(g.MetaIndex);
            g.Forget();
        }

        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"ready held={string.Join(',', held.Select(g => g.MetaIndex))} forgotten={string.Join(',', forgotten)}"));
        while (ctx.ReadInstruction() is { } line && line != "exit")
        {
        }

        held.ForEach(g => g.Dispose());
        return 0;
    }
}
