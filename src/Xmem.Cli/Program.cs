using System.CommandLine;
using Xmem.Cli.Commands;
using Xmem.Cli.Output;

namespace Xmem.Cli;

/// <summary>The <c>xmem</c> command: demo, ls, stat, top, rm, gc. Exit codes: 0 ok, 1 error (one line on stderr that says
/// what to do), 2 usage.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var root = new RootCommand("xmem: a cross-process shared-memory buffer pool. Pools live in $XMEM_SHM_DIR or /dev/shm.")
        {
            DemoCommand.Create(),
            ListCommand.Create(),
            StatCommand.Create(),
            TopCommand.Create(),
            RemoveCommand.Create(),
            GcCommand.Create(),
            DemoCommand.CreateConsumer(),
        };

        if (args.Length == 0)
        {
            _ = root.Parse(["--help"]).Invoke();
            return ExitCodes.Usage;
        }

        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                Console.Error.WriteLine($"xmem: {error.Message}");
            }

            Console.Error.WriteLine("Run 'xmem --help' (or 'xmem COMMAND --help') for usage.");
            return ExitCodes.Usage;
        }

        Tables.ConfigureConsole();
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"xmem: {OneLine(e)}");
            return e is ArgumentException ? ExitCodes.Usage : ExitCodes.Error; // a malformed name or value given on the command line
        }
    }

    /// <summary>The exception's message on one line (xmem's messages already say what to do), without the
    /// "(Parameter 'x')" suffix that argument exceptions append.</summary>
    private static string OneLine(Exception e)
    {
        string message = e.Message;
        if (e is ArgumentException { ParamName: { } param })
        {
            message = message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal);
            int actual = message.IndexOf("\nActual value was", StringComparison.Ordinal);
            if (actual >= 0)
            {
                message = message[..actual];
            }
        }

        return message.ReplaceLineEndings(" ").Trim();
    }
}
