namespace Xmem.TestChild.Commands;

/// <summary><c>open POOL</c>: attaches, replies <c>opened CAPACITY</c> and detaches; an error is replied as
/// <c>error &lt;ExceptionType&gt;: ...</c> (exit 70) by the program's handler.</summary>
internal static class OpenCommand
{
    [ChildCommand("open", "POOL")]
    internal static int Run(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        ctx.Reply($"opened {pool.Capacity}");
        return 0;
    }
}
