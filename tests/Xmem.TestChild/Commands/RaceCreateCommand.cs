namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>race-create BARRIER_DIR</c>: one racer of a Create-versus-Create test, for many rounds. For each instruction
/// <c>race NAME ROUND</c> it replies <c>armed</c>, spins until the file <c>BARRIER_DIR/ROUND</c> exists (so two racers
/// call Create within microseconds of each other), creates pool NAME (capacity 4) and replies <c>won</c> (keeping the
/// pool open) or <c>exists</c> (PoolExistsException); any other exception is replied as an error line. <c>drop</c>
/// detaches the pool it won (replies <c>ok</c>); <c>exit</c> or the end of stdin ends it.
/// </summary>
internal static class RaceCreateCommand
{
    [ChildCommand("race-create", "BARRIER_DIR")]
    internal static int Run(ChildContext ctx)
    {
        string barrierDir = ctx.Arg(0);
        BufferPool? won = null;
        while (ctx.ReadInstruction() is { } line && line != "exit")
        {
            string[] words = line.Split(' ');
            switch (words[0])
            {
                case "race":
                    string barrier = Path.Combine(barrierDir, words[2]);
                    ctx.Reply("armed");
                    var spin = new SpinWait();
                    while (!File.Exists(barrier))
                    {
                        spin.SpinOnce(sleep1Threshold: -1); // never Sleep(1): the race is about microseconds
                    }

                    try
                    {
                        won = BufferPool.Create(words[1], 4);
                        ctx.Reply("won");
                    }
                    catch (PoolExistsException)
                    {
                        ctx.Reply("exists");
                    }
                    catch (Exception e)
                    {
                        ctx.Reply(ChildContext.DescribeError(e));
                    }

                    break;
                case "drop":
                    won?.Dispose();
                    won = null;
                    ctx.Reply("ok");
                    break;
                default:
                    ctx.Reply($"error unknown instruction '{line}'");
                    break;
            }
        }

        won?.Dispose();
        return 0;
    }
}
