using System.Reflection;

namespace Xmem.TestChild;

/// <summary>
/// The test suite's helper process: <c>dotnet Xmem.TestChild.dll &lt;command&gt; [args...]</c>. Commands are static
/// methods marked <see cref="ChildCommandAttribute"/> anywhere in this assembly (one file per family under
/// Commands/), found by reflection at start, so adding a command never touches this file. A command talks to the
/// test over stdin/stdout, one line per message (see <see cref="ChildContext"/>); an exception that escapes it is
/// printed as <c>error &lt;ExceptionType&gt;: &lt;message&gt;</c> on stdout (stack trace on stderr), exit code 70.
/// </summary>
internal static class Program
{
    internal const int ExitUsage = 64;
    internal const int ExitUnhandled = 70;

    private static int Main(string[] args)
    {
        Dictionary<string, (ChildCommandAttribute Info, MethodInfo Method)> commands = CommandRegistry.Discover(typeof(Program).Assembly);
        if (args.Length == 0 || args[0] is "list" or "--help" or "-h")
        {
            foreach ((string name, (ChildCommandAttribute info, _)) in commands.OrderBy(c => c.Key, StringComparer.Ordinal))
            {
                Console.WriteLine($"{name} {info.Usage}".TrimEnd());
            }

            return args.Length == 0 ? ExitUsage : 0;
        }

        if (!commands.TryGetValue(args[0], out var command))
        {
            Console.Error.WriteLine($"xmem-testchild: unknown command '{args[0]}'; `list` shows the commands.");
            return ExitUsage;
        }

        var context = new ChildContext(args[0], args[1..]);
        try
        {
            return (int)command.Method.Invoke(null, [context])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            return ReportUnhandled(e.InnerException);
        }
        catch (Exception e)
        {
            return ReportUnhandled(e);
        }
    }

    private static int ReportUnhandled(Exception e)
    {
        Console.Out.WriteLine(ChildContext.DescribeError(e));
        Console.Error.WriteLine(e);
        return ExitUnhandled;
    }
}
