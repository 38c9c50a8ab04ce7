using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>robust-openloop POOL MILLISECONDS</c>: opens and detaches the pool over and over until the time is up, then
/// replies <c>result opened=N notfound=N other=N first=&lt;first error, one line&gt;</c> and exits 0. Used to race
/// Open against other processes' detaches (docs/layout.md, "Removal").
/// </summary>
internal static class RobustOpenLoopCommand
{
    [ChildCommand("robust-openloop", "POOL MILLISECONDS")]
    internal static int Run(ChildContext ctx)
    {
        string name = ctx.Arg(0);
        long deadline = Environment.TickCount64 + ctx.LongArg(1);
        long opened = 0, notFound = 0, other = 0;
        string first = "-";
        ctx.Reply($"ready {Environment.ProcessId}");
        while (Environment.TickCount64 < deadline)
        {
            try
            {
                using BufferPool pool = BufferPool.Open(name);
                opened++;
            }
            catch (Exception e)
            {
                if (e is PoolNotFoundException)
                {
                    notFound++;
                }
                else
                {
                    other++;
                }

                if (first == "-")
                {
                    first = ChildContext.DescribeError(e);
                }
            }
        }

        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"result opened={opened} notfound={notFound} other={other} first={first}"));
        return 0;
    }
}
